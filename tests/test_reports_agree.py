"""Every report tells the same story: one session with every outcome, rendered in every format.

The session is a small conformance suite written for this test (each test makes one outcome happen
through the real plugin: the verdict, an expectation file, a hazard mark on a device that says it is
real, a skip, a setup error), run in a child pytest, plain and under ``-n 2``, with and without
``--strict-rules``. For every test, results.json, JUnit, KTAP, Allure and KCIDB must give the same
outcome, and every format the same counts. A run ended by SIGTERM leaves one consistent set marked
interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import kcidb_io
import pytest

import conftest
from vfio_mig_cts.reports import kcidb
from vfio_mig_cts.reports.record import Outcome, RunStatus, load
from vfio_mig_cts.spec.registry import RULES, Force

ROOT = Path(__file__).resolve().parent.parent
MUST = "ARC.TRANSITION"
SHOULD = next(r.id for r in RULES.values() if r.force is Force.SHOULD)
KNOWN = "ARC.DATA_FD"
STRICT = "--strict-rules"  # the suite's strictness option (what strict_rules() reads)

# The mock, presented as a real device so that a hazard is not run (fixtures/hazards.py).
REAL_MOCK = '''
from vfio_mig_cts.backends.mock.factory import create_backend


def create(options):
    backend = create_backend(options)
    backend.real = True
    return backend
'''

SUITE = f'''
import pytest

from vfio_mig_cts.backends.protocol import Hazard


@pytest.mark.rule("{MUST}")
def test_passes(dut, verdict):
    verdict.check("{MUST}", True, "state STOP", "state STOP")


@pytest.mark.rule("{MUST}")
def test_breaks_a_must(dut, verdict):
    verdict.check("{MUST}", False, "state STOP", "state RUNNING")


@pytest.mark.rule("{SHOULD}")
def test_breaks_a_should(dut, verdict):
    verdict.check("{SHOULD}", False, "the shortest path", "a longer one")


@pytest.mark.rule("{KNOWN}")
def test_known_failure(dut, verdict):
    verdict.check("{KNOWN}", False, "no data_fd", "a data_fd")


@pytest.mark.rule("{KNOWN}")
def test_fixed_since(dut, verdict):
    verdict.check("{KNOWN}", True, "no data_fd", "no data_fd")


def test_skips(dut):
    pytest.skip("no peer device on this host")


@pytest.mark.hazard("the driver oopses here", kind=Hazard.DRIVER)
def test_hazard(dut):
    pass


@pytest.fixture
def broken_environment():
    raise RuntimeError("the host lost its IOMMU group")


def test_errors(broken_environment):
    pass
'''

EXPECT = f'''
[[expect]]
rule = "{KNOWN}"
driver = "mock"
tests = ["*::test_known_failure*", "*::test_fixed_since*"]
reason = "the driver returns a data_fd here"
link = "https://example.org/bug/1"
'''

OUTCOME_OF = {  # test name -> the outcome every format must show
    "test_passes": Outcome.PASSED, "test_breaks_a_must": Outcome.FAILED, "test_breaks_a_should": Outcome.WARNING,
    "test_known_failure": Outcome.XFAILED, "test_fixed_since": Outcome.XPASSED, "test_skips": Outcome.SKIPPED,
    "test_hazard": Outcome.HAZARD, "test_errors": Outcome.ERROR,
}
JUNIT = {Outcome.PASSED: "", Outcome.WARNING: "system-out", Outcome.FAILED: "failure", Outcome.XPASSED: "failure",
         Outcome.ERROR: "error", Outcome.SKIPPED: "skipped", Outcome.HAZARD: "skipped", Outcome.XFAILED: "skipped"}
KTAP = {Outcome.PASSED: "ok", Outcome.WARNING: "ok", Outcome.FAILED: "not ok", Outcome.XPASSED: "not ok",
        Outcome.ERROR: "not ok", Outcome.SKIPPED: "SKIP", Outcome.HAZARD: "SKIP", Outcome.XFAILED: "XFAIL"}
ALLURE = {Outcome.PASSED: ("passed", ""), Outcome.WARNING: ("passed", "WARNING"), Outcome.FAILED: ("failed", "FAIL"),
          Outcome.XPASSED: ("failed", "XPASS"), Outcome.ERROR: ("broken", "ERROR"),
          Outcome.SKIPPED: ("skipped", "SKIP"), Outcome.HAZARD: ("skipped", "HAZARD"),
          Outcome.XFAILED: ("skipped", "XFAIL")}


def base_name(name: str) -> str:
    return name.split("[", 1)[0].split(" @", 1)[0]


def run_session(tmp: Path, *args: str) -> tuple[int, str, Path]:
    suite = tmp / "test_every_outcome.py"
    suite.write_text(SUITE)
    (tmp / "expect.toml").write_text(EXPECT)
    (tmp / "real_mock.py").write_text(REAL_MOCK)
    reports = tmp / "reports"
    plugins = [arg for name in conftest.pytest_plugins for arg in ("-p", name)]
    cmd = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", "--rootdir", str(ROOT),
           "-c", str(ROOT / "pyproject.toml"), *plugins, "--reports", str(reports),
           "--expectations", str(tmp / "expect.toml"), "--backend", "real_mock:create", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tmp), os.environ.get("PYTHONPATH"))))}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env)
    return proc.returncode, proc.stdout + proc.stderr, reports


def junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    """testcase -> (outcome property, the child element that carries it)."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value", "") for p in case.iter("property")}
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped", "system-out")]
        out[f"{case.get('classname')}::{case.get('name')}"] = (props["outcome"], kinds[0] if kinds else "")
    return out


