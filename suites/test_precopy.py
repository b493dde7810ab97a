"""PRE_COPY: VFIO_MIG_GET_PRECOPY_INFO and the temporary end of stream.

Rules from the VFIO_MIG_GET_PRECOPY_INFO comment of include/uapi/linux/vfio.h: most of it says
*should*, and the registry (vfio_mig_cts/spec/rulebook/precopy.py) says which.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from functools import partial

import pytest

from fixtures.plugin import backend_of, feature_set_id
from vfio_mig_cts.backends.protocol import (
    POLLERR,
    POLLHUP,
    POLLIN,
    DataStream,
    DeviceProfile,
    MigrationDevice,
    PrecopyInfo,
    flags_name,
    pack_precopy_info,
    precopy_info,
)
from vfio_mig_cts.judging.checks import (
    check_entry_counters,
    check_info_outside_precopy,
    check_initial_not_growing,
    check_precopy_end,
    precopy_info_or_fail,
)
from vfio_mig_cts.judging.driving import (
    HARD_STREAM_LIMIT,
    PRECOPY_WAIT,
    SMALL_READ_SPAN,
    STREAM_MARGIN,
    Session,
    open_session,
    reach,
    read_all,
    read_available,
    settle_early_end,
    step,
    stream_limit,
)
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.uapi.vfio import VFIO_DEVICE_FEATURE_SET, Feature, MigFlag, State

READ_SIZE = 7  # small, odd reads: the counters must follow every byte
BIG_READ = 64 << 10  # past the first SMALL_READ_SPAN bytes: a large state is read in reasonable time


@dataclass(frozen=True)
class PrecopyCase:
    """A feature set with PRE_COPY, and the PRE_COPY state a session is entered in."""

    flags: int
    entry: State

    @property
    def id(self) -> str:
        return f"{feature_set_id(self.flags)}-{self.entry.name}"

    @property
    def before(self) -> State:
        return State.RUNNING if self.entry == State.PRE_COPY else State.RUNNING_P2P


def precopy_cases(flag_sets: list[int]) -> list[PrecopyCase]:
    cases = []
    for f in flag_sets:
        if f & MigFlag.PRE_COPY:
            cases.append(PrecopyCase(f, State.PRE_COPY))
            if f & MigFlag.P2P:
                cases.append(PrecopyCase(f, State.PRE_COPY_P2P))
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = precopy_cases(backend_of(metafunc.config).feature_sets())
        if not cases:
            metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(
                reason="no feature set with VFIO_MIGRATION_PRE_COPY on this device"))], ids=["no-pre_copy"])
            return
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def enter(dut: MigrationDevice, case: PrecopyCase, verdict: Verdict, session: Session) -> DataStream:
    """Start a precopy session in ``case.entry``; the new data_fd."""
    reach(dut, case.flags, verdict, session, case.before)
    stream = session.keep(step(dut, verdict, case.entry, f"entering {case.entry.name}"))
    verdict.check("ARC.DATA_FD", stream is not None, expected=f"a data_fd from {case.before.name} -> "
                  f"{case.entry.name}", observed="no data_fd")
    assert stream is not None
    return stream


@pytest.mark.rule("PRECOPY.MANDATORY", "PRECOPY.INITIAL_BYTES", "PRECOPY.DIRTY_STARTS_ZERO")
def test_counters_on_entry(case: PrecopyCase, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """On entering PRE_COPY: the ioctl works, initial_bytes is non-zero, dirty_bytes is zero."""
    stream = enter(dut, case, verdict, session)
    info = precopy_info_or_fail(stream, verdict, f"GET_PRECOPY_INFO right after entering {case.entry.name}")
    ctx = f"GET_PRECOPY_INFO right after entering {case.entry.name} (flags {flags_name(case.flags)})"
    check_entry_counters(verdict, info, ctx)


@pytest.mark.rule("PRECOPY.INITIAL_BYTES", "PRECOPY.INITIAL_REACHES_ZERO", "EOS.PRECOPY_NOT_EARLY",
                  "EOS.PRECOPY_ENOMSG")
def test_initial_bytes_drain(case: PrecopyCase, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """Reading in small pieces: initial_bytes never grows, reaches zero, and the end comes only then.

    At the temporary end of stream (both counters zero) read() should fail with ENOMSG, not return 0.
    The first SMALL_READ_SPAN bytes are read in 7-byte pieces, the rest in 64 KiB pieces; the counters
    are asked after every read. A stream that has not paused within its bound (what the counters first
    announced plus ``stream_limit()``) ends the test with a finding where initial_bytes is still above
    zero (PRECOPY.INITIAL_REACHES_ZERO), and with none where only dirty data goes on coming.
    """
    stream = enter(dut, case, verdict, session)
    first = last = precopy_info_or_fail(stream, verdict, "before reading")
    limit = min(HARD_STREAM_LIMIT, stream_limit(dut) + STREAM_MARGIN * (first.initial_bytes + first.dirty_bytes))
    total = 0
    ended = False
    while total <= limit:
        size = READ_SIZE if total < SMALL_READ_SPAN else BIG_READ
        ctx = f"after reading {total} bytes ({READ_SIZE}-byte reads for the first {SMALL_READ_SPAN}) in " \
              f"{case.entry.name}"
        try:
            data = stream.read(size)
            err = 0
        except OSError as exc:
            data, err = b"", exc.errno or 0
        if not data and last.initial_bytes + last.dirty_bytes:
            # the counters are estimates: wait (bounded) for the data they announced before judging
            data, err, again = settle_early_end(
                stream, size, partial(precopy_info_or_fail, stream, verdict, f"{ctx}, after waiting"))
            if not data and again is not None:
                last = again
                ctx += f", after waiting up to {PRECOPY_WAIT:g} s with poll() and reading again (twice)"
        if not data:
            verdict.check("PRECOPY.INITIAL_BYTES", total == 0 or last.initial_bytes < first.initial_bytes
                          or first.initial_bytes == 0,
                          expected=f"initial_bytes below its first value {first.initial_bytes} after reading",
                          observed=f"initial_bytes {last.initial_bytes} after {total} bytes", context=ctx)
            check_precopy_end(verdict, last, err, ctx)
            ended = True
            break
        total += len(data)
        info = precopy_info(stream)
        check_initial_not_growing(verdict, info, last, ctx)
        last = info
    how = "and an end of stream" if ended else f"and no pause within {limit} bytes (the stream's bound)"
    verdict.check("PRECOPY.INITIAL_REACHES_ZERO", last.initial_bytes == 0,
                  expected="initial_bytes 0 once the initial data is read",
                  observed=f"initial_bytes {last.initial_bytes} after {total} bytes {how}")


@pytest.mark.rule("EOS.PRECOPY_NOT_EARLY")
def test_dirty_data_is_readable(case: PrecopyCase, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """After the device changes, whatever dirty_bytes reports is there to read (it may stay 0)."""
    if not isinstance(dut, DeviceProfile):
        pytest.skip(f"no device profile for driver {dut.driver}: cannot change the device's state")
    stream = enter(dut, case, verdict, session)
    read_available(stream, limit=stream_limit(dut))
    for seed in range(1, 4):
        dut.dirty(seed)
    info = precopy_info_or_fail(stream, verdict, "after the device changed its state")
    if info.initial_bytes + info.dirty_bytes == 0:
        return  # "may increase": a driver that keeps dirty_bytes at 0 is within the text
    try:
        data = stream.read(1 << 20)
        err = 0
    except OSError as exc:
        data, err = b"", exc.errno or 0
    if not data:
        data, err, again = settle_early_end(
            stream, 1 << 20, lambda: precopy_info_or_fail(stream, verdict, "after waiting for the data announced"))
        info = again or info
    verdict.check("EOS.PRECOPY_NOT_EARLY", bool(data) or info.initial_bytes + info.dirty_bytes == 0,
                  expected=f"data (dirty_bytes {info.dirty_bytes}, initial_bytes {info.initial_bytes})",
                  observed=f"read() gave {errno_name(err) if err else '0 bytes'}",
                  context="after the device changed its state in PRE_COPY")


@pytest.mark.rule("EOS.PRECOPY_POLL")
def test_poll_at_temporary_end(case: PrecopyCase, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """At the temporary end of stream poll() lets userspace wait: it does not report the fd ready while
    read() has nothing to give; once data the counters announce is there (a device profile changes the
    device), poll() reports POLLIN within its timeout."""
    stream = enter(dut, case, verdict, session)
    read_available(stream, limit=stream_limit(dut))
    info = precopy_info_or_fail(stream, verdict, "after reading to the temporary end of stream")
    if info.initial_bytes + info.dirty_bytes:
        pytest.skip(f"no temporary end of stream reached (initial_bytes {info.initial_bytes}, dirty_bytes "
                    f"{info.dirty_bytes} after reading to ENOMSG): nothing to wait at")
    revents = stream.poll(POLLIN, 0)
    if revents & (POLLIN | POLLERR | POLLHUP):
        try:
            data, err = stream.read(1 << 20), 0
        except OSError as exc:
            data, err = b"", exc.errno or 0
        verdict.check("EOS.PRECOPY_POLL", bool(data),
                      expected="poll() reports no event while read() has nothing to give (so that userspace "
                               "can wait with it)",
                      observed=f"poll() revents {revents:#x}, then read() gave "
                               + (f"{len(data)} bytes" if data else errno_name(err) if err else "0 bytes"),
                      context="at PRE_COPY's temporary end of stream (both counters 0)")
        return
    if not isinstance(dut, DeviceProfile):
        return
    dut.dirty(61)
    info = precopy_info_or_fail(stream, verdict, "after the device changed in PRE_COPY")
    if not info.initial_bytes + info.dirty_bytes:
        return  # "may increase": a driver that keeps dirty_bytes at 0 has nothing to announce
    revents = stream.poll(POLLIN, int(PRECOPY_WAIT * 1000))
    verdict.check("EOS.PRECOPY_POLL", bool(revents & POLLIN),
                  expected=f"poll() reports POLLIN within {PRECOPY_WAIT:g} s (the data announced is there)",
                  observed=f"poll() revents {revents:#x}",
                  context=f"after the device changed: initial_bytes {info.initial_bytes}, "
                          f"dirty_bytes {info.dirty_bytes}")


@pytest.mark.rule("PRECOPY.RETURNED")
def test_counters_ignore_callers_buffer(case: PrecopyCase, dut: MigrationDevice, verdict: Verdict,
                                        session: Session, request: pytest.FixtureRequest) -> None:
    """The counters are the same whatever the caller's buffer held; flags only after the v2 opt-in."""
    stream = enter(dut, case, verdict, session)
    patterns = (0, 0xFFFFFFFFFFFFFFFF, 0x0123456789ABCDEF, 1)
    precopy_info_or_fail(stream, verdict, f"GET_PRECOPY_INFO in {case.entry.name}")
    seen = []
    for fill in patterns:
        raw = stream.precopy_info(pack_precopy_info(flags=0, initial=fill, dirty=fill))
        seen.append(PrecopyInfo.unpack(raw))
    counters = {(i.initial_bytes, i.dirty_bytes) for i in seen}
    verdict.check("PRECOPY.RETURNED", len(counters) == 1,
                  expected="the same initial_bytes/dirty_bytes for every pre-filled buffer",
                  observed="; ".join(f"filled {f:#x}: initial {i.initial_bytes} dirty {i.dirty_bytes}"
                                     for f, i in zip(patterns, seen, strict=True)))
    if not backend_of(request.config).kernel_profile().precopy_info_v2:
        return  # flags is reserved and echoed back by every driver until MIG_PRECOPY_INFOv2 is enabled
    dut.feature(VFIO_DEVICE_FEATURE_SET | Feature.MIG_PRECOPY_INFOv2)
    raw = stream.precopy_info(pack_precopy_info(flags=0xFFFFFFFF))
    got = PrecopyInfo.unpack(raw)
    verdict.check("PRECOPY.RETURNED", got.flags & ~1 == 0,
                  expected="flags holds only VFIO_PRECOPY_INFO_REINIT after the MIG_PRECOPY_INFOv2 opt-in",
                  observed=f"flags {got.flags:#x} for a buffer pre-filled with 0xffffffff")


