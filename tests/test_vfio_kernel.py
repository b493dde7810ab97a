"""Kernel profile detection: release rules and the two safe probes."""

from __future__ import annotations

import errno

import pytest

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.vfio import kernel
from vfio_mig_cts.backends.vfio.kernel import KernelIdentity, blocked_arc_fix_known, detect
from vfio_mig_cts.uapi import vfio as uapi

DEBIAN = KernelIdentity("6.12.117+deb12-amd64", "Linux version 6.12.117+deb12-amd64 ... Debian 6.12.117-1~deb12u1")


def fake_kernel(unknown: int, v2: int | None) -> kernel.FeatureCall:
    """A device answering the probes as a kernel would: errnos by feature id (None = success)."""
    def call(flags: int) -> None:
        assert flags & uapi.VFIO_DEVICE_FEATURE_PROBE  # the probes change nothing
        fid = flags & uapi.VFIO_DEVICE_FEATURE_MASK
        code = v2 if fid == uapi.Feature.MIG_PRECOPY_INFOv2 else unknown
        if code:
            raise OSError(code, "probe")
    return call


@pytest.mark.parametrize(("ident", "fixed"), [
    (DEBIAN, True),
    (KernelIdentity("6.12.116+deb12-amd64", "Debian 6.12.116-1"), False),
    (KernelIdentity("6.12.117", "Linux version 6.12.117 (root@lane)"), True),  # the guest lane's kernel
    (KernelIdentity("6.12.120", "Linux version 6.12.120 (x@y)"), False),
    (KernelIdentity("7.1.0", ""), False),
    (KernelIdentity("7.2.0-rc1", ""), True),
    (KernelIdentity("6.18.44-fc-v669", "Linux version 6.18.44"), False),
])
def test_blocked_arc_fix_only_where_known(ident: KernelIdentity, fixed: bool) -> None:
    assert blocked_arc_fix_known(ident) is fixed


def test_debian_6_12_117_is_the_known_profile() -> None:
    p = detect(fake_kernel(errno.ENOTTY, errno.ENOTTY), DEBIAN)
    assert p.name == "debian-6.12.117"
    assert (p.unknown_feature_errno, p.blocked_arc_fix, p.precopy_info_v2) == (errno.ENOTTY, True, False)
    assert p.release == DEBIAN.release


def test_old_kernel_returns_einval_for_unknown_features() -> None:
    p = detect(fake_kernel(errno.EINVAL, errno.EINVAL), KernelIdentity("6.12.40", ""))
    assert p.name == "6.12-unfixed"
    assert p.unknown_feature_errno == errno.EINVAL and not p.precopy_info_v2


@pytest.mark.parametrize(("v2_errno", "has_v2"), [(None, True), (errno.EINVAL, True), (errno.ENOTTY, False)])
def test_precopy_info_v2_probe(v2_errno: int | None, has_v2: bool) -> None:
    p = detect(fake_kernel(errno.ENOTTY, v2_errno), KernelIdentity("7.1.3", ""))
    assert p.precopy_info_v2 is has_v2
    if has_v2:
        assert p.name == "7.1"


def test_an_unmatched_kernel_is_named_by_its_release() -> None:
    p = detect(fake_kernel(errno.ENOTTY, errno.ENOTTY), KernelIdentity("6.18.44-fc-v669", ""))
    assert p.name == "detected-6.18.44-fc-v669"
    assert not p.blocked_arc_fix  # the safe default


def test_without_a_device_the_release_decides() -> None:
    assert detect(None, DEBIAN).name == "debian-6.12.117"


def test_named_profiles() -> None:
    assert kernel.named_profile("7.2").blocked_arc_fix
    with pytest.raises(BackendError, match="unknown --kernel-profile 'nope'"):
        kernel.named_profile("nope")


def test_a_hanging_probe_is_no_answer() -> None:
    from vfio_mig_cts.backends.vfio.timeouts import IoctlHang

    def hang(flags: int) -> None:
        raise IoctlHang("VFIO_DEVICE_FEATURE PROBE|GET", 1.0)
    with pytest.raises(IoctlHang):
        detect(hang, DEBIAN)
