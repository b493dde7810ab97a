"""The ``KernelProfile`` of the running kernel: release rules plus two safe probes on a device.

Rules:

- ``--kernel-profile NAME`` (a key of ``KERNEL_PROFILES``) wins; an unknown name is a BackendError.
- ``unknown_feature_errno``: ``VFIO_DEVICE_FEATURE`` with ``PROBE|GET`` of an unused id (0xfff0)
  reaches the default branch of ``vfio_ioctl_device_feature()``: ``-ENOTTY`` since "vfio: return
  -ENOTTY for unsupported device feature" (and always from vfio-pci-core's own handler), ``-EINVAL``
  before it. A success (no kernel does that) is taken as ENOTTY.
- ``precopy_info_v2``: ``PROBE|SET`` of feature 12 (MIG_PRECOPY_INFOv2, 7.1). 0 means the kernel
  has it; EINVAL on a kernel whose unknown-feature errno is ENOTTY also means it has it (the 7.1 core
  refuses the feature for a device without PRE_COPY before the probe); anything else means no.
- ``blocked_arc_fix`` is never probed (the probe is the hang). True only for kernels known to carry
  "vfio: prevent infinite loop in vfio_mig_get_next_state() on blocked arc": upstream >= 7.2; a
  Debian kernel (``/proc/version`` says Debian) of 6.12.y with y >= 117; the guest lane's kernel
  (built from Debian's linux-source-6.12 6.12.117, release ``6.12.117``). Otherwise False, the safe
  default: the blocked arcs are then run only as contained hazards.
- The name is the ``KERNEL_PROFILES`` entry with the same three properties when there is one, else
  ``detected-RELEASE``; ``release`` is always recorded.
- A probe that hangs is not an answer: ``IoctlHang`` propagates.
- Without a device to probe, the release decides: ENOTTY from 6.12 on (or with the fix), PRECOPY_INFOv2
  from 7.1 on.
"""

from __future__ import annotations

import errno
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.protocol import KERNEL_PROFILES, KernelProfile
from vfio_mig_cts.backends.vfio.timeouts import IoctlHang
from vfio_mig_cts.uapi import vfio as uapi

UNUSED_FEATURE = 0xFFF0
LANE_RELEASES = frozenset({"6.12.117"})
FeatureCall = Callable[[int], None]  # issues VFIO_DEVICE_FEATURE with these flags (no payload); OSError on error


@dataclass(frozen=True)
class KernelIdentity:
    release: str  # platform.release()
    version_text: str  # /proc/version

    @property
    def upstream(self) -> tuple[int, int, int]:
        m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", self.release)
        if not m:
            return (0, 0, 0)
        return int(m[1]), int(m[2]), int(m[3] or 0)

    @property
    def debian(self) -> bool:
        return "Debian" in self.version_text or "+deb" in self.release


def current_identity(proc_version: Path = Path("/proc/version")) -> KernelIdentity:
    try:
        text = proc_version.read_text()
    except OSError:
        text = ""
    return KernelIdentity(platform.release(), text)


def blocked_arc_fix_known(ident: KernelIdentity) -> bool:
    up = ident.upstream
    if up >= (7, 2, 0):
        return True
    if ident.debian and up[:2] == (6, 12) and up[2] >= 117:
        return True
    return ident.release in LANE_RELEASES


def probe_unknown_feature_errno(call: FeatureCall) -> int:
    try:
        call(uapi.VFIO_DEVICE_FEATURE_PROBE | uapi.VFIO_DEVICE_FEATURE_GET | UNUSED_FEATURE)
    except IoctlHang:
        raise
    except OSError as exc:
        return exc.errno or errno.ENOTTY
    return errno.ENOTTY


def probe_precopy_info_v2(call: FeatureCall, unknown_errno: int) -> bool:
    try:
        call(uapi.VFIO_DEVICE_FEATURE_PROBE | uapi.VFIO_DEVICE_FEATURE_SET | uapi.Feature.MIG_PRECOPY_INFOv2)
    except IoctlHang:
        raise
    except OSError as exc:
        return exc.errno == errno.EINVAL and unknown_errno != errno.EINVAL
    return True


def named_profile(name: str) -> KernelProfile:
    if name not in KERNEL_PROFILES:
        raise BackendError(f"unknown --kernel-profile {name!r}: use one of {', '.join(KERNEL_PROFILES)}")
    return KERNEL_PROFILES[name]


def detect(call: FeatureCall | None, ident: KernelIdentity) -> KernelProfile:
    """The profile of this kernel; ``call`` is None when no device could be probed (release rules only)."""
    fix = blocked_arc_fix_known(ident)
    if call is not None:
        unknown = probe_unknown_feature_errno(call)
        v2 = probe_precopy_info_v2(call, unknown)
    else:
        unknown = errno.ENOTTY if fix or ident.upstream >= (6, 12, 0) else errno.EINVAL
        v2 = ident.upstream >= (7, 1, 0)
    for known in KERNEL_PROFILES.values():
        if (known.unknown_feature_errno, known.blocked_arc_fix, known.precopy_info_v2) == (unknown, fix, v2):
            return replace(known, release=ident.release)
    return KernelProfile(f"detected-{ident.release}", unknown_feature_errno=unknown, blocked_arc_fix=fix,
                         precopy_info_v2=v2, release=ident.release)
