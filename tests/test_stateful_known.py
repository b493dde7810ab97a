"""Known findings in the stateful explorer: a rule the expectation files list for the driver does not stop
the exploration; the explorer records it, goes on past it, and still catches (and shrinks) an unknown fault.

The mock here has two faults: ``precopy_eos_returns_zero`` (read() returns 0 at PRE_COPY's temporary end
of stream, EOS.PRECOPY_ENOMSG: what mtty 6.12 does, and what expectations/mtty.toml lists for mtty) and
``reset_ignored_in_resuming`` (RESET.ABORT_RESUMING, a must rule), which the seeds below meet later in the
exploration than the first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.mock.quirks import with_changes
from vfio_mig_cts.backends.protocol import Role
from vfio_mig_cts.exploration.stateful import Explorer, Judge, known_lines, known_rules
from vfio_mig_cts.exploration.walk import Exploration, Outcome, explore
from vfio_mig_cts.judging.expectations import load
from vfio_mig_cts.uapi.vfio import MigFlag

ROOT = Path(__file__).resolve().parent.parent
ALL = int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)
KNOWN, UNKNOWN = "EOS.PRECOPY_ENOMSG", "RESET.ABORT_RESUMING"
QUIRKS = {"precopy_eos_returns_zero": True, "reset_ignored_in_resuming": True}
EXAMPLES, STEPS = 20, 40  # the suite's defaults (fixtures/stateful_options.py)
SEEDS = (7, 11, 25)  # seeds whose exploration meets the known fault before the unknown one
# An entry written for the fixed suite's test only, as expectations/mtty.toml's for mtty is: the driver and
# the rule are what the explorer goes by.
ENTRY = f"""
[[expect]]
rule = "{KNOWN}"
driver = "mock"
tests = ["suites/test_precopy.py::test_initial_bytes_drain[*]"]
reason = "read() returns 0, not ENOMSG, at PRE_COPY's temporary end of stream"
link = "https://example.org/known"
"""
BACKEND = f"""
from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.mock.quirks import with_changes


def create(options):
    return MockBackend(quirks=with_changes({QUIRKS!r}))
"""


def _explore(tolerated: frozenset[str], seed: int) -> Outcome:
    backend = MockBackend(quirks=with_changes(QUIRKS))

    def make() -> Explorer:
        return Explorer(backend.open(Role.DUT, ALL), ALL, Judge(tolerated), backend.kernel_profile(),
                        reset_at_end=False)

    return explore(Exploration(make, lambda ex, failed: None), EXAMPLES, STEPS, seed)


@pytest.fixture
def expectation_file(tmp_path: Path) -> Path:
    path = tmp_path / "known.toml"
    path.write_text(ENTRY)
    return path


def test_known_rules_match_driver_and_device_whatever_tests(expectation_file: Path, tmp_path: Path) -> None:
    entries = load(expectation_file)
    known = known_rules(entries, "mock", "mock-dut")
    assert list(known) == [KNOWN] and known[KNOWN][0].reason.startswith("read() returns 0")
    assert known_rules(entries, "mtty", "mock-dut") == {}  # another driver's finding is not this one's
    other = tmp_path / "device.toml"
    other.write_text(ENTRY.replace('driver = "mock"', 'device = "0000:3b:00.1"'))
    assert list(known_rules(load(other), "mock", "0000:3b:00.1")) == [KNOWN]
    assert known_rules(load(other), "mock", "mock-dut") == {}


def test_explorer_goes_past_known_finding_and_catches_unknown(expectation_file: Path) -> None:
    known = known_rules(load(expectation_file), "mock", "mock-dut")
    tried = []
    for seed in SEEDS:
        stopped = _explore(frozenset(), seed)
        went_on = _explore(frozenset(known), seed)
        tried.append(f"seed {seed}: without {stopped.runs} runs, {stopped.finding and stopped.finding.rule.id}; "
                     f"with {went_on.runs} runs, {went_on.finding and went_on.finding.rule.id}")
        if stopped.finding is None or stopped.finding.rule.id != KNOWN:
            continue  # this seed meets the unknown fault first: it shows nothing here
        # Without the expectation, the exploration stops at the known finding ...
        assert stopped.tolerated == []
        # ... with it, the known finding is recorded and the exploration goes on to the unknown fault,
        # which still stops it and shrinks.
        assert went_on.finding is not None and went_on.finding.rule.id == UNKNOWN, tried
        assert went_on.tolerated and {f.rule.id for f in went_on.tolerated} == {KNOWN}
        assert went_on.runs >= stopped.runs
        assert 1 <= len(went_on.sequence) <= 4, went_on.sequence
        [(head, body)] = known_lines(known, went_on.tolerated)
        assert head == f"{KNOWN} (read() returns 0, not ENOMSG, at PRE_COPY's temporary end of stream) [known.toml:1]"
        assert body.startswith(f"known: {head}: {len(went_on.tolerated)} finding(s)")
        return
    pytest.fail(f"no seed met the known fault first: {'; '.join(tried)}")


def _suite(tmp_path: Path, seed: int, *extra: str) -> tuple[dict[str, object], dict[str, str], str]:
    """Run the stateful suite's richest feature set on the two-fault mock: its results.json record and
    JUnit properties, and the output."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "knownmock.py").write_text(BACKEND)
    reports = tmp_path / "reports"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    cmd = [sys.executable, "-m", "pytest", "suites/test_stateful.py::test_random_sequences[p2p+pre_copy]",
           "--backend", "knownmock:create", "--stateful-seed", str(seed), "--stateful-examples", str(EXAMPLES),
           "--stateful-steps", str(STEPS), "-p", "no:cacheprovider", "-p", "no:randomly", "-q",
           "--reports", str(reports), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert (reports / "results.json").exists(), output[-4000:]
    [record] = [r for r in json.loads((reports / "results.json").read_text())["results"] if r["when"] == "call"]
    props = {p.get("name", ""): p.get("value", "") for p in ET.parse(reports / "junit.xml").iter("property")}
    return record, props, output


def test_suite_reports_known_and_fails_on_unknown(expectation_file: Path, tmp_path: Path) -> None:
    """Through the suite as a user runs it: without the expectation file the test stops at the known
    finding (a conformance warning); with it the test records ``known: EOS.PRECOPY_ENOMSG (reason)`` and
    fails on the unknown must rule, with a minimal reproducer that goes past the known finding too."""
    seed = SEEDS[0]
    plain, _, out = _suite(tmp_path / "plain", seed)
    assert plain["outcome"] == "warning" and plain["broken"] == [KNOWN], out[-4000:]
    record, props, out = _suite(tmp_path / "known", seed, "--expectations", str(expectation_file))
    assert record["outcome"] == "failed" and record["broken"] == [UNKNOWN], out[-4000:]
    assert props["known"].startswith(f"{KNOWN} (read() returns 0, not ENOMSG"), props
    judged = record["rules"]
    assert isinstance(judged, list) and "ARC.TRANSITION" in judged and KNOWN not in judged  # the rules judged
    assert "known findings" in out and f"known: {KNOWN}" in out
    scripts = list((tmp_path / "known" / "reports" / "stateful").glob("*.py"))
    assert len(scripts) == 1, scripts
    assert f"known=('{KNOWN}',)" in scripts[0].read_text()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "known")}
    run = subprocess.run([sys.executable, str(scripts[0])], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "REPRODUCED" in run.stdout and UNKNOWN in run.stdout
