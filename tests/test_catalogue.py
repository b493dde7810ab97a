"""The fault catalogue: each faulty mock is caught by the tests it names, within its rule family."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.killmatrix import record
from vfio_mig_cts.faults.catalogue import CATALOGUE
from vfio_mig_cts.faults.suite_run import run_suite
from vfio_mig_cts.judging import globs
from vfio_mig_cts.spec.registry import RULES

# Fault runs need results.json only: no other report formats (they double a run's time).
FAST = ("--report-formats", "json")


pytestmark = pytest.mark.timeout(900)  # each test runs the whole suite in a child pytest


def test_correct_mock_passes_everything_strictly(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--strict-rules", *FAST)
    assert run.returncode == 0, run.output[-3000:]
    assert len(run.results) >= 300
    assert not [r for r in run.results if r["outcome"] not in ("passed", "skipped")], run.output[-3000:]
    assert all(r["message"] for r in run.results if r["outcome"] == "skipped"), "a skip without a reason"


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_fault_is_caught(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Every test the entry names fails against it; every failure is within the entry's rule family."""
    fault = CATALOGUE[name]
    args = ["--fault", name, "--strict-rules", "--hazard-timeout", "2", *FAST]
    if fault.profile:
        args += ["--kernel-profile", fault.profile]
    run = run_suite(tmp_path, *args)
    outcomes = run.outcomes()
    killed_by = sorted(n for n, o in outcomes.items() if o in ("failed", "error"))
    survivors = sorted(n for pattern in fault.kills for n in outcomes
                       if globs.match(n, pattern) and outcomes[n] not in ("failed", "error"))
    record(request.node.user_properties, entry=name, rule=fault.rule, killed_by=killed_by, survivors=survivors)
    assert run.returncode == 1, f"suite exit {run.returncode}\n{run.output[-2000:]}"
    for pattern in fault.kills:
        assert any(globs.match(n, pattern) for n in outcomes), f"{name}: no test matches {pattern}"
    assert not survivors, f"{name}: these tests should fail but did not: {survivors}"
    family = fault.family
    for r in run.failures():
        assert r["broken"], f"{name}: {r['nodeid']} failed without naming a rule:\n{r['message'][:1500]}"
        strays = [b for b in r["broken"] if RULES[b].family is not family and b not in fault.also]
        assert not strays, f"{name}: {r['nodeid']} broke {strays}, outside family {family.value}"


def test_blocked_arc_hang_is_reported_as_kernel_bug(tmp_path: Path) -> None:
    """On a kernel without the loop fix the blocked arcs hang; contained, they are the core's known bug."""
    run = run_suite(tmp_path, "--kernel-profile", "6.12-unfixed", "--hazard-timeout", "1",
                    "-k", "STOP_COPY and PRE_COPY", paths=("suites/test_arcs.py",))
    ids = {f"suites/test_arcs.py::test_arc[{case}]" for case in (
        "pre_copy-STOP_COPY->PRE_COPY", "p2p+pre_copy-STOP_COPY->PRE_COPY", "p2p+pre_copy-STOP_COPY->PRE_COPY_P2P")}
    blocked = [r for r in run.results if r["nodeid"] in ids]
    assert len(blocked) == 3, run.output[-2000:]
    assert all(r["outcome"] == "xfailed" for r in blocked), blocked
    assert all("KERNEL BUG" in r["message"] for r in blocked)
    assert run.returncode == 0


def test_every_rule_has_a_fault() -> None:
    """Completeness: each registry rule is broken by at least one catalogue entry."""
    covered = {f.rule for f in CATALOGUE.values()}
    missing = sorted(set(RULES) - covered)
    assert not missing, f"rules without a catalogue entry that breaks them: {missing}"
