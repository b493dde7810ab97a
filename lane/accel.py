"""KVM or TCG: a cheap check that never hangs, backed by a bounded boot.

``/dev/kvm`` alone proves nothing: on PVM hosts (``kvm_pvm`` module, no VT-x/SVM in the CPU
flags) it exists and opens, yet a stock kernel hangs at "Decompressing Linux". So KVM is chosen
only when ``/dev/kvm`` opens read-write, the CPU advertises hardware virtualisation (``vmx`` or
``svm`` on x86) and no PVM module is loaded. Nothing here starts QEMU. If KVM is chosen and the
guest still does not reach its command within the KVM boot timeout, the boot code retries once
under TCG (``lane.boot.boot_with_fallback``), so a wrong guess costs a bounded wait, never a hang.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

from lane.arch import ArchSettings


class Accel(enum.Enum):
    KVM = "kvm"
    TCG = "tcg"


@dataclass(frozen=True)
class AccelChoice:
    accel: Accel
    reason: str


@dataclass(frozen=True)
class HostFacts:
    """What the decision reads from the host (separate, so tests can feed their own)."""

    kvm_usable: bool  # /dev/kvm exists and opens read-write
    cpu_flags: frozenset[str]
    pvm: bool  # the kvm_pvm module is loaded


def read_host_facts(dev: Path = Path("/dev/kvm"), cpuinfo: Path = Path("/proc/cpuinfo"),
                    modules: Path = Path("/sys/module")) -> HostFacts:
    usable = False
    if dev.exists():
        try:
            fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            pass
        else:
            os.close(fd)
            usable = True
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.partition(":")[2].split())
    except OSError:
        pass
    return HostFacts(usable, frozenset(flags), (modules / "kvm_pvm").exists())


def choose(arch: ArchSettings, facts: HostFacts, wanted: str = "auto") -> AccelChoice:
    """``wanted`` is ``auto``, ``kvm`` or ``tcg`` (the command line's ``--accel``)."""
    if wanted == "tcg":
        return AccelChoice(Accel.TCG, "--accel tcg")
    if wanted == "kvm":
        return AccelChoice(Accel.KVM, "--accel kvm")
    if not facts.kvm_usable:
        return AccelChoice(Accel.TCG, "/dev/kvm missing or not read-write")
    if facts.pvm:
        return AccelChoice(Accel.TCG, "/dev/kvm is PVM (kvm_pvm loaded): stock kernels hang under it")
    if arch.kvm_cpu_flags and not facts.cpu_flags & set(arch.kvm_cpu_flags):
        return AccelChoice(Accel.TCG, f"CPU lacks {'/'.join(arch.kvm_cpu_flags)}: /dev/kvm is not hardware KVM")
    return AccelChoice(Accel.KVM, "/dev/kvm usable and CPU has hardware virtualisation")
