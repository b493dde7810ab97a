"""Lab config files (fixtures/labconfig.py), the shipped expectation files, and each-device runs."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fixtures.labconfig import LabConfigError, parse
from vfio_mig_cts.backends.loader import BackendOptions
from vfio_mig_cts.backends.mock.backend import MockBackend, MockDevice
from vfio_mig_cts.backends.protocol import Role
from vfio_mig_cts.judging.expectations import load as load_expectations

ROOT = Path(__file__).resolve().parent.parent
EXPECT = '[[expect]]\nrule = "ARC.ERROR_TARGET"\ndriver = "mock"\nreason = "known"\nlink = "https://x"\n'


# --- a backend for each-device runs: the mock, its device named after this worker's --vfio-device ----------

class NamedMock(MockBackend):
    def __init__(self, device: str, fault: str | None) -> None:
        from vfio_mig_cts.faults.catalogue import CATALOGUE

        super().__init__(quirks=CATALOGUE[fault].quirks() if fault else None)
        self.device = device

    def open(self, role: Role, flags: int) -> MockDevice:
        name = self.device if role is Role.DUT else f"{self.device}-{role.value}"
        return MockDevice(self.config(role, flags), name=name)


def lab_mock(options: BackendOptions) -> NamedMock:
    """``backend = "tests.test_labconfig:lab_mock"``; ``[backend_options] faults`` maps devices to faults."""
    device = options.devices[0] if options.devices else "mock-dut"
    faults = dict(options.extra.get("faults", {}))
    return NamedMock(device, faults.get(device) if len(options.devices) == 1 else None)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- parsing ---------------------------------------------------------------------------------------------------

def test_a_full_lab_file(tmp_path: Path) -> None:
    write(tmp_path / "mine.toml", EXPECT)
    lab = parse(write(tmp_path / "lab.toml", """
[run]
strict_rules = true
kernel_profile = "7.2"
open_path = "cdev"
ioctl_timeout = 20
expectations = ["expectations/mtty.toml"]

[backend_options]
answer = 42

[[device]]
name = "3B:00.1"
peer = "0000:5e:00.1"
incompatible = "0000:5e:00.2"
expectations = ["mine.toml"]

[[device]]
name = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
""" if (ROOT / "expectations/mtty.toml").exists() else """
[run]
strict_rules = true
kernel_profile = "7.2"
open_path = "cdev"
ioctl_timeout = 20

[backend_options]
answer = 42

[[device]]
name = "3B:00.1"
peer = "0000:5e:00.1"
incompatible = "0000:5e:00.2"
expectations = ["mine.toml"]

