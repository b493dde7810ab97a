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
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# --- the table: every entry point, in a subprocess, as a user runs it ----------------------------------------------
#
# Each row is one bad input: the command (``{tmp}`` is the test's folder, which holds the files of ``FILES``),
# the words its one line must say. Every row must exit 4 with exactly one non-empty line, starting with the
# entry point's prefix, and print no "Traceback" and no "INTERNALERROR" anywhere.

CTS, LANE, BIND, REPORT = ("./cts",), (sys.executable, "-m", "lane"), ("scripts/bind-vfio",), ("./cts", "report")
COMPARE = ("./cts", "compare")
BENCH = (sys.executable, "benchmarks/bench_mock_suite.py")
MUTATION = (sys.executable, "-m", "mutation", "--workdir", "{tmp}/no-session")
FAULTS = (sys.executable, "-m", "vfio_mig_cts.faults")
CALIBRATION = (sys.executable, "-m", "lane.calibration")
PREFIX = {CTS: "ERROR: ", LANE: "lane: USAGE (exit 4): ", BIND: "bind-vfio: ", REPORT: "allure-report: ",
          COMPARE: "./cts compare: ",
          BENCH: "", MUTATION: "mutation: ", FAULTS: "catalogue: ", CALIBRATION: "calibration: "}
LAB = "[run]\n"
EXPECT_OK = '[[expect]]\nrule = "ARC.BLOCKED"\nreason = "r"\n'
FILES: dict[str, str | bytes] = {
    "binary.toml": bytes(range(256)) * 4,
    "a-file": "",
    "badmod_raise.py": "raise RuntimeError('boom at import')\n",
    "badmod_syntax.py": "def create(:\n",
    "badmod_exit.py": "import sys\n\ndef create(options):\n    sys.exit(3)\n",
    "badmod_obj.py": "def create(options):\n    return 42\n",
    "lab-reports.toml": LAB + 'reports = "/proc/nope"\n',
    "lab-nan.toml": LAB + "hazard_timeout = nan\n",
    "lab-inf.toml": LAB + "ioctl_timeout = inf\n",
    "lab-neg.toml": LAB + "ioctl_timeout = -1\n",
    "lab-workers0.toml": LAB + "workers = 0\n",
    "lab-workers-float.toml": LAB + "workers = 2.5\n",
    "lab-workers-bool.toml": LAB + "workers = true\n",
    "lab-run-not-table.toml": "run = 5\n",
    "lab-strict.toml": LAB + "strict = true\n",
    "lab-empty-reports.toml": LAB + 'reports = ""\n',
    "exp-list.toml": "expect = [1, 2]\n",
    "exp-driver.toml": EXPECT_OK + "driver = 5\n",
    "exp-link.toml": EXPECT_OK + 'link = ["https://x"]\n',
    "exp-device.toml": EXPECT_OK + 'device = ""\n',
    "exp-rule.toml": '[[expect]]\nrule = 5\nreason = "r"\n',
    "exp-nofile.toml": EXPECT_OK + 'tests = ["suites/test_nosuch.py::*"]\n',
    "exp-notest.toml": EXPECT_OK + 'tests = ["suites/test_reset.py::test_no_such_test[*]"]\n',
    "exp-bare.toml": EXPECT_OK + 'tests = ["suites/test_reset.py"]\n',
    "exp-tests-empty.toml": EXPECT_OK + "tests = []\n",
    "results/x-result.json": "{}\n",
    "not-a-report/notes.txt": "keep me\n",
    "empty-dir/.keep": "",
}


def row(entry: tuple[str, ...], *args: str, says: str | tuple[str, ...], rid: str) -> Any:
    return pytest.param(entry, list(args), (says,) if isinstance(says, str) else says, id=rid)


