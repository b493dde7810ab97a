"""Bad input stops the conformance run before any test: ONE line saying what to do, exit code 4.

Each case runs ``python -m pytest suites ...`` as a user does. Devices come from fake hosts: a
sysfs tree the real vfio backend resolves (``[backend_options] sysfs_root`` in a lab file), or,
for what only opening a device can tell (busy, permission, no migration support), ``fake_host``:
the real ``VfioBackend`` with an opener that fails the way the kernel does.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_vfio_sysfs import make_mdev, make_pci
from vfio_mig_cts.backends.loader import BackendOptions
from vfio_mig_cts.backends.mock.backend import MockBackend, MockDevice
from vfio_mig_cts.backends.protocol import Role
from vfio_mig_cts.backends.vfio.backend import Environment, VfioBackend
from vfio_mig_cts.backends.vfio.device import DeviceIO
from vfio_mig_cts.backends.vfio.errors import open_error
from vfio_mig_cts.backends.vfio.ioctl import RegionInfo
from vfio_mig_cts.backends.vfio.sysfs import ResolvedDevice
from vfio_mig_cts.errors import Exit, one_line
from vfio_mig_cts.uapi.vfio import Feature, MigFlag

ROOT = Path(__file__).resolve().parent.parent
U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
U2 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002"
ALL = int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)


# --- the fake host's backend --------------------------------------------------------------------------------

@dataclass
class FakeIO:
    """A device fd whose feature calls go to a mock device; ENOTTY for migration where it has none."""

    mock: MockDevice
    no_migration: bool = False

    def feature(self, flags: int, payload: bytes, argsz: int | None) -> bytes:
        if self.no_migration and flags & 0xFFFF in (Feature.MIGRATION, Feature.MIG_DEVICE_STATE):
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        return self.mock.feature(flags, payload, argsz).payload

    def reset(self) -> None:
        self.mock.reset()

    def region_info(self, index: int) -> RegionInfo:
        raise OSError(errno.EINVAL, "no regions")

    def pread(self, size: int, offset: int) -> bytes:
        raise OSError(errno.EINVAL, "no regions")

    def pwrite(self, data: bytes, offset: int) -> int:
        raise OSError(errno.EINVAL, "no regions")

    def close(self) -> None:
        pass


def fake_host(options: BackendOptions) -> VfioBackend:
    """``--backend tests.test_bad_input:fake_host``: the vfio backend on the host ``$CTS_FAKE_HOST`` describes."""
    spec = json.loads(os.environ["CTS_FAKE_HOST"])
    env = Environment.from_extra(spec["paths"])
    mock = MockBackend()

    def opener(dev: ResolvedDevice, path: str) -> DeviceIO:
        code = spec.get("open_errno", {}).get(dev.name)
        if code:
            raise open_error(OSError(code, os.strerror(code)), str(dev.cdev_node or dev.group_node), dev.name)
        flags = spec.get("flags", {}).get(dev.name, ALL)
        return FakeIO(MockDevice(mock.config(Role.DUT, flags), name=dev.name),
                      no_migration=dev.name in spec.get("no_migration", []))

    return VfioBackend(options, env, opener=opener, environ={})


# --- fake hosts ----------------------------------------------------------------------------------------------

class Host:
    """A fake sysfs tree plus where the backend keeps locks and reads the kernel log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys = root / "sys"
        self.sys.mkdir()
        (root / "dev").mkdir()
        (root / "kmsg").write_text("")
        (root / "tainted").write_text("0\n")
        (root / "version").write_text("Linux version 6.12.117+deb12-amd64 (Debian 6.12.117-1~deb12u1)\n")
        self.paths = {"sysfs_root": str(self.sys), "dev_root": str(root / "dev"), "lock_dir": str(root / "locks"),
                      "kmsg": str(root / "kmsg"), "tainted": str(root / "tainted"),
                      "proc_version": str(root / "version")}
        self.spec: dict[str, object] = {"paths": self.paths}
        self.cdevs = 0

    def mdev(self, uuid: str = U1) -> Host:
        make_mdev(self.sys, uuid, cdev=f"vfio{self.cdevs}", group=str(10 + self.cdevs))
        self.cdevs += 1
        return self

    def pci(self, addr: str, **kw: str | None) -> Host:
        make_pci(self.sys, addr, **kw)
        return self

    def lab(self, *devices: str, backend: str = "vfio", extra: str = "") -> Path:
        lines = ["[run]", f'backend = "{backend}"', "", "[backend_options]"]
        lines += [f'{k} = "{v}"' for k, v in self.paths.items()]
        for d in devices:
            lines += ["", "[[device]]", f'name = "{d}"']
        path = self.root / "lab.toml"
        path.write_text("\n".join(lines) + "\n" + extra)
        return path


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("VFIO_SELFTESTS_BDF", "PYTEST_XDIST_WORKER",
                                                                 "PYTEST_XDIST_TESTRUNUID", "CTS_FAKE_HOST")}
    environ.update(env or {})
    cmd = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", "--no-reports", *args]
    return subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=300, check=False)


