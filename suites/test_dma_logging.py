"""DMA logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START/STOP/REPORT), on devices whose PROBE says they have it.

START's argument checks are the core's; the session rules (one START until STOP, no REPORT while off)
and REPORT's bitmap rules are the header's (vfio_mig_cts/spec/rulebook/dma.py). The bits of pages the device
wrote can be checked only where the backend can make the device write (``DmaWriter``: the mock).
Pointers inside the payloads are real addresses of ctypes buffers (vfio_mig_cts/judging/dma.py).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from fixtures.plugin import backend_of
from vfio_mig_cts.backends.protocol import DmaWriter, MigrationDevice
from vfio_mig_cts.judging import dma
from vfio_mig_cts.judging.dma import LOG_MAX_RANGES, U64_MAX
from vfio_mig_cts.judging.verdict import Verdict, errno_name

P = 4096
BASE = 1 << 32  # the IOVA the tests' ranges start at
T = TypeVar("T")


@dataclass(frozen=True)
class DmaCase:
    """DMA logging does not depend on the migration flags: one feature set (the richest) is enough."""

    flags: int

    @property
    def id(self) -> str:
        return "dma"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        sets = backend_of(metafunc.config).feature_sets()
        metafunc.parametrize("case", [DmaCase(max(sets, key=lambda f: bin(f).count("1")))], ids=["dma"])


def _errno(fn: Callable[[], T]) -> tuple[int, T | None]:
    try:
        return 0, fn()
    except OSError as exc:
        return exc.errno or errno.EIO, None


@pytest.fixture
def logdev(case: DmaCase, dut: MigrationDevice) -> Iterator[MigrationDevice]:
    """The device under test with DMA logging (PROBE), stopped before and after the test."""
    if not dma.supported(dut):
        pytest.skip(f"{dut.driver} has no DMA logging (PROBE of features 6/7/8 fails)")
    dma.stop_quietly(dut)
    yield dut
    dma.stop_quietly(dut)


def _start_refused(verdict: Verdict, rule: str, dev: MigrationDevice, want: int, what: str,
                   ranges: list[tuple[int, int]], num_ranges: int | None = None, page: int = P) -> None:
    err, _ = _errno(lambda: dma.start(dev, page, ranges, num_ranges))
    if not err:
        dma.stop_quietly(dev)
    verdict.check(rule, err == want, expected=errno_name(want), observed=errno_name(err),
                  context=f"DMA_LOGGING_START with {what}")


# --- START's arguments ---------------------------------------------------------------------------

@pytest.mark.rule("DMA.NO_RANGES")
def test_start_without_ranges(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """START with num_ranges 0 fails with EINVAL."""
    _start_refused(verdict, "DMA.NO_RANGES", logdev, errno.EINVAL, "num_ranges 0", [])


@pytest.mark.rule("DMA.TOO_MANY_RANGES", "DMA.MIN_RANGES")
def test_range_count_limit(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """PAGE_SIZE / 16 ranges are supported; one more fails with E2BIG."""
    ranges = [(BASE + 2 * i * P, P) for i in range(LOG_MAX_RANGES + 1)]
    _start_refused(verdict, "DMA.TOO_MANY_RANGES", logdev, errno.E2BIG, f"{LOG_MAX_RANGES + 1} ranges", ranges)
    err, _ = _errno(lambda: dma.start(logdev, P, ranges[:LOG_MAX_RANGES]))
    verdict.check("DMA.MIN_RANGES", err == 0, expected="success", observed=errno_name(err),
                  context=f"DMA_LOGGING_START with {LOG_MAX_RANGES} disjoint one-page ranges")


@pytest.mark.rule("DMA.ALIGNED")
@pytest.mark.parametrize("what", ["iova", "length", "both"])
def test_unaligned_range(case: DmaCase, what: str, logdev: MigrationDevice, verdict: Verdict) -> None:
    """A range whose iova or length is not a multiple of page_size fails with EINVAL."""
    iova = BASE + (P // 2 if what in ("iova", "both") else 0)
    length = 2 * P + (1 if what in ("length", "both") else 0)
    _start_refused(verdict, "DMA.ALIGNED", logdev, errno.EINVAL,
                   f"range iova {iova:#x} length {length:#x} at page_size {P}", [(BASE + 64 * P, P), (iova, length)])


@pytest.mark.rule("DMA.OVERFLOW")
def test_overflowing_range(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """A range whose iova + length passes 2**64 fails with EOVERFLOW."""
    iova = U64_MAX + 1 - P
    _start_refused(verdict, "DMA.OVERFLOW", logdev, errno.EOVERFLOW, f"range iova {iova:#x} length {2 * P:#x}",
                   [(BASE, P), (iova, 2 * P)])


@pytest.mark.rule("DMA.OVERLAP")
def test_overlapping_ranges(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """Two overlapping ranges fail with EINVAL; ranges that only touch are fine."""
    _start_refused(verdict, "DMA.OVERLAP", logdev, errno.EINVAL, "ranges [0, 4P) and [2P, 6P)",
                   [(BASE, 4 * P), (BASE + 2 * P, 4 * P)])
    _start_refused(verdict, "DMA.OVERLAP", logdev, errno.EINVAL, "a range inside another",
                   [(BASE, 8 * P), (BASE + 16 * P, P), (BASE + 3 * P, P)])
    err, _ = _errno(lambda: dma.start(logdev, P, [(BASE, 2 * P), (BASE + 2 * P, 2 * P)]))
    verdict.check("DMA.OVERLAP", err == 0, expected="success", observed=errno_name(err),
                  context="DMA_LOGGING_START with adjacent ranges [0, 2P) and [2P, 4P)")


@pytest.mark.rule("DMA.PAGE_SIZE_OUT")
def test_page_size_written_back(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """START writes back the page size the device chose: a power of two."""
    started = dma.start(logdev, P, [(BASE, 16 * P)])
    ps = started.page_size
    verdict.check("DMA.PAGE_SIZE_OUT", ps > 0 and ps & (ps - 1) == 0, expected="a power of two",
                  observed=f"page_size {ps}", context=f"after DMA_LOGGING_START with the hint {P}")


# --- the logging session -------------------------------------------------------------------------

@pytest.mark.rule("DMA.START_ONCE")
def test_second_start_refused(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """A second START before STOP fails; after STOP, START works again."""
    dma.start(logdev, P, [(BASE, 16 * P)])
    err, _ = _errno(lambda: dma.start(logdev, P, [(BASE + 64 * P, 16 * P)]))
    verdict.check("DMA.START_ONCE", err != 0, expected="an error (logging is already on)", observed=errno_name(err),
                  context="a second DMA_LOGGING_START before DMA_LOGGING_STOP")
    dma.stop(logdev)
    err, _ = _errno(lambda: dma.start(logdev, P, [(BASE, 16 * P)]))
    verdict.check("DMA.START_ONCE", err == 0, expected="success", observed=errno_name(err),
                  context="DMA_LOGGING_START after DMA_LOGGING_STOP")


@pytest.mark.rule("DMA.REPORT_NOT_STARTED", "DMA.GRACEFUL")
def test_report_requires_logging(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """REPORT while logging is off (before any START, and after STOP) fails, and leaves logging usable."""
    for when in ("before DMA_LOGGING_START", "after DMA_LOGGING_STOP"):
        if when.startswith("after"):
            _logging_works(verdict, logdev, "after a DMA_LOGGING_REPORT while logging was off")
        err, _ = _errno(lambda: dma.report(logdev, BASE, 16 * P, P))
        verdict.check("DMA.REPORT_NOT_STARTED", err != 0, expected="an error (DMA logging is not enabled)",
                      observed=errno_name(err), context=f"DMA_LOGGING_REPORT {when}")


@pytest.mark.rule("DMA.GRACEFUL")
def test_stop_and_report_while_off(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """STOP (twice) and REPORT while logging is off return, success or an errno; logging then works: START,
    REPORT and STOP succeed."""
    for what, call in (("DMA_LOGGING_STOP while logging is off", lambda: dma.stop(logdev)),
                       ("a second DMA_LOGGING_STOP", lambda: dma.stop(logdev)),
                       ("DMA_LOGGING_REPORT while logging is off", lambda: dma.report(logdev, BASE, 16 * P, P))):
        err, _ = _errno(call)
        verdict.check("DMA.GRACEFUL", err != errno.ETIMEDOUT, expected="the call returns (success or an errno)",
                      observed="it did not return (ETIMEDOUT)", context=what)
    _logging_works(verdict, logdev, "after STOP and REPORT while logging was off")


def _logging_works(verdict: Verdict, dev: MigrationDevice, when: str) -> None:
    """START, REPORT and STOP succeed (DMA.GRACEFUL: calls from invalid states left logging usable)."""
    for what, call in (("DMA_LOGGING_START", lambda: dma.start(dev, P, [(BASE, 16 * P)])),
                       ("DMA_LOGGING_REPORT", lambda: dma.report(dev, BASE, 16 * P, P)),
                       ("DMA_LOGGING_STOP", lambda: dma.stop(dev))):
        err, _ = _errno(call)
        if not verdict.check("DMA.GRACEFUL", err == 0, expected="success", observed=errno_name(err),
                             context=f"{what} {when}"):
            return


@pytest.mark.rule("DMA.REPORT_PAGE_CHECK")
def test_report_page_size_checked(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """REPORT with a page_size below 4096 or not a power of two fails with EINVAL."""
    dma.start(logdev, P, [(BASE, 16 * P)])
    for ps in (0, 512, 2048, 3 * P):
        err, _ = _errno(lambda ps=ps: dma.report(logdev, BASE, 16 * P, ps))  # type: ignore[misc]
        verdict.check("DMA.REPORT_PAGE_CHECK", err == errno.EINVAL, expected="EINVAL", observed=errno_name(err),
                      context=f"DMA_LOGGING_REPORT with page_size {ps}")


@pytest.mark.rule("DMA.ONLY_SETS_BITS")
@pytest.mark.parametrize("fill", [U64_MAX, 0xAAAAAAAAAAAAAAAA], ids=["ones", "pattern"])
def test_report_only_sets_bits(case: DmaCase, fill: int, logdev: MigrationDevice, verdict: Verdict) -> None:
    """A pre-filled bitmap keeps every one it had (REPORT never clears or initializes it)."""
    dma.start(logdev, P, [(BASE, 256 * P)])
    if isinstance(logdev, DmaWriter):
        logdev.dma_write(BASE + 3 * P, 8)
    rep = dma.report(logdev, BASE, 256 * P, P, prefill=fill)
    lost = [i for i, w in enumerate(rep.words) if w & fill != fill]
    verdict.check("DMA.ONLY_SETS_BITS", not lost, expected=f"every u64 still has the bits of {fill:#x}",
                  observed=f"u64 {lost[0]} is {rep.words[lost[0]]:#x}" if lost else "kept",
                  context=f"DMA_LOGGING_REPORT of 256 pages into a bitmap pre-filled with {fill:#x}")


@pytest.mark.rule("DMA.REPORT_PAGE_SIZE")
@pytest.mark.parametrize("start_page,report_page", [(P, 2 * P), (P, 16 * P), (2 * P, P), (P, 1 << 21)],
                         ids=["4K-8K", "4K-64K", "8K-4K", "4K-2M"])
def test_report_page_size(case: DmaCase, start_page: int, report_page: int, logdev: MigrationDevice,
                          verdict: Verdict) -> None:
    """REPORT takes a page size other than START's and lays the bits out in its own page size."""
    length = 1 << 22
    chosen = dma.start(logdev, start_page, [(BASE, length)]).page_size
    writes = [(BASE + 3 * P, 16), (BASE + 40 * P, 3 * P), (BASE + length - 8, 8)]
    if isinstance(logdev, DmaWriter):
        for iova, n in writes:
            logdev.dma_write(iova, n)
    ctx = f"DMA_LOGGING_START page_size {start_page} (device chose {chosen}), REPORT page_size {report_page}"
    err, rep = _errno(lambda: dma.report(logdev, BASE, length, report_page))
    verdict.check("DMA.REPORT_PAGE_SIZE", err == 0, expected="success", observed=errno_name(err), context=ctx)
    if rep is None or not isinstance(logdev, DmaWriter):
        return
    want = dma.expected_bits(writes, BASE, length, report_page, chosen or start_page)
    got = rep.set_bits()
    missing = sorted(set(want) - set(got))
    verdict.check("DMA.REPORT_PAGE_SIZE", not missing, expected=f"bits {want} set (one per {report_page} bytes)",
                  observed=f"bits {got} set", context=f"{ctx}; DMA writes {[(hex(i), n) for i, n in writes]}")


