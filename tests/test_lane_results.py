"""Where the lane's results go, what the guest writes, and the verdict drawn from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lane import protocol, results
from lane.errors import LaneError, LaneFailure


def test_default_reports_dir() -> None:
    assert results.default_reports(Path("/work/main")) == Path("/work/main/reports/lane")


def test_prepare_removes_only_the_lanes_own_files(tmp_path: Path) -> None:
    r = tmp_path / "lane"
    (r / "cdev" / "allure-results").mkdir(parents=True)
    (r / "legacy").mkdir()
    for name in (protocol.GUEST_RESULT, protocol.DMESG, protocol.KERNEL_CONFIG, results.HOST_RECORD,
                 "notes.txt"):
        (r / name).write_text("old")
    results.prepare(r)
    assert sorted(p.name for p in r.iterdir()) == ["notes.txt"]
    results.prepare(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir()


def write_run(r: Path, name: str, outcomes: list[str]) -> None:
    (r / name).mkdir(parents=True)
    (r / name / "results.json").write_text(json.dumps({"results": [{"outcome": o} for o in outcomes]}))


def guest(**runs: dict[str, object]) -> dict[str, object]:
    return {"mode": "full", "runs": runs}


def test_both_runs_pass(tmp_path: Path) -> None:
    write_run(tmp_path, "cdev", ["passed", "passed", "skipped"])
    status, sums = results.verdict(guest(cdev={"exit": 0, "seconds": 3}, legacy={"exit": 0, "seconds": 4}),
                                   tmp_path, ["cdev", "legacy"])
    assert status == 0
    assert [s.name for s in sums] == ["cdev", "legacy"]
    assert sums[0].counts["passed"] == 2 and "2 passed, 1 skipped" in sums[0].line()
    assert "no results" in sums[1].line()


def test_the_first_failing_run_gives_the_status(tmp_path: Path) -> None:
    g = guest(cdev={"exit": 0}, legacy={"exit": 1})
    assert results.verdict(g, tmp_path, ["cdev", "legacy"])[0] == 1
    g = guest(cdev={"exit": 5}, legacy={"exit": 1})
    assert results.verdict(g, tmp_path, ["cdev", "legacy"])[0] == 5


def test_devices_the_hazard_stage_could_not_remove_are_noted_not_failed(tmp_path: Path) -> None:
    stuck = "/sys/bus/mdev/devices/U/remove: still blocked after 10 s"
    status, sums = results.verdict(guest(hazards={"exit": 0, "device_problems": [stuck, stuck]}), tmp_path,
                                   ["hazards"])
    assert status == 0 and "2 device problem(s), e.g. " + stuck in sums[0].line()


def test_a_killed_run_is_interrupted(tmp_path: Path) -> None:
    status, sums = results.verdict(guest(cdev={"exit": None, "timed_out": True}), tmp_path, ["cdev"])
    assert status == results.PYTEST_INTERRUPTED
    assert "killed" in sums[0].line()


def test_no_guest_result_is_guest_lost(tmp_path: Path) -> None:
    assert results.read_guest_result(tmp_path) is None
    with pytest.raises(LaneError) as exc:
        results.verdict(None, tmp_path, ["cdev"], "killed after 600 s")
    assert exc.value.code is LaneFailure.GUEST_LOST
    assert "killed after 600 s" in str(exc.value) and protocol.DMESG in str(exc.value)


def test_a_missing_run_is_guest_lost(tmp_path: Path) -> None:
    with pytest.raises(LaneError) as exc:
        results.verdict(guest(cdev={"exit": 0}), tmp_path, ["cdev", "legacy"])
    assert exc.value.code is LaneFailure.GUEST_LOST


def test_a_guest_failure_keeps_its_code(tmp_path: Path) -> None:
    (tmp_path / protocol.GUEST_RESULT).write_text(json.dumps(
        {"runs": {}, "failure": {"code": "NO_MTTY", "message": "/sys/class/mdev_bus/mtty missing"}}))
    with pytest.raises(LaneError) as exc:
        results.verdict(results.read_guest_result(tmp_path), tmp_path, ["cdev"])
    assert exc.value.code is LaneFailure.NO_MTTY
    with pytest.raises(LaneError) as exc:
        results.verdict({"failure": {"code": "BOGUS"}}, tmp_path, ["cdev"])
    assert exc.value.code is LaneFailure.GUEST_SETUP


def test_smoke_counts_devices(tmp_path: Path) -> None:
    (tmp_path / protocol.SMOKE).write_text(json.dumps([{"migration_flags": 7}, {"nodes": True},
                                                       {"error": "OSError"}]))
    status, (s,) = results.verdict(guest(smoke={"exit": 1, "seconds": 0.1}), tmp_path, ["smoke"])
    assert status == 1 and (s.counts["passed"], s.counts["failed"]) == (2, 1)


def test_lane_failure_codes_are_distinct_and_above_pytests() -> None:
    """Bad input is pytest's usage error (4), as at every entry point; the lane's own reasons are above 20."""
    codes = [int(c) for c in LaneFailure if c is not LaneFailure.USAGE]
    assert int(LaneFailure.USAGE) == 4
    assert len(set(codes)) == len(codes) and min(codes) > 20