def assert_one_line(proc: subprocess.CompletedProcess[str], *says: str) -> str:
    output = proc.stdout + proc.stderr
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert proc.returncode == Exit.BAD_INPUT, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), output[-3000:]
    for s in says:
        assert s in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


# --- command-line options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--backend", "nosuch"], ["unknown backend 'nosuch'", "use mock, vfio, or package.module:factory"]),
    (["--backend", "tests.no_such_module:create"], ["cannot import tests.no_such_module"]),
    (["--fault", "nosuch"], ["unknown fault 'nosuch'", "python -m vfio_mig_cts.faults.catalogue"]),
    (["--backend", "vfio", "--fault", "keeps-old-state"], ["cannot be combined with --backend vfio", "drop one"]),
    (["--vfio-device", "0000:3b:00.1"], ["the backend is the mock", "add --backend vfio"]),
    (["--backend", "vfio"], ["--backend vfio needs a device", "--vfio-device"]),
    (["--backend", "vfio", "--vfio-device", "junk"], ["cannot read device name 'junk'", "PCI address"]),
    (["--backend", "vfio", "--vfio-device", "3b:20.1"], ["the device number is 00..1f"]),
    (["--backend", "vfio", "--vfio-device", "/dev/vfio/7"], ["VFIO group or container node, not a device"]),
    (["--kernel-profile", "2.6"], ["unknown kernel profile '2.6'"]),
    (["--lab", "/nonexistent/lab.toml"], ["lab config /nonexistent/lab.toml", "docs/labs.md"]),
    (["--expectations", "/nonexistent/x.toml"], ["no such file", "expectations/"]),
], ids=lambda v: "_".join(v) if isinstance(v, list) and v and v[0].startswith("-") else None)
def test_bad_options(args: list[str], says: list[str]) -> None:
    assert_one_line(run(args), *says)


def test_bad_device_from_the_selftests_variable() -> None:
    """``VFIO_SELFTESTS_BDF``, as the kernel's VFIO selftests name their device."""
    assert_one_line(run(["--backend", "vfio"], env={"VFIO_SELFTESTS_BDF": "zz:zz"}), "cannot read device name 'zz:zz'")


# --- devices that cannot be used (fake sysfs, the real vfio backend) ---------------------------------------------

@pytest.mark.parametrize(("build", "device", "says"), [
    (lambda h: h, "0000:3b:00.1", ["no such PCI device 0000:3b:00.1", "lspci -D"]),
    (lambda h: h, U1, ["no such mdev", "create it"]),
    (lambda h: h, "/dev/vfio/devices/vfio9", ["no such VFIO device", "vfio-dev"]),
    (lambda h: h.pci("0000:3b:00.1", driver=None, cdev=None), "0000:3b:00.1",
     ["not bound to any driver", "bind it to vfio-pci"]),
    (lambda h: h.pci("0000:3b:00.1", driver="mlx5_core", cdev=None), "0000:3b:00.1",
     ["bound to mlx5_core, not to a VFIO driver", "bind vfio-pci"]),
    (lambda h: h.pci("0000:3b:00.1", driver="vfio-pci", group=None, cdev=None), "0000:3b:00.1",
     ["neither an IOMMU group nor a vfio-dev node", "enable the IOMMU"]),
], ids=["no-pci-device", "no-mdev", "no-cdev", "unbound", "not-vfio-driver", "no-iommu"])
def test_unusable_devices(host: Host, build: object, device: str, says: list[str]) -> None:
    build(host)  # type: ignore[operator]
    assert_one_line(run(["--lab", str(host.lab(device))]), *says)