# --- what the device wrote -----------------------------------------------------------------------

@pytest.mark.rule("DMA.LOGGED", "DMA.READ_CLEARS")
def test_dirty_pages_reported(case: DmaCase, logdev: MigrationDevice, verdict: Verdict) -> None:
    """The pages the device wrote, first and last of a range included, are reported, then cleared."""
    if not isinstance(logdev, DmaWriter):
        pytest.skip(f"the backend cannot make {logdev.driver} write memory by DMA (no DmaWriter)")
    ranges = [(BASE, 64 * P), (BASE + 128 * P, 32 * P)]
    ps = dma.start(logdev, P, ranges).page_size or P
    writes = [(BASE, 1), (BASE + 10 * P + 100, 2 * P), (BASE + 63 * P, P),  # first, a span, the last page
              (BASE + 128 * P + 31 * P + P - 1, 1),  # the last byte of the second range
              (BASE + 80 * P, P)]  # between the ranges: not tracked
    for iova, n in writes:
        logdev.dma_write(iova, n)
    for iova, length in ranges:
        ctx = f"DMA_LOGGING_REPORT of [{iova:#x}, {iova + length:#x}) after DMA writes " \
              f"{[(hex(i), n) for i, n in writes]}"
        rep = dma.report(logdev, iova, length, P)
        want = dma.expected_bits(writes, iova, length, P, ps)
        got = rep.set_bits()
        missing = sorted(set(want) - set(got))
        verdict.check("DMA.LOGGED", not missing, expected=f"bits {want} set", observed=f"bits {got} set "
                      f"(missing {missing})", context=ctx)
        again = dma.report(logdev, iova, length, P).set_bits()
        verdict.check("DMA.READ_CLEARS", not again, expected="no bits (the first REPORT cleared the log)",
                      observed=f"bits {again} set", context=f"a second {ctx}")
