"""Calibration of the mtty personality against the lane's real mtty: every difference, on fabricated results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from lane import calibration, cli
from lane.calibration import Difference, Result

ARC = "suites/test_arcs.py::test_arc[p2p+pre_copy-RUNNING->STOP]"
DRAIN = "suites/test_precopy.py::test_initial_bytes_drain[p2p+pre_copy-PRE_COPY]"
REOPEN = "suites/test_reopen.py::test_reopen_device[p2p+pre_copy-RESUMING-device]"
DMA = "suites/test_dma_logging.py::test_dirty_pages_reported[dma]"


def rec(nodeid: str, outcome: str, broken: tuple[str, ...] = (), message: str = "") -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": outcome, "broken": list(broken), "message": message}


MODEL = [rec(ARC, "passed"), rec(DRAIN, "xfailed", ("EOS.PRECOPY_ENOMSG",)),
         rec(REOPEN, "xfailed", ("REOPEN.USABLE",)), rec(DMA, "skipped", message="no DmaWriter")]
LANE = [rec(ARC, "passed"), rec(DRAIN, "xfailed", ("EOS.PRECOPY_ENOMSG",)),
        rec(REOPEN, "hazard", message="hazard: run by the lane's hazard stage"),
        rec(DMA, "skipped", message="the backend cannot make mtty write memory by DMA (no DmaWriter)")]
HAZARDS = [rec(REOPEN, "xfailed", ("REOPEN.USABLE",))]


def write(reports: Path, run: str, records: list[dict[str, Any]]) -> None:
    (reports / run).mkdir(parents=True, exist_ok=True)
    (reports / run / "results.json").write_text(json.dumps({"schema": "x", "results": records}))


@pytest.fixture
def lane(tmp_path: Path) -> Path:
    for run in ("cdev", "legacy"):
        write(tmp_path, run, LANE)
    write(tmp_path, "hazards", HAZARDS)
    return tmp_path


def test_agreeing_runs_have_no_difference(lane: Path) -> None:
    """Hazards come from the hazard stage; skip reasons are not compared."""
    assert calibration.calibrate(lane, calibration.results_of(MODEL)) == []
    assert calibration.report([]) == ["calibration: the mtty personality agrees with the real mtty on every test"]


def test_every_kind_of_difference_is_reported(lane: Path) -> None:
    extra = "suites/test_streams.py::test_only_in_the_model[p2p+pre_copy]"
    model = calibration.results_of([
        rec(ARC, "failed", ("ARC.TRANSITION",)),  # another outcome
        rec(DRAIN, "xfailed", ("EOS.PRECOPY_ENOMSG", "PRECOPY.INITIAL_BYTES")),  # other rules
        rec(DMA, "skipped", message="some other reason"),  # same outcome: equal
        rec(extra, "passed"),  # only in the model; REOPEN only in the lane
    ])
    diffs = calibration.calibrate(lane, model, ("cdev",))
    assert [(d.nodeid, d.lane is None, d.model is None) for d in diffs] == [
        (ARC, False, False), (DRAIN, False, False), (REOPEN, False, True), (extra, True, False)]
    lines = calibration.report(diffs)
    assert lines[0].startswith("calibration: 4 difference(s)")
    assert f"cdev: {ARC}: lane passed; model failed (ARC.TRANSITION)" in lines[1]
    assert "model xfailed (EOS.PRECOPY_ENOMSG, PRECOPY.INITIAL_BYTES)" in lines[2]
    assert f"{REOPEN}: lane xfailed (REOPEN.USABLE); model not run" in lines[3]
    assert f"{extra}: lane not run; model passed" in lines[4]


def test_each_open_path_is_compared(lane: Path) -> None:
    write(lane, "legacy", [*LANE[:1], rec(DRAIN, "warning", ("EOS.PRECOPY_ENOMSG",)), *LANE[2:]])
    diffs = calibration.calibrate(lane, calibration.results_of(MODEL))
    assert [(d.run, d.nodeid) for d in diffs] == [("legacy", DRAIN)]


def test_a_hazard_the_stage_did_not_run_stays_a_difference(lane: Path) -> None:
    write(lane, "hazards", [])
    diffs = calibration.calibrate(lane, calibration.results_of(MODEL), ("cdev",))
    assert [d.line() for d in diffs] == [f"cdev: {REOPEN}: lane hazard; model xfailed (REOPEN.USABLE)"]


def test_worst_record_of_a_test_counts() -> None:
    res = calibration.results_of([rec(ARC, "passed"), rec(ARC, "error", ("ARC.RESET",)), rec(ARC, "passed")])
    assert res[ARC] == Result("error", frozenset({"ARC.RESET"}))


def test_unreadable_or_missing_results(tmp_path: Path) -> None:
    with pytest.raises(calibration.CalibrationError, match="no results of the lane's runs"):
        calibration.calibrate(tmp_path, {})
    (tmp_path / "cdev").mkdir()
    (tmp_path / "cdev" / "results.json").write_text("{not json")
    with pytest.raises(calibration.CalibrationError, match="cannot read results"):
        calibration.calibrate(tmp_path, {})


def test_command_line(lane: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"results": MODEL}))
    assert calibration.main([str(lane), "--model", str(model)]) == 0
    model.write_text(json.dumps({"results": [*MODEL[:1], rec(DRAIN, "passed"), *MODEL[2:]]}))
    assert calibration.main([str(lane), "--model", str(model)]) == 1
    assert "2 difference(s)" in capsys.readouterr().out
    assert calibration.main([str(tmp_path / "nothing"), "--model", str(model)]) == 4  # bad input


def test_model_command_runs_the_mtty_personality_with_the_lanes_expectations() -> None:
    cmd = calibration.model_command(Path("/tmp/r"), [Path("expectations/mtty.toml")], python="py")
    assert cmd[:4] == ["py", "-m", "pytest", "suites"]
    assert cmd[cmd.index("--personality") + 1] == "mtty" and cmd[cmd.index("--backend") + 1] == "mock"
    assert cmd[cmd.index("--expectations") + 1] == "expectations/mtty.toml"
    assert "--strict" not in cmd


def _args(reports: Path, **kw: Any) -> argparse.Namespace:
    base: dict[str, Any] = {"smoke": False, "backend": "vfio", "pytest_args": [], "reports": reports,
                            "expectations": [Path("e.toml")], "open_path": []}
    base.update(kw)
    return argparse.Namespace(**base)


def test_the_lane_reports_the_calibration(lane: Path) -> None:
    seen: list[list[Path]] = []

    def model(expectations: list[Path]) -> dict[str, Result]:
        seen.append(expectations)
        return calibration.results_of([*MODEL[:1], rec(DRAIN, "passed"), *MODEL[2:]])

    lines, record = cli.calibration_check(_args(lane), model)
    assert seen == [[Path("e.toml")]]
    assert record["checked"] is True and len(record["differences"]) == 2  # type: ignore[arg-type]
    assert lines[0].startswith("calibration: 2 difference(s)")
    assert cli.calibration_check(_args(lane, backend="mock"), model) == ([], {"checked": False})
    assert cli.calibration_check(_args(lane, pytest_args=["-k", "x"]), model) == ([], {"checked": False})
    lines, record = cli.calibration_check(_args(lane / "missing"), model)
    assert record["checked"] is False and lines[0].startswith("calibration: not done:")


def test_the_model_against_itself(tmp_path: Path) -> None:
    """A real model run, read back as if the lane had produced it, agrees with itself (the records the
    suite writes today carry what the comparison needs)."""
    model = calibration.run_model([Path(calibration.ROOT / "expectations" / "mtty.toml")])
    assert model and any(r.outcome == "xfailed" for r in model.values())
    records = [{"nodeid": n, "outcome": r.outcome, "broken": sorted(r.broken), "message": r.message}
               for n, r in model.items()]
    write(tmp_path, "cdev", records)
    assert calibration.calibrate(tmp_path, model, ("cdev",)) == []
    assert isinstance(Difference("cdev", ARC, None, None).line(), str)
