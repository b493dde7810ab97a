"""``./cts compare``: what got worse or better between two runs, keyed by test, not by device name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.records import DATA_FD, SHORTEST, rec, run
from vfio_mig_cts.reports.compare import compare, main
from vfio_mig_cts.reports.record import to_json

ROOT = Path(__file__).resolve().parent.parent
A = "suites/test_arcs.py::test_arc[p2p-STOP->RUNNING]"
B = "suites/test_arcs.py::test_arc[p2p-STOP->RESUMING]"
C = "suites/test_plumbing.py::test_argsz[stop_copy]"
D = "suites/test_plumbing.py::test_probe[stop_copy]"


def test_new_failures_new_warnings_fixes_and_lost_tests_are_told_apart() -> None:
    before = run([rec(A), rec(B), rec(C, "failed", findings=(DATA_FD,)), rec(D)])
    after = run([rec(A, "failed", findings=(DATA_FD,), device="other-host-dev"),
                 rec(B, "warning", findings=(SHORTEST,), device="other-host-dev"),
                 rec(C, device="other-host-dev"), rec(D, "skipped", device="other-host-dev")])
    c = compare(before, after)
    assert [ch.key for ch in c.new_failures] == [A]
    assert [ch.key for ch in c.new_findings] == [B]
    assert [ch.key for ch in c.fixed] == [C]
    assert [ch.key for ch in c.lost] == [D]
    assert c.worse
    assert c.per_rule == {"ARC.DATA_FD": 0, "ARC.SHORTEST_PATH": 1}


def test_the_same_results_on_another_device_are_not_worse() -> None:
    before = run([rec(A, device="0000:3b:00.1"), rec(C, "failed", findings=(DATA_FD,), device="0000:3b:00.1")])
    after = run([rec(A, device="0000:5e:00.1"), rec(C, "failed", findings=(DATA_FD,), device="0000:5e:00.1")])
    c = compare(before, after)
    assert not c.worse and not c.fixed and not c.other


def test_command_exits_1_when_worse_and_4_on_bad_input(tmp_path: Path, capsys: object) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "results.json").write_text(json.dumps(to_json(run([rec(A)]))))
    (bad / "results.json").write_text(json.dumps(to_json(run([rec(A, "failed", findings=(DATA_FD,))]))))
    assert main([str(good), str(good / "results.json")]) == 0
    assert main([str(good), str(bad)]) == 1
    assert main([str(bad), str(good)]) == 0
    assert main([str(good), str(tmp_path / "nope.json")]) == 4
    (tmp_path / "junk.json").write_text('{"results": []}')
    assert main([str(good), str(tmp_path / "junk.json")]) == 4
    proc = subprocess.run(["./cts", "compare", str(good), str(bad)], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "new failures (1):" in proc.stdout and "ARC.DATA_FD (must): expected no data_fd" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
