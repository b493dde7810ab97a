"""Inside the guest: the hazard stage, the hazardous cases on fresh mtty devices, in rounds.

Hazards are requests known to hang or crash some kernels (suites mark them ``@pytest.mark.hazard``).
The conformance runs skip them on real devices; this stage runs them on purpose (``--run-hazards``),
contained by the suite (a forked child, a timeout, the device written off) and reported: on 6.12.117
mtty oopses when a device closed in RESUMING is asked to leave RESUMING, and the task dies holding
the device's state mutex, so that device is lost until reboot.

A lost device is quarantined, and every later case of that run errors at setup naming the reason.
So the stage runs in rounds: round 0 runs every hazard case (``-m hazard``) on a freshly created
device under test (no peer or incompatible device); the cases that errored because the device had
been quarantined run again in the next round, on a new device, and so on until none is left (at
most ``MAX_ROUNDS``). Each round costs one pytest start (about a minute under TCG) and each device
lost one round, instead of one start per case. Devices are removed with a bounded write: removing a
device whose mutex a dead task holds blocks (seen on 6.12.117 mtty after the oops), so it is left
behind and the problem noted (``device_problems``; the lane's summary line says so); the guest is
thrown away after the run anyway.

Results go to ``hazards/``: ``round-N/`` with each round's pytest reports, and ``results.json``
with the records of every round, minus the quarantine errors a later round superseded (the lane's
summary and baseline read it like a run's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lane import mdev

RUN = "hazards"
MAX_ROUNDS = 6
NO_TESTS = 5  # pytest's status when nothing was selected (a -k that leaves no hazard): not a failure
QUARANTINED = "quarantined"  # vfio_mig_cts/backends/vfio/errors.DeviceQuarantined's text, in a setup error's message
Runner = Callable[[list[str], Path, float], dict[str, Any]]


def round_command(python: str, backend: str, plan: mdev.DevicePlan, open_path: str, selection: list[str],
                  out: Path, expectations: list[str], pytest_args: list[str]) -> list[str]:
    """One round: the selected cases (``suites -m hazard`` first, then node ids) with ``--run-hazards``."""
    cmd = [python, "-m", "pytest", *selection, "--backend", backend, *plan.pytest_args(), "--open-path", open_path,
           "--run-hazards", "--reports", str(out), "-p", "no:cacheprovider"]
    for e in expectations:
        cmd += ["--expectations", e]
    return cmd + pytest_args


def read_records(out: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads((out / "results.json").read_text()).get("results", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [r for r in records if isinstance(r, dict)]


def quarantined(records: list[dict[str, Any]]) -> list[str]:
    """Cases that could not run because an earlier case of the round lost the device (in order)."""
    out: list[str] = []
    for r in records:
        setup_error = r.get("when") == "setup" and r.get("outcome") == "error"
        if setup_error and QUARANTINED in str(r.get("message", "")) and r["nodeid"] not in out:
            out.append(str(r["nodeid"]))
    return out


def stage_exit(round_exits: list[int | None], records: list[dict[str, Any]]) -> int | None:
    """None when a round was killed; pytest's own error (2-4) of a round; else 1 when a merged record
    failed, errored or passed unexpectedly, else 0."""
    if any(e is None for e in round_exits):
        return None
    odd = next((e for e in round_exits if e not in (None, 0, 1, NO_TESTS)), None)
    if odd is not None:
        return odd
    return 1 if any(r.get("outcome") in ("failed", "error", "xpassed") for r in records) else 0


def run_stage(fs: mdev.Sysfs, reports: Path, python: str, backend: str, open_path: str, expectations: list[str],
              pytest_args: list[str], timeout: float, runner: Runner, say: Callable[[str], None]) -> dict[str, Any]:
    """Every hazard case, in rounds on fresh devices (see the module rules); the stage's record."""
    t0 = time.monotonic()
    out = reports / RUN
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    merged: list[dict[str, Any]] = []
    exits: list[int | None] = []
    selection = ["suites", "-m", "hazard"]
    lost: list[str] = []
    for n in range(MAX_ROUNDS):
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            problems.append(f"stage timeout before round {n}: {len(selection)} case(s) not run")
            exits.append(None)
            break
        plan = mdev.plan(f"{RUN}-{n}", 1, extras=False)
        mdev.create(fs, plan)
        round_dir = out / f"round-{n}"
        round_dir.mkdir(exist_ok=True)
        try:
            ran = runner(round_command(python, backend, plan, open_path, selection, round_dir, expectations,
                                       pytest_args), round_dir / "pytest.log", left)
        finally:
            problems += mdev.remove(fs, plan)
        exits.append(None if ran.get("timed_out") else ran.get("exit"))
        records = read_records(round_dir)
        lost = quarantined(records)
        merged += [r for r in records if r.get("nodeid") not in lost]
        say(f"{RUN}: round {n}: {len(records)} record(s); {len(lost)} case(s) met a device lost earlier in the "
            "round" + (": again on a fresh device" if lost else ""))
        if not lost or exits[-1] is None:
            break
        selection = lost
    else:
        problems.append(f"still {len(lost)} case(s) meeting a lost device after {MAX_ROUNDS} rounds")
        merged += [{"nodeid": c, "when": "setup", "outcome": "error", "message": "device lost in every round"}
                   for c in lost]
    (out / "results.json").write_text(json.dumps({"results": merged}, indent=1) + "\n")
    result: dict[str, Any] = {"exit": stage_exit(exits, merged), "timed_out": None in exits,
                              "seconds": round(time.monotonic() - t0, 1), "rounds": len(exits),
                              "records": len(merged)}
    if problems:
        result["device_problems"] = problems
        say(f"{RUN}: " + "; ".join(problems))
    return result
