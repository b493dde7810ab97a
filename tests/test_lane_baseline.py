"""The lane's coverage floor (lane/baseline.py): counting, comparing, updating, and the lane's verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lane import baseline, cli
from lane.errors import LaneFailure


def rec(nodeid: str, outcome: str, when: str = "call") -> dict[str, object]:
    return {"nodeid": nodeid, "when": when, "outcome": outcome, "rules": [], "broken": [], "message": ""}


def write_run(reports: Path, run: str, records: list[dict[str, object]]) -> None:
    (reports / run).mkdir(parents=True, exist_ok=True)
    (reports / run / "results.json").write_text(json.dumps({"results": records}))


RECORDS = [
    rec("suites/test_arcs.py::test_a[x]", "passed"),
    rec("suites/test_arcs.py::test_a[y]", "skipped", "setup"),
    rec("suites/test_arcs.py::test_b", "xfailed"),
    rec("suites/test_resume.py::test_c", "warning"),
    rec("suites/test_resume.py::test_c", "error", "teardown"),  # one case, two records
    rec("suites/test_resume.py::test_d", "failed"),
    rec("suites/test_resume.py::test_e", "xpassed"),
    rec("suites/test_resume.py::test_f", "error", "setup"),
    rec("suites/test_reset.py::test_g", "skipped"),
]


def test_executed_counts_distinct_cases_not_skipped() -> None:
    assert baseline.executed(RECORDS) == {"suites/test_arcs.py": 2, "suites/test_resume.py": 4,
                                          "suites/test_reset.py": 0}
    assert baseline.suite_of("suites/test_arcs.py::test_a[a::b]") == "suites/test_arcs.py"


def test_compare_fewer_fails_more_is_a_note() -> None:
    base = {"cdev": {"a.py": 5, "b.py": 3, "gone.py": 1}, "legacy": {"a.py": 5}}
    got = {"cdev": {"a.py": 5, "b.py": 4}, "legacy": {"a.py": 4, "new.py": 2}}
    cmp = baseline.compare(base, got)
    assert not cmp.ok
    assert [(d.run, d.suite, d.baseline, d.actual) for d in cmp.fewer] == [
        ("cdev", "gone.py", 1, 0), ("legacy", "a.py", 5, 4)]
    assert [(d.run, d.suite) for d in cmp.more] == [("cdev", "b.py"), ("legacy", "new.py")]
    fewer_line, more_line = cmp.lines()
    assert "legacy a.py 4 (baseline 5)" in fewer_line and baseline.UPDATE_HINT in fewer_line
    assert "note" in more_line and "raise it" in more_line and "cdev b.py 4 (baseline 3)" in more_line
    assert baseline.compare(base, got, ["legacy"]).fewer == [baseline.Delta("legacy", "a.py", 5, 4)]
    assert baseline.compare(base, {}, ["legacy"]).fewer[0].actual == 0  # a run without results: 0 executed
    only_more = baseline.compare({"cdev": {"a.py": 1}}, {"cdev": {"a.py": 2}})
    assert only_more.ok and len(only_more.lines()) == 1


def test_update_then_load_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports, path = tmp_path / "lane", tmp_path / "baseline.json"
    write_run(reports, "cdev", RECORDS)
    assert baseline.main(["--update", str(reports), "--baseline", str(path)]) == baseline.BAD_INPUT  # legacy missing
    assert not path.exists() and "legacy" in capsys.readouterr().err
    write_run(reports, "legacy", RECORDS[:3])
    assert baseline.main(["--update", str(reports), "--baseline", str(path)]) == baseline.BAD_INPUT  # no hazards
    assert not path.exists() and "hazards" in capsys.readouterr().err
    write_run(reports, "hazards", RECORDS[:1])
    assert baseline.main(["--update", str(reports), "--baseline", str(path)]) == 0
    assert baseline.load(path) == {"cdev": baseline.executed(RECORDS), "legacy": {"suites/test_arcs.py": 2},
                                   "hazards": {"suites/test_arcs.py": 1}}
    assert "--update" in json.loads(path.read_text())["about"]
    assert baseline.main([str(reports), "--baseline", str(path)]) == 0
    assert "baseline: met" in capsys.readouterr().out
    write_run(reports, "legacy", RECORDS[:1])
    assert baseline.main([str(reports), "--baseline", str(path)]) == baseline.SHORTFALL_EXIT
    assert "legacy suites/test_arcs.py 1 (baseline 2)" in capsys.readouterr().out
    assert baseline.main([str(tmp_path / "empty"), "--baseline", str(path)]) == baseline.BAD_INPUT


@pytest.mark.parametrize("text", ["", "[]", '{"executed": {"cdev": {"a.py": -1}}}',
                                  '{"executed": {"cdev": {"a.py": true}}}', '{"executed": {"cdev": 3}}'])
def test_a_malformed_baseline_is_an_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "b.json").write_text(text)
    with pytest.raises(baseline.BaselineError, match=r"b\.json"):
        baseline.load(tmp_path / "b.json")
    with pytest.raises(baseline.BaselineError, match=r"nope\.json"):
        baseline.load(tmp_path / "nope.json")


def test_malformed_results_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "cdev").mkdir()
    (tmp_path / "cdev" / "results.json").write_text('{"results": 3}')
    with pytest.raises(baseline.BaselineError, match=r"results\.json"):
        baseline.read_reports(tmp_path)
    assert baseline.read_run(tmp_path, "legacy") is None


def test_exit_code_is_distinct() -> None:
    assert baseline.SHORTFALL_EXIT not in {int(c) for c in LaneFailure}
    assert baseline.SHORTFALL_EXIT > 5  # pytest's own statuses are 0-5


def test_the_committed_baseline_covers_both_open_paths_and_the_hazard_stage() -> None:
    committed = baseline.load()
    assert set(committed) == set(baseline.RUNS)
    for run in baseline.RUNS:
        assert committed[run] and all(s.startswith("suites/test_") for s in committed[run])
        assert all((cli.ROOT / s).is_file() for s in committed[run])


def test_lane_verdict_uses_the_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "baseline.json"
    baseline.write({"cdev": {"suites/test_arcs.py": 2}, "legacy": {"suites/test_arcs.py": 2}}, path)
    monkeypatch.setattr(baseline, "BASELINE", path)
    reports = tmp_path / "lane"
    args = cli.parse(["--reports", str(reports)])
    for run in ("cdev", "legacy"):
        write_run(reports, run, RECORDS[:3])
    status, lines, record = cli.baseline_check(args, 0)
    assert status == 0 and record["checked"] and lines == [lines[0]] and "met" in lines[0]

    write_run(reports, "legacy", RECORDS[:1])  # a suite lost a case
    status, lines, record = cli.baseline_check(args, 0)
    assert status == baseline.SHORTFALL_EXIT and record["fewer"] == ["legacy suites/test_arcs.py 1 (baseline 2)"]
    assert len(lines) == 1 and lines[0].startswith("baseline: fewer test cases executed")
    assert cli.baseline_check(args, 1)[0] == 1  # the suite's own failure keeps its status

    only_cdev = cli.parse(["--reports", str(reports), "--open-path", "cdev"])
    assert cli.baseline_check(only_cdev, 0)[0] == 0  # only the runs made are judged

    for argv in (["--smoke"], ["--backend", "mock"], ["--", "-k", "arc"]):
        narrowed = cli.parse(["--reports", str(reports), *argv])
        assert cli.baseline_check(narrowed, 0) == (0, [], {"checked": False})

    path.write_text("{")
    status, lines, record = cli.baseline_check(args, 0)
    assert status == baseline.SHORTFALL_EXIT and "not valid JSON" in lines[0]
    path.unlink()
    status, lines, record = cli.baseline_check(args, 0)
    assert status == 0 and "missing" in lines[0] and baseline.UPDATE_HINT in lines[0]