@pytest.mark.rule("PRECOPY.ARGSZ")
def test_short_argsz(case: PrecopyCase, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """An argsz below sizeof(struct vfio_precopy_info) (24) gives EINVAL."""
    stream = enter(dut, case, verdict, session)
    for argsz in (0, 8, 16, 23):
        try:
            stream.precopy_info(pack_precopy_info(argsz=argsz))
            err = 0
        except OSError as exc:
            err = exc.errno or 0
        verdict.check("PRECOPY.ARGSZ", err == errno.EINVAL, expected="EINVAL", observed=errno_name(err),
                      context=f"GET_PRECOPY_INFO with argsz {argsz}")


def _expect_einval(verdict: Verdict, stream: DataStream, where: str) -> None:
    """GET_PRECOPY_INFO on ``stream`` outside the PRE_COPY states gives EINVAL (PRECOPY.EINVAL_OUTSIDE)."""
    try:
        precopy_info(stream)
        err = 0
    except OSError as exc:
        err = exc.errno or 0
    check_info_outside_precopy(verdict, err, where)


@pytest.mark.rule("PRECOPY.EINVAL_OUTSIDE")
def test_precopy_info_outside_precopy(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """In STOP_COPY (entered from STOP, or from PRE_COPY on the same fd) the ioctl gives EINVAL.

    Only on a device with PRE_COPY: "Support for this ioctl is mandatory if a driver claims to support
    VFIO_MIGRATION_PRE_COPY" (vfio.h:1271) binds no other driver to it, and pds's data fds (no PRE_COPY)
    have no ioctl at all (ENOTTY)."""
    if not flags & MigFlag.PRE_COPY:
        pytest.skip("the ioctl binds only devices with VFIO_MIGRATION_PRE_COPY (vfio.h:1271)")
    reach(dut, flags, verdict, session, State.STOP)
    stream = open_session(dut, verdict, session, State.STOP_COPY, "entering STOP_COPY from STOP")
    _expect_einval(verdict, stream, "on a STOP_COPY session started from STOP")
    read_all(stream, limit=stream_limit(dut), verdict=verdict)
    step(dut, verdict, State.STOP, "ending the session")
    session.close_all()
    reach(dut, flags, verdict, session, State.RUNNING)
    pre = open_session(dut, verdict, session, State.PRE_COPY, "entering PRE_COPY")
    if flags & MigFlag.P2P:
        step(dut, verdict, State.PRE_COPY_P2P, "moving within the saving group")
    step(dut, verdict, State.STOP_COPY, "moving to STOP_COPY on the same fd")
    _expect_einval(verdict, pre, "on the PRE_COPY session's fd after it moved on to STOP_COPY")