def ktap_outcomes(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^    (not ok|ok) \d+ (\S+)(?: # (SKIP|XFAIL))?", line)
        if m:
            out[m[2]] = m[3] or m[1]
    return out


def check_agreement(reports: Path, strict: bool = False) -> Counter[Outcome]:
    results = load(reports / "results.json")
    assert results.run.status is RunStatus.COMPLETE
    by_name = {t.name: t for t in results.tests}
    expected = dict(OUTCOME_OF)
    if strict:
        expected["test_breaks_a_should"] = Outcome.FAILED
    for name, t in by_name.items():
        assert t.outcome is expected[base_name(name)], (name, t.outcome, t.message)
    assert {base_name(n) for n in by_name} == set(OUTCOME_OF)
    counts = results.counts()

    junit = junit_outcomes(reports / "junit.xml")
    assert len(junit) == len(results.tests)
    for key, (outcome, kind) in junit.items():
        o = Outcome(outcome)
        assert o is expected[base_name(key.split("::", 1)[1])], key
        assert kind == JUNIT[o], (key, kind)
    root = ET.parse(reports / "junit.xml").getroot()
    assert int(root.get("tests", 0)) == len(results.tests)
    assert int(root.get("failures", 0)) == counts[Outcome.FAILED] + counts[Outcome.XPASSED]
    assert int(root.get("errors", 0)) == counts[Outcome.ERROR]
    assert int(root.get("skipped", 0)) == counts[Outcome.SKIPPED] + counts[Outcome.HAZARD] + counts[Outcome.XFAILED]

    ktap = ktap_outcomes((reports / "results.ktap").read_text())
    assert len(ktap) == len(results.tests)
    for name, kind in ktap.items():
        assert kind == KTAP[expected[base_name(name)]], name

    allure = [json.loads(p.read_text()) for p in (reports / "allure-results").glob("*-result.json")]
    assert len(allure) == len(results.tests)
    for a in allure:
        o = expected[base_name(a["name"])]
        status, tag = ALLURE[o]
        assert a["status"] == status, a["name"]
        message = a.get("statusDetails", {}).get("message", "")
        shown = message.startswith(f"{tag}:") if tag else not message.startswith(("FAIL", "WARNING"))
        assert shown, (a["name"], message)

    data = json.loads((reports / "kcidb.json").read_text())
    kcidb_io.schema.LATEST.validate(data)
    tests = data["tests"]
    assert len(tests) == len(results.tests)
    for entry in tests:
        o = Outcome(entry["misc"]["outcome"])
        assert o is expected[base_name(entry["misc"]["nodeid"].split("::", 1)[1])]
        assert entry["status"] == kcidb.STATUS[o]
    assert [i["report_url"] for i in data["issues"]] == ["https://example.org/bug/1"]
    return counts


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_every_format_tells_the_same_story(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, out, reports = run_session(tmp_path, "-k", "stop_copy or errors", *args)
    assert code == 1, out[-3000:]
    counts = check_agreement(reports)
    assert all(counts[o] >= 1 for o in Outcome), counts
    summary = next(line for line in out.splitlines() if line.startswith("vfio-mig-cts: ") and " tests: " in line)
    for o in Outcome:
        assert f"{counts[o]} {o.value}" in summary, summary
    assert "Traceback" not in out


def test_strictness_turns_warnings_into_failures_everywhere(tmp_path: Path) -> None:
    code, out, reports = run_session(tmp_path, "-k", "stop_copy or errors", STRICT)
    assert code == 1, out[-3000:]
    counts = check_agreement(reports, strict=True)
    assert counts[Outcome.WARNING] == 0
    assert load(reports / "results.json").run.strict_rules


def test_a_terminated_run_leaves_one_set_marked_interrupted(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", "--reports", str(reports)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until tests are running
        line = proc.stdout.readline()
        if line.startswith(".") or not line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    results = load(reports / "results.json")
    assert results.run.status is RunStatus.INTERRUPTED, out[-2000:]
    assert 0 < len(results.tests) < results.run.collected
    junit = ET.parse(reports / "junit.xml").getroot()
    assert int(junit.get("tests", 0)) == len(results.tests)
    assert '<property name="run.status" value="interrupted" />' in (reports / "junit.xml").read_text()
    ktap = (reports / "results.ktap").read_text()
    assert "run_complete" in ktap and f"{len(results.tests)} of {results.run.collected} tests reported" in ktap
    assert len(list((reports / "allure-results").glob("*-result.json"))) == len(results.tests)
    assert not list(reports.glob(".staging-*"))
    assert "Traceback" not in out
