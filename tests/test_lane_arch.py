"""The lane's per-architecture settings and the KVM/TCG choice (no guest needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lane import accel
from lane.arch import ARCHES, host_arch
from lane.errors import LaneError, LaneFailure


@pytest.mark.parametrize("name", sorted(ARCHES))
def test_settings_are_complete(name: str) -> None:
    s = ARCHES[name]
    assert s.name == name
    assert s.qemu.startswith("qemu-system-")
    assert s.image.startswith("arch/")
    assert s.memory[:-1].isdigit() and s.memory[-1] in "MG"
    assert s.cpus >= 1
    assert 0 < s.boot_timeout_kvm <= s.boot_timeout_tcg


def test_x86_settings() -> None:
    s = ARCHES["x86_64"]
    assert (s.qemu, s.image, s.kvm_cpu_flags) == ("qemu-system-x86_64", "arch/x86/boot/bzImage", ("vmx", "svm"))
    assert s.cpus == 2  # two xdist workers, one device under test each


def test_host_arch_aliases_and_unknown() -> None:
    assert host_arch("amd64") is ARCHES["x86_64"]
    assert host_arch("arm64") is ARCHES["aarch64"]
    with pytest.raises(LaneError) as exc:
        host_arch("sparc64")
    assert exc.value.code is LaneFailure.USAGE


X86 = ARCHES["x86_64"]


@pytest.mark.parametrize(("facts", "expected"), [
    (accel.HostFacts(kvm_usable=True, cpu_flags=frozenset({"vmx", "sse"}), pvm=False), accel.Accel.KVM),
    (accel.HostFacts(kvm_usable=True, cpu_flags=frozenset({"svm"}), pvm=False), accel.Accel.KVM),
    (accel.HostFacts(kvm_usable=False, cpu_flags=frozenset({"vmx"}), pvm=False), accel.Accel.TCG),
    (accel.HostFacts(kvm_usable=True, cpu_flags=frozenset({"hypervisor"}), pvm=False), accel.Accel.TCG),
    (accel.HostFacts(kvm_usable=True, cpu_flags=frozenset({"vmx"}), pvm=True), accel.Accel.TCG),
])
def test_auto_choice(facts: accel.HostFacts, expected: accel.Accel) -> None:
    assert accel.choose(X86, facts).accel is expected


def test_arch_without_cpu_flag_trusts_dev_kvm() -> None:
    facts = accel.HostFacts(kvm_usable=True, cpu_flags=frozenset(), pvm=False)
    assert accel.choose(ARCHES["aarch64"], facts).accel is accel.Accel.KVM


def test_forced_choice() -> None:
    none = accel.HostFacts(kvm_usable=False, cpu_flags=frozenset(), pvm=True)
    assert accel.choose(X86, none, "kvm").accel is accel.Accel.KVM
    full = accel.HostFacts(kvm_usable=True, cpu_flags=frozenset({"vmx"}), pvm=False)
    assert accel.choose(X86, full, "tcg").accel is accel.Accel.TCG


def test_read_host_facts(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx sse\n\nprocessor\t: 1\nflags\t\t: fpu vmx sse\n")
    modules = tmp_path / "module"
    (modules / "kvm_pvm").mkdir(parents=True)
    facts = accel.read_host_facts(dev=tmp_path / "no-kvm", cpuinfo=cpuinfo, modules=modules)
    assert facts == accel.HostFacts(kvm_usable=False, cpu_flags=frozenset({"fpu", "vmx", "sse"}), pvm=True)
    dev = tmp_path / "kvm"
    dev.write_text("")
    assert accel.read_host_facts(dev=dev, cpuinfo=tmp_path / "none", modules=tmp_path).kvm_usable
