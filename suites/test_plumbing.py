"""The VFIO_DEVICE_FEATURE plumbing: argsz, flags, PROBE, methods, payload sizes, unknown ids, MIGRATION flags.

Rules from ``vfio_ioctl_device_feature()`` (drivers/vfio/vfio_main.c), ``vfio_check_feature()``
(include/linux/vfio.h) and the VFIO_DEVICE_FEATURE comment in include/uapi/linux/vfio.h.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

import pytest

from fixtures.plugin import backend_of
from vfio_mig_cts.backends.protocol import MigrationDevice, flags_name, migration_flags
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.uapi.vfio import (
    VFIO_DEVICE_FEATURE_GET as GET,
)
from vfio_mig_cts.uapi.vfio import (
    VFIO_DEVICE_FEATURE_PROBE as PROBE,
)
from vfio_mig_cts.uapi.vfio import (
    VFIO_DEVICE_FEATURE_SET as SET,
)
from vfio_mig_cts.uapi.vfio import Feature, MigFlag


@dataclass(frozen=True)
class FeatureInfo:
    """A feature's methods and payload size, as the core's handler declares them."""

    feature: Feature
    methods: int
    minsz: int


# The handlers in drivers/vfio/vfio_main.c: supported_ops and sizeof(struct) in vfio_check_feature().
MIGRATION_FEATURES = (
    FeatureInfo(Feature.MIGRATION, GET, 8),
    FeatureInfo(Feature.MIG_DEVICE_STATE, GET | SET, 8),
    FeatureInfo(Feature.MIG_DATA_SIZE, GET, 8),
)
LOGGING_FEATURES = (
    FeatureInfo(Feature.DMA_LOGGING_START, SET, 24),
    FeatureInfo(Feature.DMA_LOGGING_STOP, SET, 0),
    FeatureInfo(Feature.DMA_LOGGING_REPORT, GET, 32),
)
UNUSED_FEATURE_IDS = (0x7FFF, 0xFFFF, 0x00FE)
DEFINED_COMBINATIONS = {int(MigFlag.STOP_COPY), int(MigFlag.STOP_COPY | MigFlag.P2P),
                        int(MigFlag.STOP_COPY | MigFlag.PRE_COPY),
                        int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)}


def call(dev: MigrationDevice, flags: int, payload: bytes = b"", argsz: int | None = None) -> int:
    """The errno of one feature call (0 for success)."""
    try:
        dev.feature(flags, payload, argsz)
        return 0
    except OSError as exc:
        return exc.errno or 0


def present(dev: MigrationDevice, info: FeatureInfo) -> bool:
    return call(dev, PROBE | info.feature) == 0


def expect_errno(verdict: Verdict, rule: str, got: int, want: int, what: str) -> None:
    verdict.check(rule, got == want, expected=errno_name(want), observed=errno_name(got), context=what)


@pytest.mark.rule("FEAT.ARGSZ")
def test_argsz_below_header(flags: int, dut: MigrationDevice, verdict: Verdict) -> None:
    """argsz 0..7 (below struct vfio_device_feature) is refused with EINVAL for every method."""
    for argsz in range(8):
        for method in (GET, SET, PROBE):
            got = call(dut, method | Feature.MIGRATION, bytes(8), argsz=argsz)
            expect_errno(verdict, "FEAT.ARGSZ", got, errno.EINVAL,
                         f"VFIO_DEVICE_FEATURE argsz {argsz}, flags {method:#x}|MIGRATION")


@pytest.mark.rule("FEAT.UNKNOWN_FLAGS")
def test_unknown_flag_bits(flags: int, dut: MigrationDevice, verdict: Verdict) -> None:
    """Each flag bit outside MASK|GET|SET|PROBE is refused with EINVAL."""
    for bit in range(19, 32):
        got = call(dut, GET | Feature.MIGRATION | (1 << bit), bytes(8))
        expect_errno(verdict, "FEAT.UNKNOWN_FLAGS", got, errno.EINVAL, f"GET|MIGRATION with bit {bit} set")


@pytest.mark.rule("FEAT.GET_SET")
def test_get_and_set_without_probe(flags: int, dut: MigrationDevice, verdict: Verdict) -> None:
    """GET|SET without PROBE is refused with EINVAL; with PROBE it is a valid probe of both methods."""
    for info in MIGRATION_FEATURES:
        got = call(dut, GET | SET | info.feature, bytes(max(info.minsz, 8)))
        expect_errno(verdict, "FEAT.GET_SET", got, errno.EINVAL, f"GET|SET|{info.feature.name}")
    got = call(dut, PROBE | GET | SET | Feature.MIG_DEVICE_STATE)
    expect_errno(verdict, "FEAT.GET_SET", got, 0, "PROBE|GET|SET|MIG_DEVICE_STATE (both methods exist)")


@pytest.mark.rule("FEAT.PROBE_NO_DATA")
@pytest.mark.parametrize("info", MIGRATION_FEATURES, ids=lambda i: i.feature.name)
def test_probe_without_payload(flags: int, dut: MigrationDevice, verdict: Verdict, info: FeatureInfo) -> None:
    """PROBE of a migration feature succeeds with argsz 8: no data portion."""
    got = call(dut, PROBE | info.feature, b"", argsz=8)
    expect_errno(verdict, "FEAT.PROBE_NO_DATA", got, 0, f"PROBE|{info.feature.name}, argsz 8")


@pytest.mark.rule("FEAT.PROBE_OPS")
@pytest.mark.parametrize("info", MIGRATION_FEATURES, ids=lambda i: i.feature.name)
def test_probe_reports_methods(flags: int, dut: MigrationDevice, verdict: Verdict, info: FeatureInfo) -> None:
    """PROBE|GET and PROBE|SET succeed exactly for the methods the feature has, else EINVAL."""
    for method, name in ((GET, "GET"), (SET, "SET")):
        want = 0 if info.methods & method else errno.EINVAL
        got = call(dut, PROBE | method | info.feature, b"", argsz=8)
        expect_errno(verdict, "FEAT.PROBE_OPS", got, want, f"PROBE|{name}|{info.feature.name}")


def _wrong_method_cases() -> list[tuple[FeatureInfo, int]]:
    cases = []
    for info in (*MIGRATION_FEATURES, *LOGGING_FEATURES):
        for method in (GET, SET):
            if not info.methods & method:
                cases.append((info, method))
    return cases


@pytest.mark.rule("FEAT.WRONG_OP")
@pytest.mark.parametrize("wrong", _wrong_method_cases(),
                         ids=lambda c: f"{'GET' if c[1] == GET else 'SET'}-{c[0].feature.name}")
def test_wrong_method(flags: int, dut: MigrationDevice, verdict: Verdict, wrong: tuple[FeatureInfo, int]) -> None:
    """SET on a GET-only feature and GET on a SET-only one are refused with EINVAL."""
    info, method = wrong
    if info in LOGGING_FEATURES and not present(dut, info):
        pytest.skip(f"{info.feature.name} is not supported by this device (PROBE failed)")
    payload = bytes(max(info.minsz, 8))
    got = call(dut, method | info.feature, payload)
    expect_errno(verdict, "FEAT.WRONG_OP", got, errno.EINVAL,
                 f"{'GET' if method == GET else 'SET'}|{info.feature.name}")


@pytest.mark.rule("FEAT.NO_OP")
def test_neither_get_nor_set(flags: int, dut: MigrationDevice, verdict: Verdict) -> None:
    """A call with neither GET, SET nor PROBE is refused with EINVAL."""
    for info in MIGRATION_FEATURES:
        got = call(dut, info.feature, bytes(8))
        expect_errno(verdict, "FEAT.NO_OP", got, errno.EINVAL, f"flags {info.feature.name} alone")


@pytest.mark.rule("FEAT.SHORT_PAYLOAD")
@pytest.mark.parametrize("info", MIGRATION_FEATURES, ids=lambda i: i.feature.name)
def test_short_payload(flags: int, dut: MigrationDevice, verdict: Verdict, info: FeatureInfo) -> None:
    """A payload shorter than the feature's structure is refused with EINVAL (without PROBE)."""
    method = GET  # every migration feature has GET; SET of a short state would be a state change
    for size in range(info.minsz):
        got = call(dut, method | info.feature, bytes(size), argsz=8 + size)
        expect_errno(verdict, "FEAT.SHORT_PAYLOAD", got, errno.EINVAL,
                     f"GET|{info.feature.name} with a {size}-byte payload (needs {info.minsz})")


