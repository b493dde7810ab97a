"""The lane's hazard stage (lane/hazards.py): hazard cases in rounds, each round on a fresh device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lane import hazards, mdev
from tests.test_lane_mdev import fake_sysfs

ARC = "suites/test_arcs.py::test_arc[p2p+pre_copy-STOP_COPY->PRE_COPY]"
OOPS1 = "suites/test_reopen.py::test_reopen_device[p2p+pre_copy-RESUMING-data-fd+device]"
OOPS2 = "suites/test_reopen.py::test_reopen_device[p2p+pre_copy-RESUMING-device]"
QUARANTINE = "DeviceQuarantined: device X is quarantined for this run: SET RESUMING -> RUNNING hung"


def _present(fs: mdev.Sysfs, rounds: int) -> None:
    for n in range(rounds):
        for d in mdev.plan(f"hazards-{n}", 1, extras=False).devices:
            fs.device(d.uuid).mkdir()


class FakeGuest:
    """Runs a round as mtty would: each RESUMING-close case oopses and loses that round's device."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
        self.commands.append(cmd)
        out = Path(cmd[cmd.index("--reports") + 1])
        selection = cmd[3:cmd.index("--backend")]
        cases = [ARC, OOPS1, OOPS2] if selection == ["suites", "-m", "hazard"] else selection
        records: list[dict[str, Any]] = []
        lost = False
        for c in cases:
            if lost:
                records.append({"nodeid": c, "when": "setup", "outcome": "error", "message": QUARANTINE})
                continue
            records.append({"nodeid": c, "when": "call", "outcome": "xfailed" if "RESUMING" in c else "passed",
                            "message": ""})
            lost = "RESUMING" in c
        (out / "results.json").write_text(json.dumps({"results": records}))
        return {"exit": 1 if any(r["outcome"] == "error" for r in records) else 0, "timed_out": False}


def test_quarantined_finds_the_cases_a_lost_device_kept_from_running() -> None:
    records = [{"nodeid": ARC, "when": "call", "outcome": "passed"},
               {"nodeid": OOPS2, "when": "setup", "outcome": "error", "message": QUARANTINE},
               {"nodeid": OOPS1, "when": "setup", "outcome": "error", "message": "BackendError: other"}]
    assert hazards.quarantined(records) == [OOPS2]


def test_a_hazard_plan_has_only_the_device_under_test() -> None:
    p = mdev.plan("hazards-0", 1, extras=False)
    assert [d.role for d in p.devices] == ["dut"] and p.pytest_args() == ["--vfio-device", p.devices[0].uuid]


def test_rounds_rerun_what_a_lost_device_kept_from_running_on_fresh_devices(tmp_path: Path) -> None:
    fs = fake_sysfs(tmp_path / "sys")
    _present(fs, 3)
    reports = tmp_path / "reports"
    guest = FakeGuest()
    said: list[str] = []
    res = hazards.run_stage(fs, reports, "py", "vfio", "cdev", ["known.toml"], ["-v"], 600.0, guest, said.append)
    assert res["exit"] == 0 and res["rounds"] == 2 and res["records"] == 3
    first, second = guest.commands
    assert first[3:6] == ["suites", "-m", "hazard"] and second[3:5] == [OOPS2, "--backend"]
    for n, cmd in enumerate(guest.commands):
        assert cmd[cmd.index("--vfio-device") + 1] == mdev.plan(f"hazards-{n}", 1, extras=False).devices[0].uuid
        assert "--run-hazards" in cmd and cmd[cmd.index("--expectations") + 1] == "known.toml"
        assert cmd[-1] == "-v" and "-n" not in cmd and "--vfio-peer" not in cmd
    merged = json.loads((reports / "hazards" / "results.json").read_text())["results"]
    assert [(r["nodeid"], r["outcome"]) for r in merged] == [(ARC, "passed"), (OOPS1, "xfailed"), (OOPS2, "xfailed")]
    for n in range(2):  # every device removed afterwards
        d = mdev.plan(f"hazards-{n}", 1, extras=False).devices[0]
        assert (fs.device(d.uuid) / "remove").read_text() == "1"
    assert "round 0: 3 record(s); 1 case(s) met a device lost earlier" in said[0]


def test_stage_exit() -> None:
    ok = [{"outcome": "passed"}, {"outcome": "xfailed"}]
    assert hazards.stage_exit([1, 0], ok) == 0  # round 0's quarantine errors were superseded
    assert hazards.stage_exit([0], [*ok, {"outcome": "error"}]) == 1
    assert hazards.stage_exit([0], [{"outcome": "xpassed"}]) == 1
    assert hazards.stage_exit([0, None], ok) is None
    assert hazards.stage_exit([4], ok) == 4
    assert hazards.stage_exit([5], []) == 0  # nothing selected (a -k): not a failure


def test_a_killed_round_stops_the_stage(tmp_path: Path) -> None:
    fs = fake_sysfs(tmp_path / "sys")
    _present(fs, 1)

    def runner(cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
        return {"exit": None, "timed_out": True}

    res = hazards.run_stage(fs, tmp_path / "r", "py", "vfio", "cdev", [], [], 600.0, runner, lambda s: None)
    assert res["exit"] is None and res["timed_out"] is True and res["rounds"] == 1


def test_a_device_lost_in_every_round_ends_after_max_rounds(tmp_path: Path) -> None:
    fs = fake_sysfs(tmp_path / "sys")
    _present(fs, hazards.MAX_ROUNDS)

    def runner(cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
        out = Path(cmd[cmd.index("--reports") + 1])
        (out / "results.json").write_text(json.dumps({"results": [
            {"nodeid": OOPS2, "when": "setup", "outcome": "error", "message": QUARANTINE}]}))
        return {"exit": 1, "timed_out": False}

    res = hazards.run_stage(fs, tmp_path / "r", "py", "vfio", "cdev", [], [], 600.0, runner, lambda s: None)
    assert res["rounds"] == hazards.MAX_ROUNDS and res["exit"] == 1
    assert "after 6 rounds" in res["device_problems"][-1]
