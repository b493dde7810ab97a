"""Calibration: the mtty personality of the mock against the real mtty driver the lane ran.

The mock's ``--personality mtty`` models samples/vfio-mdev/mtty.c from its source; the lane runs the
same suite on the real driver. They must agree test by test, or the model is wrong (or the lane met
something the source does not say):

    python -m lane.calibration [reports/lane]                   # run the model, compare, report
    python -m lane.calibration reports/lane --model RESULTS     # compare with a model run's results.json

Rules:

- The lane's outcome of a test, per open path run (``cdev``, ``legacy``): its outcome in that run's
  results.json; where that run left the case to the hazard stage (outcome ``hazard``, or a skip that
  says so), the hazard stage's outcome (``hazards/results.json``), which ran it alone on a fresh
  device with ``--run-hazards``.
- The model's: one run of the suite with ``--backend mock --personality mtty`` and the lane's
  expectation files, as the guest runs it (not strict); the mock runs hazards in process.
- A test compared is its outcome and, where the outcome carries findings (failed, warning, xfailed,
  xpassed, error), the set of rules it broke. Every difference is reported, per open path: another
  outcome, other rules, or a test id only one side has. Skip reasons, messages and durations are not
  compared.
- Exit status of the command: 0 when they agree, 1 when they differ, 4 (bad input, one line) when
  results are missing or unreadable or an argument is wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfio_mig_cts.errors import BadInput, Exit, Parser

ROOT = Path(__file__).resolve().parent.parent
OPEN_PATHS = ("cdev", "legacy")
HAZARD_RUN = "hazards"
WITH_FINDINGS = frozenset({"failed", "warning", "xfailed", "xpassed", "error"})
_WORST = ("error", "failed", "xpassed", "warning", "xfailed", "passed", "hazard", "skipped")


class CalibrationError(Exception):
    """Results that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Result:
    """What is compared of one test: its outcome, the rules it broke, and (for the report) its message."""

    outcome: str
    broken: frozenset[str] = frozenset()
    message: str = ""

    def key(self) -> tuple[str, frozenset[str]]:
        return self.outcome, self.broken if self.outcome in WITH_FINDINGS else frozenset()

    def describe(self) -> str:
        rules = f" ({', '.join(sorted(self.broken))})" if self.broken and self.outcome in WITH_FINDINGS else ""
        first = self.message.strip().splitlines()[0][:160] if self.message.strip() else ""
        return f"{self.outcome}{rules}" + (f": {first}" if first and self.outcome == "skipped" else "")


@dataclass(frozen=True)
class Difference:
    run: str  # the lane's open path
    nodeid: str
    lane: Result | None  # None: the lane has no such test
    model: Result | None  # None: the model has no such test

    def line(self) -> str:
        lane = self.lane.describe() if self.lane else "not run"
        model = self.model.describe() if self.model else "not run"
        return f"{self.run}: {self.nodeid}: lane {lane}; model {model}"


def results_of(records: list[dict[str, Any]]) -> dict[str, Result]:
    """Per test id, its result (the worst, should a test have several records)."""
    out: dict[str, Result] = {}
    for r in records:
        nodeid = str(r.get("nodeid", ""))
        if not nodeid:
            continue
        outcome = str(r.get("outcome", "?"))
        res = Result(outcome, frozenset(str(b) for b in r.get("broken", ()) or ()), str(r.get("message", "")))
        old = out.get(nodeid)
        if old is None or _rank(res.outcome) < _rank(old.outcome):
            out[nodeid] = res
        elif old.outcome == res.outcome:
            out[nodeid] = Result(old.outcome, old.broken | res.broken, old.message or res.message)
    return out


def _rank(outcome: str) -> int:
    return _WORST.index(outcome) if outcome in _WORST else len(_WORST)


def read_results(path: Path) -> dict[str, Result]:
    try:
        data = json.loads(path.read_text())
        records = data["results"] if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise TypeError("no list of results")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{path}: cannot read results: {exc}") from None
    return results_of(records)


def left_to_hazard_stage(res: Result) -> bool:
    return res.outcome == "hazard" or (res.outcome == "skipped" and "hazard" in res.message.lower())


def lane_results(run: dict[str, Result], hazards: dict[str, Result]) -> dict[str, Result]:
    """An open path's results, with the cases it left to the hazard stage taken from there."""
    return {nodeid: hazards.get(nodeid, res) if left_to_hazard_stage(res) else res for nodeid, res in run.items()}


def compare(run: str, lane: dict[str, Result], model: dict[str, Result]) -> list[Difference]:
    """Every test whose result differs between the lane's run and the model, or that one side lacks."""
    out = []
    for nodeid in sorted(set(lane) | set(model)):
        a, b = lane.get(nodeid), model.get(nodeid)
        if a is None or b is None or a.key() != b.key():
            out.append(Difference(run, nodeid, a, b))
    return out


def calibrate(reports: Path, model: dict[str, Result], runs: tuple[str, ...] = OPEN_PATHS) -> list[Difference]:
    """The differences between each open path run the lane left in ``reports`` and the model."""
    hazard_file = reports / HAZARD_RUN / "results.json"
    hazards = read_results(hazard_file) if hazard_file.is_file() else {}
    diffs: list[Difference] = []
    found = False
    for run in runs:
        path = reports / run / "results.json"
        if not path.is_file():
            continue
        found = True
        diffs += compare(run, lane_results(read_results(path), hazards), model)
    if not found:
        raise CalibrationError(f"{reports}: no results of the lane's runs ({', '.join(runs)})")
    return diffs


def model_command(reports: Path, expectations: list[Path], python: str = sys.executable) -> list[str]:
    """The model run: the suite on the mtty personality with the lane's expectation files."""
    cmd = [python, "-m", "pytest", "suites", "--backend", "mock", "--personality", "mtty", "-q",
           "-p", "no:cacheprovider", "--reports", str(reports)]
    for e in expectations:
        cmd += ["--expectations", str(e)]
    return cmd


def run_model(expectations: list[Path], timeout: float = 900.0) -> dict[str, Result]:
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        subprocess.run(model_command(Path(tmp), expectations), cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, check=False)
        return read_results(Path(tmp) / "results.json")


def report(diffs: list[Difference]) -> list[str]:
    if not diffs:
        return ["calibration: the mtty personality agrees with the real mtty on every test"]
    runs = sorted({d.run for d in diffs})
    return [f"calibration: {len(diffs)} difference(s) between the real mtty and the mtty personality "
            f"({', '.join(runs)}):"] + [f"  {d.line()}" for d in diffs]


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m lane.calibration", description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="?", type=Path, default=ROOT / "reports" / "lane",
                    help="the lane's reports directory (default: reports/lane)")
    ap.add_argument("--model", type=Path, metavar="RESULTS",
                    help="a model run's results.json (default: run the model now)")
    ap.add_argument("--expectations", action="append", type=Path, default=[], metavar="FILE",
                    help="expectation files for the model run (default: expectations/mtty.toml)")
    try:
        args = ap.parse_args(argv)
        model = read_results(args.model) if args.model else run_model(
            args.expectations or [ROOT / "expectations" / "mtty.toml"])
        diffs = calibrate(args.reports, model)
    except (CalibrationError, BadInput) as exc:
        print(f"calibration: {exc}", file=sys.stderr)
        return int(Exit.BAD_INPUT)
    print("\n".join(report(diffs)))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