[[device]]
name = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
"""))
    assert lab.backend == "vfio" and lab.each and lab.workers == 2 and lab.distributed
    assert lab.device_names() == ["3B:00.1", "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"]
    assert lab.options == {"strict_rules": True, "kernel_profile": "7.2", "open_path": "cdev", "ioctl_timeout": 20}
    assert lab.backend_options == {"answer": 42}
    first = lab.devices[0]
    assert (first.peer, first.incompatible) == ("0000:5e:00.1", "0000:5e:00.2")
    # a device's own expectations are scoped to it, by the name reports use (normalised)
    assert [(e.rule, e.device) for e in first.expectations] == [("ARC.ERROR_TARGET", "0000:3b:00.1")]


def test_defaults_without_devices_are_the_mock(tmp_path: Path) -> None:
    lab = parse(write(tmp_path / "lab.toml", "[run]\nstrict_rules = false\n"))
    assert (lab.backend, lab.devices, lab.workers, lab.distributed) == ("mock", (), 1, False)


def test_a_lab_without_devices_spreads_the_tests_over_its_workers(tmp_path: Path) -> None:
    """``workers = 2`` in a mock lab is honoured (``-n 2 --dist load``), not dropped."""
    from types import SimpleNamespace

    from fixtures.labconfig import apply

    lab = parse(write(tmp_path / "lab.toml", "[run]\nworkers = 2\n"))
    assert (lab.backend, lab.each, lab.workers, lab.distributed) == ("mock", False, 2, True)
    controller = SimpleNamespace(option=_options())
    apply(controller, lab)  # type: ignore[arg-type]
    assert (controller.option.numprocesses, controller.option.dist) == (2, "load")


def test_reports_are_relative_to_the_lab_file_and_the_command_line_wins(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from fixtures.labconfig import apply

    lab = parse(write(tmp_path / "lab.toml", '[run]\nreports = "out"\n'))
    assert lab.options["reports"] == str(tmp_path / "out")
    for given, no_reports, want in ((None, False, str(tmp_path / "out")), ("mine", False, "mine"),
                                    (None, True, None)):
        config = SimpleNamespace(option=_options(reports=given, no_reports=no_reports))
        apply(config, lab)  # type: ignore[arg-type]
        assert config.option.reports == want


def test_expectation_paths_are_relative_to_the_lab_file_then_the_repository(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    write(sub / "local.toml", EXPECT)
    lab = parse(write(sub / "lab.toml", '[run]\nexpectations = ["local.toml"]\n'))
    assert lab.expectation_files == (sub / "local.toml",)
    shipped = sorted((ROOT / "expectations").glob("*.toml"))
    if shipped:
        rel = shipped[0].relative_to(ROOT)
        lab = parse(write(sub / "lab2.toml", f'[run]\nexpectations = ["{rel}"]\n'))
        assert lab.expectation_files == (ROOT / rel,)


def test_each_false_spreads_over_workers_and_needs_one_peer(tmp_path: Path) -> None:
    lab = parse(write(tmp_path / "lab.toml", '[run]\neach = false\nworkers = 3\n'
                      '[[device]]\nname = "0000:3b:00.1"\npeer = "0000:5e:00.1"\n'
                      '[[device]]\nname = "0000:3b:00.2"\npeer = "0000:5e:00.1"\n'))
    assert (lab.each, lab.workers) == (False, 3)
    with pytest.raises(LabConfigError, match="must share one peer"):
        parse(write(tmp_path / "bad.toml", '[run]\neach = false\n[[device]]\nname = "0000:3b:00.1"\n'
                    'peer = "0000:5e:00.1"\n[[device]]\nname = "0000:3b:00.2"\npeer = "0000:5e:00.2"\n'))


@pytest.mark.parametrize(("text", "says"), [
    ("[run]\nbogus = 1\n", "[run]: unknown key 'bogus'"),
    ("[runs]\n", "unknown key 'runs'"),
    ("[run]\nworkers = \"two\"\n", "workers must be int, not str"),
    ("[run]\nstrict_rules = 1\n", "strict_rules must be bool, not int"),
    ("[run]\nstrict = true\n", "strict is now called strict_rules (as --strict-rules on the command line)"),
    ("[run]\nopen_path = \"fast\"\n", "open_path must be one of auto, cdev, legacy"),
    ("[run]\nioctl_timeout = 0\n", "ioctl_timeout 0: give a number of seconds above 0"),
    ("[run]\nkernel_profile = \"5.4\"\n", "unknown kernel_profile '5.4'"),
    ("[[device]]\npeer = \"0000:3b:00.2\"\n", "[[device]] 1: a name is required"),
    ("[[device]]\nname = \"3b:00.1\"\ncolour = \"red\"\n", "[[device]] 1: unknown key 'colour'"),
    ("[[device]]\nname = \"nonsense\"\n", "[[device]] 1: cannot read device name 'nonsense'"),
    ("[[device]]\nname = \"3b:00.1\"\n[[device]]\nname = \"0000:3b:00.1\"\n", "listed twice"),
    ("[run]\nbackend = \"mock\"\n[[device]]\nname = \"3b:00.1\"\n", "the mock backend has no devices"),
    ("[run]\nworkers = 3\n[[device]]\nname = \"3b:00.1\"\n[[device]]\nname = \"3b:00.2\"\n",
     "one worker per device (2), not workers = 3"),
    ("[[device]]\nname = \"3b:00.1\"\npeer = \"3b:00.2\"\n[[device]]\nname = \"3b:00.2\"\n",
     "is both a device under test and the peer"),
    ("[[device]]\nname = \"3b:00.1\"\nexpectations = [\"missing.toml\"]\n",
     "expectation file 'missing.toml' not found"),
    ("[run]\nexpectations = \"bad.toml\"\n", "bad.toml"),
    ("x = [\n", "not valid TOML"),
])
def test_malformed_lab_files_are_one_line_errors(tmp_path: Path, text: str, says: str) -> None:
    write(tmp_path / "bad.toml", "[[expect]]\nrule = \"NO.SUCH\"\nreason = \"r\"\n")
    with pytest.raises(LabConfigError) as info:
        parse(write(tmp_path / "lab.toml", text))
    message = str(info.value)
    assert says in message, message
    assert "\n" not in message and message.startswith(f"lab config {tmp_path / 'lab.toml'}")


# --- the shipped expectation files -------------------------------------------------------------------------------

def test_shipped_expectation_files_load_strictly_with_reason_and_link() -> None:
    import tomllib

    files = sorted((ROOT / "expectations").glob("*.toml"))
    for f in files:
        entries = load_expectations(f)  # strict: unknown keys and rules are errors
        raw = tomllib.loads(f.read_text())["expect"]
        assert len(raw) == len(entries)
        for e, r in zip(entries, raw, strict=True):
            assert e.rule and e.reason.strip(), f"{f}: {r}"
            assert str(r.get("link", "")).startswith("https://"), f"{f}: entry for {e.rule} needs a link"
            assert e.driver, f"{f}: entry for {e.rule} names no driver"


# --- runs ----------------------------------------------------------------------------------------------------------

def _run(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "suites/test_arcs.py", "-q", "-p", "no:cacheprovider",
           "--reports", str(tmp_path / "reports"), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def test_each_device_runs_every_test_and_reports_keep_devices_apart(tmp_path: Path) -> None:
    write(tmp_path / "devB.toml",
          '[[expect]]\nrule = "ARC.ERROR_TARGET"\ndriver = "mock"\nreason = "devB accepts SET(ERROR)"\n'
          'link = "https://example.org/devB"\n')
    lab = write(tmp_path / "lab.toml", """