TABLE = [
    # ./cts: backends
    row(CTS, "--backend", "nosuch", says="unknown backend 'nosuch'", rid="cts-backend-unknown"),
    row(CTS, "--backend=", says="--backend needs a value", rid="cts-backend-empty"),
    row(CTS, "--backend", "badmod_raise:create", says=("importing badmod_raise failed", "boom at import"),
        rid="cts-backend-raises-at-import"),
    row(CTS, "--backend", "badmod_syntax:create", says=("cannot import badmod_syntax", "line 1"),
        rid="cts-backend-syntax-error"),
    row(CTS, "--backend", "badmod_exit:create", says="it called sys.exit(3)", rid="cts-backend-factory-exits"),
    row(CTS, "--backend", "badmod_obj:create", says="has no feature_sets()", rid="cts-backend-returns-junk"),
    row(CTS, "--backend", "badmod_obj:nothing", says="has no callable 'nothing'", rid="cts-backend-no-factory"),
    row(CTS, "--fault=", says="--fault needs a value", rid="cts-fault-empty"),
    row(CTS, "--fault", "nosuch", says="unknown fault 'nosuch'", rid="cts-fault-unknown"),
    row(CTS, "--personality=", says="--personality needs a value", rid="cts-personality-empty"),
    row(CTS, "--kernel-profile=", says="--kernel-profile needs a value", rid="cts-profile-empty"),
    row(CTS, "--kernel-profile", "2.6", says="unknown kernel profile '2.6'", rid="cts-profile-unknown"),
    row(CTS, "--open-path", "fast", says="--open-path 'fast': use auto, cdev, legacy", rid="cts-open-path"),
    row(CTS, "--vfio-peer=", says="--vfio-peer needs a value", rid="cts-peer-empty"),
    # ./cts: numbers
    row(CTS, "--ioctl-timeout", "0", says="--ioctl-timeout '0': give a number of seconds above 0",
        rid="cts-ioctl-timeout-0"),
    row(CTS, "--ioctl-timeout", "nan", says="--ioctl-timeout 'nan'", rid="cts-ioctl-timeout-nan"),
    row(CTS, "--ioctl-timeout", "1e400", says="--ioctl-timeout '1e400'", rid="cts-ioctl-timeout-1e400"),
    row(CTS, "--ioctl-timeout", "abc", says="--ioctl-timeout 'abc'", rid="cts-ioctl-timeout-text"),
    row(CTS, "--ioctl-timeout", "100000", says="to 86400", rid="cts-ioctl-timeout-too-long"),
    row(CTS, "--hazard-timeout", "-5", says="--hazard-timeout '-5'", rid="cts-hazard-timeout-negative"),
    row(CTS, "--hazard-timeout", "inf", says="--hazard-timeout 'inf'", rid="cts-hazard-timeout-inf"),
    row(CTS, "--stateful-examples", "-5", says="--stateful-examples '-5': give an integer from 1",
        rid="cts-examples-negative"),
    row(CTS, "--stateful-examples", "2.5", says="--stateful-examples '2.5'", rid="cts-examples-float"),
    row(CTS, "--stateful-steps", "0", says="--stateful-steps '0'", rid="cts-steps-0"),
    row(CTS, "--stateful-seed", "banana", says="--stateful-seed 'banana'", rid="cts-seed-text"),
    row(CTS, "--stateful-seed", "-1", says="--stateful-seed '-1'", rid="cts-seed-negative"),
    row(CTS, "--race-repeat", "0", says="--race-repeat '0'", rid="cts-race-repeat-0"),
    row(CTS, "--race-timeout", "nan", says="--race-timeout 'nan'", rid="cts-race-timeout-nan"),
    row(CTS, "-n", "-1", says="-n -1: give a number of workers", rid="cts-workers-negative"),
    # ./cts: reports
    row(CTS, "--reports=", says="--reports needs a folder", rid="cts-reports-empty"),
    row(CTS, "--reports", "{tmp}/a-file", says="is a file, not a folder", rid="cts-reports-file"),
    row(CTS, "--reports", "/proc/nope", says="cannot create /proc/nope", rid="cts-reports-uncreatable"),
    row(CTS, "--reports", "/proc/1/x/y", says="cannot create /proc/1/x/y", rid="cts-reports-unwritable"),
    row(CTS, "--no-reports", "--reports", "{tmp}/r", says="contradict each other", rid="cts-no-reports-and-reports"),
    # ./cts: lab files
    row(CTS, "--lab=", says="--lab needs a file", rid="cts-lab-empty"),
    row(CTS, "--lab", "{tmp}/nope.toml", says="lab config {tmp}/nope.toml", rid="cts-lab-missing"),
    row(CTS, "--lab", "{tmp}/binary.toml", says="not a text file", rid="cts-lab-binary"),
    row(CTS, "--lab", "{tmp}/lab-reports.toml", says="cannot create /proc/nope", rid="cts-lab-reports-uncreatable"),
    row(CTS, "--lab", "{tmp}/lab-empty-reports.toml", says="reports must name a folder", rid="cts-lab-reports-empty"),
    row(CTS, "--lab", "{tmp}/lab-nan.toml", says="hazard_timeout nan: give a number of seconds", rid="cts-lab-nan"),
    row(CTS, "--lab", "{tmp}/lab-inf.toml", says="ioctl_timeout inf", rid="cts-lab-inf"),
    row(CTS, "--lab", "{tmp}/lab-neg.toml", says="ioctl_timeout -1", rid="cts-lab-negative"),
    row(CTS, "--lab", "{tmp}/lab-workers0.toml", says="workers 0: give an integer from 1", rid="cts-lab-workers-0"),
    row(CTS, "--lab", "{tmp}/lab-workers-float.toml", says="workers must be int, not float",
        rid="cts-lab-workers-float"),
    row(CTS, "--lab", "{tmp}/lab-workers-bool.toml", says="workers must be int, not bool", rid="cts-lab-workers-bool"),
    row(CTS, "--lab", "{tmp}/lab-run-not-table.toml", says="run must be a table", rid="cts-lab-run-not-table"),
    row(CTS, "--lab", "{tmp}/lab-strict.toml", says="strict is now called strict_rules (as --strict-rules",
        rid="cts-lab-old-strict-key"),
    # ./cts: expectation files
    row(CTS, "--expectations", "{tmp}/nope.toml", says="no such file", rid="cts-exp-missing"),
    row(CTS, "--expectations", "{tmp}/binary.toml", says="not a text file", rid="cts-exp-binary"),
    row(CTS, "--expectations", "{tmp}/exp-list.toml", says="not an [[expect]] table but int 1", rid="cts-exp-numbers"),
    row(CTS, "--expectations", "{tmp}/exp-driver.toml", says="driver must be a non-empty string, not int 5",
        rid="cts-exp-driver-type"),
    row(CTS, "--expectations", "{tmp}/exp-link.toml", says="link must be a non-empty string", rid="cts-exp-link-type"),
    row(CTS, "--expectations", "{tmp}/exp-device.toml", says="device must be a non-empty string",
        rid="cts-exp-device-empty"),
    row(CTS, "--expectations", "{tmp}/exp-rule.toml", says="rule 5 is not in the registry", rid="cts-exp-rule-type"),
    row(CTS, "--expectations", "{tmp}/exp-nofile.toml", says="no file suites/test_nosuch.py", rid="cts-exp-glob-file"),
    row(CTS, "--expectations", "{tmp}/exp-notest.toml", says="has no test test_no_such_test",
        rid="cts-exp-glob-test"),
    row(CTS, "--expectations", "{tmp}/exp-bare.toml", says="names no test", rid="cts-exp-glob-bare-file"),
    row(CTS, "--expectations", "{tmp}/exp-tests-empty.toml", says="tests must be a list of node-id globs",
        rid="cts-exp-tests-empty"),
    # python -m lane: argument validation only (nothing is built or booted)
    row(LANE, "--workers", "0", says="--workers '0': give an integer from 1", rid="lane-workers-0"),
    row(LANE, "--workers", "two", says="--workers 'two'", rid="lane-workers-text"),
    row(LANE, "--attempts", "0", says="--attempts '0'", rid="lane-attempts-0"),
    row(LANE, "--attempts", "1000", says="to 20", rid="lane-attempts-too-many"),
    row(LANE, "--jobs", "-2", says="--jobs '-2'", rid="lane-jobs-negative"),
    row(LANE, "--suite-timeout", "nan", says="--suite-timeout 'nan'", rid="lane-suite-timeout-nan"),
    row(LANE, "--timeout", "-1", says="--timeout '-1'", rid="lane-timeout-negative"),
    row(LANE, "--timeout", "1e400", says="--timeout '1e400'", rid="lane-timeout-inf"),
    row(LANE, "--kernel", "{tmp}/nope", says="neither a kernel image nor a source tree", rid="lane-kernel-missing"),
    row(LANE, "--expectations", "{tmp}/nope.toml", says="no such file", rid="lane-expectations-missing"),
    row(LANE, "--accel", "warp", says="invalid choice: 'warp'", rid="lane-accel"),
    row(LANE, "--open-path", "fast", says="invalid choice: 'fast'", rid="lane-open-path"),
    row(LANE, "--frobnicate", says="unrecognized arguments: --frobnicate", rid="lane-unknown-option"),
    row(LANE, "stray", says="pytest's go after --", rid="lane-stray-argument"),
    row(LANE, "--reports=", says="--reports needs a folder", rid="lane-reports-empty"),
    row(LANE, "--reports", "/proc/nope", says="cannot create /proc/nope", rid="lane-reports-uncreatable"),
    row(LANE, "--reports", "{tmp}/a-file", says="is not a folder", rid="lane-reports-file"),
    # scripts/bind-vfio: on a fake sysfs ({tmp}/sys, one device 0000:3b:00.2 on mlx5_core); nothing is bound
    row(BIND, "bind", "3b:00.9", says="cannot read PCI address '3b:00.9'", rid="bind-bad-address"),
    row(BIND, "bind", "0000:3b:00.1", says="no such PCI device 0000:3b:00.1", rid="bind-no-device"),
    row(BIND, "bind", U1, says="is an mdev UUID", rid="bind-mdev"),
    row(BIND, "bind", says="name a PCI device", rid="bind-nothing"),
    row(BIND, "bind", "--driver=", "0000:3b:00.2", says="--driver needs a value", rid="bind-driver-empty"),
    row(BIND, "frobnicate", says="invalid choice: 'frobnicate'", rid="bind-unknown-action"),
    row(BIND, "bind", "--bogus", "0000:3b:00.2", says="unrecognized arguments: --bogus", rid="bind-unknown-option"),
    row(BIND, "restore", "0000:3b:00.2", says="no recorded driver for 0000:3b:00.2", rid="bind-restore-unrecorded"),
    row(BIND, "status", "0000:99:00.0", says="no such PCI device 0000:99:00.0", rid="bind-status-no-device"),
    row(BIND, "run", "0000:3b:00.2", says="run needs a command after --", rid="bind-run-no-command"),
    row(BIND, "run", "--dry-run", "0000:3b:00.2", "--", "{tmp}/no-such-command",
        says="command '{tmp}/no-such-command' not found", rid="bind-run-command-missing"),
    row(BIND, "run", "--dry-run", "0000:3b:00.2", "--", "{tmp}/a-file", says="is not an executable program",
        rid="bind-run-command-not-executable"),
    row(BIND, "run", "--lab", "{tmp}/binary.toml", "--", "true", says="not a text file", rid="bind-run-lab-binary"),
    row(BIND, "run", "--lab", "{tmp}/nope.toml", "--", "true", says="lab config {tmp}/nope.toml",
        rid="bind-run-lab-missing"),
    row(BIND, "bind", "0000:3b:00.2", "--", "true", says="bind takes no command after --", rid="bind-stray-command"),
    # ./cts report (scripts/allure-report): checked before Node.js is looked for
    row(REPORT, "{tmp}/nope", says="no folder {tmp}/nope", rid="report-results-missing"),
    row(REPORT, "{tmp}/empty-dir", says="no Allure results in {tmp}/empty-dir", rid="report-results-empty"),
    row(REPORT, "{tmp}/results", "-o", says="-o needs a folder", rid="report-output-missing"),
    row(REPORT, "{tmp}/results", "-o", "", says="-o needs a folder", rid="report-output-empty"),
    row(REPORT, "--bogus", says="unknown option --bogus", rid="report-unknown-option"),
    row(REPORT, "{tmp}/results", "-o", "{tmp}/a-file", says="is a file", rid="report-output-file"),
    row(REPORT, "{tmp}/results", "-o", "{tmp}/not-a-report", says="is not an Allure report",
        rid="report-output-not-a-report"),
    row(REPORT, "{tmp}/results", "-o", "/proc/nope", says="cannot create -o /proc/nope",
        rid="report-output-uncreatable"),
    # ./cts compare
    row(COMPARE, "{tmp}/nope", "{tmp}/nope2", says="{tmp}/nope: not a vfio-mig-cts results file",
        rid="compare-missing"),
    row(COMPARE, "{tmp}/binary.toml", "{tmp}/binary.toml", says="not a vfio-mig-cts results file",
        rid="compare-binary"),
    row(COMPARE, "{tmp}/exp-list.toml", "{tmp}/exp-list.toml", says="not a vfio-mig-cts results file",
        rid="compare-not-results"),
    row(COMPARE, "{tmp}/empty-dir", "{tmp}/empty-dir", says="{tmp}/empty-dir/results.json", rid="compare-empty-dir"),
    row(COMPARE, "{tmp}/nope", says="the following arguments are required: after", rid="compare-one-argument"),
    row(COMPARE, "--bogus", "a", "b", says="unrecognized arguments: --bogus", rid="compare-unknown-option"),
    # the other tools
    row(BENCH, "abc", says="RUNS 'abc': give an integer from 1 to 100", rid="bench-runs-text"),
    row(BENCH, "0", says="RUNS '0'", rid="bench-runs-0"),
    row(BENCH, "1", "--ioctl-timeout", "nan", says="--ioctl-timeout 'nan'", rid="bench-suite-args"),
    row(MUTATION, "status", says="no mutation session in", rid="mutation-status-no-session"),
    row(MUTATION, "report", says="no mutation session in", rid="mutation-report-no-session"),
    row(MUTATION, "bogus", says="invalid choice: 'bogus'", rid="mutation-unknown-command"),
    row(FAULTS, "bogus", says="unknown fault 'bogus'", rid="faults-unknown-entry"),
    row(CALIBRATION, "{tmp}/empty-dir", "--model", "{tmp}/nope.json", says="{tmp}/nope.json: cannot read results",
        rid="calibration-model-missing"),
    row(CALIBRATION, "--bogus", says="unrecognized arguments: --bogus", rid="calibration-unknown-option"),
    row(FAULTS, "--frobnicate", says="unknown option '--frobnicate'", rid="faults-unknown-option"),
]


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the table's rows name, and a fake sysfs for bind-vfio (made once: every row only reads)."""
    tmp = tmp_path_factory.mktemp("bad-input")
    for name, content in FILES.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    make_pci(tmp / "sys", "0000:3b:00.2", driver="mlx5_core", cdev=None)
    return tmp