def test_a_device_another_run_holds_is_busy(host: Host) -> None:
    from vfio_mig_cts.backends.vfio.locking import DeviceLock

    host.mdev(U1)
    (host.root / "locks").mkdir()
    lock = DeviceLock(host.root / "locks", U1)
    assert lock.try_acquire("nightly run on another shell")
    try:
        assert_one_line(run(["--lab", str(host.lab(U1))]), "busy", "nightly run on another shell",
                        "wait for the other run or name a free device")
    finally:
        lock.release()


# --- what only opening the device tells (fake opener, the real backend) ------------------------------------------

@pytest.mark.parametrize(("spec", "devices", "says"), [
    ({"open_errno": {U1: errno.EBUSY}}, [U1], ["is busy", "another process", "stop it or name another device"]),
    ({"open_errno": {U1: errno.EACCES}}, [U1], ["permission denied", "run as root"]),
    ({"open_errno": {U1: errno.EPERM}}, [U1], ["permission denied"]),
    ({"open_errno": {U1: errno.ENOENT}}, [U1], ["does not exist", "load the vfio modules"]),
    ({"no_migration": [U1]}, [U1], ["has no migration support", "ENOTTY", "name a device whose driver"]),
    ({"flags": {U2: int(MigFlag.STOP_COPY)}}, [U1, U2], ["different migration flags", "separate sessions"]),
    ({}, [U1, U1], ["named twice"]),
], ids=["EBUSY", "EACCES", "EPERM", "ENOENT", "ENOTTY", "different-flags", "twice"])
def test_devices_that_fail_to_open(host: Host, spec: dict[str, object], devices: list[str],
                                   says: list[str]) -> None:
    host.mdev(U1).mdev(U2)
    host.spec.update(spec)
    args = ["--backend", "tests.test_bad_input:fake_host"]
    for d in devices:
        args += ["--vfio-device", d]
    assert_one_line(run(args, env={"CTS_FAKE_HOST": json.dumps(host.spec)}), *says)


# --- lab config and expectation files ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "says"), [
    ("[run\n", ["not valid TOML"]),
    ("[run]\nthreads = 4\n", ["[run]: unknown key 'threads'", "allowed:"]),
    ("[[device]]\npeer = \"0000:3b:00.2\"\n", ["a name is required"]),
    ("[run]\nbackend = \"mock\"\n[[device]]\nname = \"0000:3b:00.1\"\n", ["the mock backend has no devices"]),
    ("[[device]]\nname = \"0000:3b:00.1\"\npeer = \"0000:3b:00.2\"\n[[device]]\nname = \"0000:3b:00.2\"\n",
     ["both a device under test and the peer"]),
    ("[[device]]\nname = \"0000:3b:00.1\"\nexpectations = [\"nope.toml\"]\n",
     ["expectation file 'nope.toml' not found"]),
], ids=["toml", "unknown-key", "no-name", "mock-with-devices", "pair-conflict", "missing-expectations"])
def test_malformed_lab_config(tmp_path: Path, text: str, says: list[str]) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text(text)
    assert_one_line(run(["--lab", str(lab)]), f"lab config {lab}", *says)


def test_a_lab_file_and_conflicting_devices_on_the_command_line(host: Host) -> None:
    host.mdev(U1)
    assert_one_line(run(["--lab", str(host.lab(U1)), "--vfio-device", U2]), "--vfio-device conflicts with --lab")


