"""The fork server that runs the suite for the fault catalogue: each run as a separate process would be."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vfio_mig_cts.faults.forkserver import ForkServer, RunTimeout
from vfio_mig_cts.faults.suite_run import ROOT, run_suite

ARCS = "suites/test_arcs.py"
FEW = ("-k", "STOP_COPY and not ERROR and not RESUMING", "--report-formats", "json")


def test_a_run_gives_what_a_separate_process_gives(tmp_path: Path) -> None:
    """Exit code, every test's outcome and the output's summary line, for a faulty and a correct mock."""
    for args in (("--fault", "keeps-old-state", *FEW), FEW):
        direct = subprocess.run([sys.executable, "-m", "pytest", ARCS, "-q", "-p", "no:cacheprovider",
                                 "--reports", str(tmp_path / "direct"), *args],
                                cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        served = run_suite(tmp_path / "served", *args, paths=(ARCS,))
        want = json.loads((tmp_path / "direct" / "results.json").read_text())["results"]
        assert served.returncode == direct.returncode
        assert {r["nodeid"]: r["outcome"] for r in served.results} == {r["nodeid"]: r["outcome"] for r in want}
        assert served.output.strip().splitlines()[-1].split(" in ")[0] == \
            direct.stdout.strip().splitlines()[-1].split(" in ")[0]


def test_runs_are_independent_of_what_ran_before(tmp_path: Path) -> None:
    """A correct run after a faulty one passes everything, as it does first."""
    first = run_suite(tmp_path / "a", *FEW, paths=(ARCS,))
    faulty = run_suite(tmp_path / "b", "--fault", "state-drifts", *FEW, paths=(ARCS,))
    again = run_suite(tmp_path / "c", *FEW, paths=(ARCS,))
    assert faulty.returncode == 1 and faulty.failures()
    assert first.returncode == again.returncode == 0
    assert first.outcomes() == again.outcomes()


def test_bad_input_is_the_runs_own_one_line(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--fault", "no-such-fault", paths=(ARCS,))
    assert run.returncode == 4
    assert "no-such-fault" in run.output


def test_a_run_past_its_timeout_is_killed_and_the_server_goes_on(tmp_path: Path) -> None:
    """The mock hangs on a blocked arc for an hour (contained for 60 s): the 3 s timeout ends the run."""
    server = ForkServer()
    try:
        args = [f"{ARCS}::test_arc[pre_copy-STOP_COPY->PRE_COPY]", "-q", "-p", "no:cacheprovider", "--no-reports",
                "--fault", "hangs-on-blocked-arc", "--hazard-timeout", "60"]
        with pytest.raises(RunTimeout):
            server.run(args, tmp_path / "hang.out", timeout=3)
        code = server.run([ARCS, "-q", "-p", "no:cacheprovider", "--no-reports", *FEW], tmp_path / "next.out",
                          timeout=300)
        assert code == 0, (tmp_path / "next.out").read_text()[-2000:]
    finally:
        server.close()