[run]
backend = "tests.test_labconfig:lab_mock"

[backend_options]
faults = { devB = "accepts-error-target" }

[[device]]
name = "devA"

[[device]]
name = "devB"
expectations = ["devB.toml"]
""")
    proc = _run(tmp_path, "--lab", str(lab), "-k", "stop_copy and not P2P and not PRE")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    reports = tmp_path / "reports"
    results = json.loads((reports / "results.json").read_text())["results"]
    by_device: dict[str, dict[str, str]] = {}
    for r in results:
        by_device.setdefault(r["device"], {})[r["nodeid"]] = r["outcome"]
    assert set(by_device) == {"devA", "devB"}
    assert set(by_device["devA"]) == set(by_device["devB"])  # every test on every device
    assert "xfailed" not in by_device["devA"].values()
    assert "xfailed" in by_device["devB"].values()  # devB's own expectation file, devB only
    # JUnit: a testsuite per device
    suites = [s.get("name", "") for s in ET.parse(reports / "junit.xml").getroot().iter("testsuite")]
    assert sorted(suites) == ["vfio-mig-cts@devA", "vfio-mig-cts@devB"]
    # KTAP: a suite per file and device
    ktap = (reports / "results.ktap").read_text()
    assert "# Subtest: test_arcs@devA" in ktap and "# Subtest: test_arcs@devB" in ktap
    # the matrix: one set of images per device
    assert (reports / "matrix-devA-stop_copy.svg").exists() and (reports / "matrix-devB-stop_copy.svg").exists()
    assert "x" in (reports / "matrix-devB-stop_copy.svg").read_text()
    # Allure: each device its own parentSuite, and distinct history ids
    seen: dict[str, set[str]] = {}
    for p in (reports / "allure-results").glob("*-result.json"):
        data = json.loads(p.read_text())
        parent = next((lb["value"] for lb in data["labels"] if lb["name"] == "parentSuite"), "")
        seen.setdefault(data["historyId"], set()).add(parent)
    assert all(len(parents) == 1 for parents in seen.values())
    props = (reports / "allure-results" / "environment.properties").read_text()
    assert "device.1=" in props and "device.2=" in props


def test_the_command_line_cannot_contradict_the_lab_file(tmp_path: Path) -> None:
    lab = write(tmp_path / "lab.toml", '[run]\nbackend = "tests.test_labconfig:lab_mock"\n'
                '[[device]]\nname = "devA"\n[[device]]\nname = "devB"\n')
    for args, says in ((("-n", "3"), "-n 3 conflicts with"), (("--dist", "load"), "--dist load conflicts"),
                       (("--vfio-device", "devC"), "--vfio-device conflicts with"),
                       (("--backend", "vfio"), "--backend vfio conflicts")):
        proc = _run(tmp_path, "--lab", str(lab), *args)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        assert proc.returncode == 4, lines
        assert len(lines) == 1 and says in lines[0], lines


def _options(**kw: object) -> object:
    from types import SimpleNamespace

    base: dict[str, object] = {"vfio_device": [], "vfio_peer": None, "vfio_incompatible": None, "backend": "mock",
                               "expectations": [], "numprocesses": None, "dist": "no", "reports": None,
                               "no_reports": False, "open_path": "auto", "hazard_timeout": 5.0, "ioctl_timeout": 10.0,
                               "kernel_profile": None, "strict_rules": False, "run_hazards": False}
    base.update(kw)
    return SimpleNamespace(**base)


PAIRS = ('[run]\nrun_hazards = true\n[[device]]\nname = "0000:3b:00.1"\npeer = "0000:5e:00.1"\n'
         '[[device]]\nname = "0000:3b:00.2"\npeer = "0000:5e:00.2"\nincompatible = "0000:5e:00.3"\n')


def test_each_mode_gives_the_controller_every_device_and_each_worker_its_pair(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from fixtures.labconfig import apply

    lab = parse(write(tmp_path / "lab.toml", PAIRS))
    controller = SimpleNamespace(option=_options())
    apply(controller, lab)  # type: ignore[arg-type]
    opt = controller.option
    assert (opt.backend, opt.vfio_device, opt.numprocesses, opt.dist) == (
        "vfio", ["0000:3b:00.1", "0000:3b:00.2"], 2, "each")
    assert opt.vfio_peer is None and opt.run_hazards is True  # pairs differ: each worker names its own
    for k, (dut, peer, inc) in enumerate((("0000:3b:00.1", "0000:5e:00.1", None),
                                          ("0000:3b:00.2", "0000:5e:00.2", "0000:5e:00.3"))):
        worker = SimpleNamespace(option=_options(), workerinput={"workerid": f"gw{k}"})
        apply(worker, lab)  # type: ignore[arg-type]
        assert (worker.option.vfio_device, worker.option.vfio_peer, worker.option.vfio_incompatible) == ([dut], peer,
                                                                                                         inc)
        assert worker.option.numprocesses is None