@pytest.mark.rule("FEAT.UNKNOWN_ID")
def test_unknown_feature_id(flags: int, dut: MigrationDevice, verdict: Verdict, request: pytest.FixtureRequest) -> None:
    """Unknown feature ids fail with the errno of this kernel's core (ENOTTY since the 2025 fix)."""
    profile = backend_of(request.config).kernel_profile()
    want = profile.unknown_feature_errno
    for fid in UNUSED_FEATURE_IDS:
        for method in (GET, PROBE):
            got = call(dut, method | fid, bytes(8))
            expect_errno(verdict, "FEAT.UNKNOWN_ID", got, want,
                         f"feature id {fid:#x}, kernel profile {profile.name}")


@pytest.mark.rule("MIG.STOP_COPY", "MIG.COMBINATIONS")
def test_migration_flags(flags: int, dut: MigrationDevice, verdict: Verdict) -> None:
    """The MIGRATION flags include STOP_COPY and are one of the four defined combinations."""
    got = migration_flags(dut)
    payload = struct.pack("<Q", got)
    verdict.check("MIG.STOP_COPY", bool(got & MigFlag.STOP_COPY), expected="VFIO_MIGRATION_STOP_COPY set",
                  observed=f"flags {flags_name(got)}", context=f"GET MIGRATION returned {payload.hex()}")
    verdict.check("MIG.COMBINATIONS", got in DEFINED_COMBINATIONS,
                  expected="STOP_COPY, STOP_COPY|P2P, STOP_COPY|PRE_COPY or STOP_COPY|P2P|PRE_COPY",
                  observed=f"flags {flags_name(got)}")