@pytest.mark.parametrize(("text", "says"), [
    ("[[expect]\n", ["not valid TOML"]),
    ("[[expect]]\nrule = \"NO.SUCH\"\nreason = \"r\"\n", ["rule 'NO.SUCH' is not in the registry"]),
    ("[[expect]]\nrule = \"ARC.BLOCKED\"\n", ["a reason is required"]),
    ("[[expect]]\nrule = \"ARC.BLOCKED\"\nreason = \"r\"\nseverity = 1\n", ["unknown keys ['severity']"]),
    ("[settings]\n", ["only [[expect]] tables are allowed"]),
], ids=["toml", "unknown-rule", "no-reason", "unknown-key", "other-table"])
def test_malformed_expectation_file(tmp_path: Path, text: str, says: list[str]) -> None:
    f = tmp_path / "driver.toml"
    f.write_text(text)
    assert_one_line(run(["--expectations", str(f)]), str(f), "vfio_mig_cts/judging/expectations.py", *says)


# --- the exit codes themselves ------------------------------------------------------------------------------------

def test_bad_input_exits_differently_from_failed_tests(tmp_path: Path) -> None:
    case = "suites/test_arcs.py::test_arc[stop_copy-RUNNING->ERROR]"
    failed = subprocess.run([sys.executable, "-m", "pytest", case, "-q", "-p", "no:cacheprovider", "--no-reports",
                             "--fault", "accepts-error-target"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert failed.returncode == Exit.TESTS_FAILED, failed.stdout[-2000:]
    assert one_line("a\n  b\tc ") == "a b c"


# --- scripts/bind-vfio ------------------------------------------------------------------------------------------

def bind_vfio(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VFIO_CTS_SYSFS_ROOT": str(host.sys), "VFIO_CTS_BIND_STATE": str(host.root / "state")}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bind-vfio"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("args", "says"), [
    (["bind", "0000:3b:00.1"], "no such PCI device 0000:3b:00.1"),
    (["bind", "3b:00.9"], "cannot read PCI address '3b:00.9'"),
    (["bind", U1], "is an mdev UUID: mdevs are created bound to their driver"),
    (["restore", "0000:3b:00.2"], "no recorded driver for 0000:3b:00.2"),
    (["run", "0000:3b:00.2"], "run needs a command after --"),
    (["bind"], "name a PCI device"),
], ids=["no-device", "bad-address", "mdev", "restore-unrecorded", "run-no-command", "nothing-named"])
def test_bind_vfio_bad_input(host: Host, args: list[str], says: str) -> None:
    host.pci("0000:3b:00.2", driver="mlx5_core", cdev=None)
    proc = bind_vfio(host, *args)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == Exit.BAD_INPUT, lines
    assert len(lines) == 1 and says in lines[0], lines


def test_bind_vfio_binds_runs_and_restores_in_the_selftests_order(host: Host) -> None:
    host.pci("0000:3b:00.2", driver="mlx5_core", cdev=None)
    lab = host.root / "lab.toml"
    lab.write_text('[[device]]\nname = "3b:00.2"\n')
    proc = bind_vfio(host, "run", "--lab", str(lab), "--driver", "vfio-pci", "--dry-run", "--", "./cts")
    assert proc.returncode == 0, proc.stderr
    dev = host.sys / "bus/pci/devices/0000:3b:00.2"
    assert proc.stdout.splitlines() == [
        f"echo 0000:3b:00.2 > {dev}/driver/unbind",
        f"echo vfio-pci > {dev}/driver_override",
        f"echo 0000:3b:00.2 > {host.sys}/bus/pci/drivers_probe",
        "0000:3b:00.2: mlx5_core -> vfio-pci",
        "run: ./cts",
        f"echo 0000:3b:00.2 > {dev}/driver/unbind",
        f"echo '' > {dev}/driver_override",
        f"echo 0000:3b:00.2 > {host.sys}/bus/pci/drivers/mlx5_core/bind",
        "0000:3b:00.2: restored to mlx5_core",
    ]
