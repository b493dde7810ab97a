"""Per-architecture guest settings, kept as data: the boot code reads them and decides nothing itself."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from lane.errors import LaneError, LaneFailure


@dataclass(frozen=True)
class ArchSettings:
    """How to boot the lane's guest on one host architecture."""

    name: str
    qemu: str  # the QEMU binary virtme-ng runs (checked on PATH before booting)
    image: str  # the kernel image's path inside a build tree
    memory: str  # guest memory (vng --memory)
    cpus: int  # guest CPUs (vng --cpus); the suite runs one xdist worker per CPU
    kvm_cpu_flags: tuple[str, ...]  # /proc/cpuinfo flags without which KVM cannot run a stock kernel
    boot_timeout_kvm: float  # seconds from start to the guest command's first line, with KVM
    boot_timeout_tcg: float  # the same under TCG (measured: about 12 s on 2 cores)
    vng_extra: tuple[str, ...] = ()  # further vng options for this architecture


ARCHES: dict[str, ArchSettings] = {
    "x86_64": ArchSettings(
        name="x86_64", qemu="qemu-system-x86_64", image="arch/x86/boot/bzImage",
        memory="2G", cpus=2, kvm_cpu_flags=("vmx", "svm"),
        boot_timeout_kvm=60.0, boot_timeout_tcg=180.0,
    ),
    "aarch64": ArchSettings(
        name="aarch64", qemu="qemu-system-aarch64", image="arch/arm64/boot/Image",
        memory="2G", cpus=2, kvm_cpu_flags=(),  # arm64 has no cpuinfo flag for it: /dev/kvm decides
        boot_timeout_kvm=60.0, boot_timeout_tcg=300.0,
    ),
}


def host_arch(machine: str | None = None) -> ArchSettings:
    """The settings for this host (``platform.machine()``), or a USAGE error naming the known ones."""
    m = machine or platform.machine()
    m = {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)
    try:
        return ARCHES[m]
    except KeyError:
        raise LaneError(LaneFailure.USAGE,
                        f"no guest settings for architecture {m!r} (known: {', '.join(sorted(ARCHES))})") from None