def run_entry(entry: tuple[str, ...], args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """An entry point in a subprocess, from the repository, as a user runs it.

    A lane row runs with a PATH without QEMU: should its input pass validation after all, the lane stops
    at its tool check (exit 21) instead of building a kernel. Every row runs in its own session, killed
    whole if it outlives its time.
    """
    environ = {k: v for k, v in os.environ.items() if k not in ("VFIO_SELFTESTS_BDF", "PYTEST_XDIST_WORKER",
                                                                 "PYTEST_XDIST_TESTRUNUID", "PYTEST_ADDOPTS")}
    environ.update({"PYTHONPATH": str(tmp), "VFIO_CTS_SYSFS_ROOT": str(tmp / "sys"),
                    "VFIO_CTS_BIND_STATE": str(tmp / "state"), "COLUMNS": "200"})
    if entry == LANE:
        environ["PATH"] = str(tmp / "no-tools")
    cmd = [part.replace("{tmp}", str(tmp)) for part in (*entry, *args)]
    if entry == CTS:
        cmd[1:1] = ["-p", "no:cacheprovider"]
    with subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=50)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(cmd)} still running after 50 s (killed): {(out + err)[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize(("entry", "args", "says"), TABLE)
def test_bad_input_table(table_dir: Path, entry: tuple[str, ...], args: list[str], says: tuple[str, ...]) -> None:
    proc = run_entry(entry, args, table_dir)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-3000:]
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert proc.returncode == Exit.BAD_INPUT, output[-3000:]
    assert len(lines) == 1, output[-3000:]
    assert lines[0].startswith(PREFIX[entry]), lines[0]
    for s in says:
        assert s.replace("{tmp}", str(table_dir)) in lines[0], lines[0]


def test_the_table_covers_every_entry_point() -> None:
    """At least 60 rows, and every entry point has some."""
    assert len(TABLE) >= 60
    assert {p.values[0] for p in TABLE} == set(PREFIX)


def test_a_reports_folder_left_unwritable_is_refused_before_any_test(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """What an unprivileged user meets after a run as root (simulated: these tests run as root)."""
    from types import SimpleNamespace

    from fixtures import plugin

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.json").write_text("{}")
    monkeypatch.setattr("os.access", lambda p, mode: Path(p).name != "results.json")
    config = SimpleNamespace(option=SimpleNamespace(reports="reports"),
                             invocation_params=SimpleNamespace(dir=tmp_path))
    with pytest.raises(pytest.UsageError) as info:
        plugin._prepare_reports(config)  # type: ignore[arg-type]
    assert str(info.value) == (f"--reports reports: cannot write {tmp_path / 'reports' / 'results.json'} (left by "
                               "a run as another user, root?): remove it or name another folder")
