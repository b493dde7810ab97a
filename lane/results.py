"""Host side of the results: where they go, what the guest left there, the summary and the verdict.

Layout of the lane's reports directory (default ``reports/lane/``)::

    lane.json        the host's record: kernel, accelerator, boot and run times, verdict
    guest.json       the guest's record: per run its exit status and time, or why it failed
    kernel.txt       uname and /proc/version in the guest; kernel-config: the kernel's .config
    dmesg.txt        the guest's kernel log, followed live
    devices.json     the mtty devices of each run (role, type, UUID)
    cdev/, legacy/   one conformance run each: junit.xml, results.json, allure-results/, pytest.log
    hazards/         the hazard stage (lane/hazards.py): case-N/ per hazard case, results.json of all
    smoke.json       (--smoke) what the smoke check found
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lane import protocol
from lane.errors import LaneError, LaneFailure

RUN_NAMES = ("cdev", "legacy", "hazards", "smoke")
HOST_RECORD = "lane.json"
PYTEST_INTERRUPTED = 2  # the verdict of a run the guest had to kill (a hang)


def default_reports(root: Path) -> Path:
    return root / "reports" / "lane"


def stale_entries(reports: Path) -> list[Path]:
    """What a previous lane run left in ``reports`` (only the lane's own names: never a user's files)."""
    names = {protocol.GUEST_RESULT, protocol.DMESG, protocol.KERNEL_INFO, protocol.KERNEL_CONFIG,
             protocol.KERNEL_CONFIG + ".gz", protocol.DEVICES, protocol.SMOKE, HOST_RECORD, *RUN_NAMES}
    return sorted(p for p in reports.iterdir() if p.name in names) if reports.is_dir() else []


def prepare(reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    for p in stale_entries(reports):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def read_guest_result(reports: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((reports / protocol.GUEST_RESULT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def outcome_counts(reports: Path, run: str) -> Counter[str]:
    """Outcomes of a run: its results.json's, or per device checked for the smoke run (empty if none)."""
    try:
        if run == "smoke":
            found = json.loads((reports / protocol.SMOKE).read_text())
            return Counter("failed" if "error" in f or f.get("nodes") is False else "passed" for f in found)
        data = json.loads((reports / run / "results.json").read_text())
    except (OSError, ValueError, TypeError, AttributeError):
        return Counter()
    return Counter(str(r.get("outcome", "?")) for r in data.get("results", []))


@dataclass(frozen=True)
class RunSummary:
    name: str
    exit: int  # pytest's exit status (PYTEST_INTERRUPTED when the guest killed a hung run)
    seconds: float
    counts: Counter[str]
    note: str = ""

    def line(self) -> str:
        order = ("passed", "failed", "warning", "xfailed", "xpassed", "skipped", "error")
        counts = ", ".join(f"{self.counts[k]} {k}" for k in order if self.counts[k])
        verdict = "PASS" if self.exit == 0 else f"FAIL (exit {self.exit})"
        return (f"{self.name:<7} {verdict:<16} {self.seconds:7.1f} s  {counts or 'no results'}"
                + (f"  [{self.note}]" if self.note else ""))


def verdict(guest: dict[str, Any] | None, reports: Path, expected_runs: list[str],
            lost_detail: str = "") -> tuple[int, list[RunSummary]]:
    """The lane's exit status and per-run summaries; a LaneError when the guest could not run the suite."""
    if guest is None:
        raise LaneError(LaneFailure.GUEST_LOST,
                        f"the guest ended without writing {reports / protocol.GUEST_RESULT}"
                        f"{': ' + lost_detail if lost_detail else ''}; kernel log: {reports / protocol.DMESG}")
    failure = guest.get("failure")
    if failure:
        try:
            code = LaneFailure[str(failure.get("code"))]
        except KeyError:
            code = LaneFailure.GUEST_SETUP
        raise LaneError(code, f"in the guest: {failure.get('message', '?')}")
    runs: dict[str, Any] = guest.get("runs", {})
    summaries: list[RunSummary] = []
    for name in expected_runs:
        run = runs.get(name)
        if run is None:
            raise LaneError(LaneFailure.GUEST_LOST, f"the guest reported no {name!r} run")
        exit_ = run.get("exit")
        note = ""
        if run.get("timed_out") or exit_ is None:
            exit_, note = PYTEST_INTERRUPTED, "killed: still running at the suite timeout (hang?), see dmesg.txt"
        elif exit_ < 0:
            exit_, note = PYTEST_INTERRUPTED, f"pytest died of signal {-exit_}"
        left = run.get("device_problems") or []
        if left:  # the hazard stage: removing a device a dead task holds the lock of blocks (bounded)
            note = (note + "; " if note else "") + f"{len(left)} device problem(s), e.g. {left[0]} (see guest.json)"
        summaries.append(RunSummary(name, int(exit_), float(run.get("seconds", 0.0)),
                                    outcome_counts(reports, name), note))
    if guest.get("teardown_problems"):
        summaries[-1:] = [RunSummary(s.name, s.exit, s.seconds, s.counts,
                                     (s.note + "; " if s.note else "") + "devices not all removed")
                          for s in summaries[-1:]]
    status = next((s.exit for s in summaries if s.exit != 0), 0)
    return status, summaries
