"""The lane's coverage floor: how many test cases of each suite file execute on mtty, per open path.

``lane/mtty-baseline.json`` (committed) holds, for each run (``cdev``, ``legacy``, and the hazard stage
``hazards``) and suite file, the
number of test cases that executed there: a case executes when it has a result other than
``skipped`` (passed, failed, warning, xfailed, xpassed or error). After a full lane run the lane
compares its results with the baseline: a suite that executed fewer cases than the baseline fails
the lane with exit status ``SHORTFALL_EXIT`` (unless the suite itself already failed) and one line
naming each shortfall; more cases is fine, and the lane prints a note to raise the baseline::

    python -m lane.baseline reports/lane             # compare the last lane run with the baseline
    python -m lane.baseline --update reports/lane    # write the last lane run's counts as the baseline

The baseline is about mtty under ``--backend vfio`` with the whole suite: the lane skips the check
for another backend or when pytest arguments (``-k`` ...) narrow the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lane.errors import LaneFailure
from vfio_mig_cts.errors import BadInput, Parser

BASELINE = Path(__file__).resolve().with_name("mtty-baseline.json")
RUNS = ("cdev", "legacy", "hazards")
SHORTFALL_EXIT = 28  # the lane's exit status when the suite passed but executed fewer cases than the baseline
UPDATE_HINT = "python -m lane.baseline --update reports/lane"

Counts = dict[str, dict[str, int]]  # run -> suite file -> executed test cases


class BaselineError(ValueError):
    """A baseline or results file that cannot be read; the message names the file."""


def suite_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def executed(records: list[dict[str, Any]]) -> dict[str, int]:
    """Per suite file, the test cases (distinct node ids) that ran (not skipped, not a hazard left out)."""
    ran: dict[str, set[str]] = defaultdict(set)
    seen: set[str] = set()
    for r in records:
        nodeid = str(r.get("nodeid", ""))
        if not nodeid:
            continue
        seen.add(suite_of(nodeid))
        if r.get("outcome") not in ("skipped", "hazard"):
            ran[suite_of(nodeid)].add(nodeid)
    return {suite: len(ran.get(suite, ())) for suite in sorted(seen)}


def read_run(reports: Path, run: str) -> dict[str, int] | None:
    """A run's executed counts from ``reports/run/results.json``; None when the run left no results."""
    path = reports / run / "results.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BaselineError(f"{path}: unreadable results: {exc}") from exc
    records = data.get("results") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BaselineError(f"{path}: no 'results' list")
    return executed(records)


def read_reports(reports: Path, runs: tuple[str, ...] | list[str] = RUNS) -> Counts:
    """Executed counts of the runs that left results in ``reports`` (a run without results is left out)."""
    out: Counts = {}
    for run in runs:
        counts = read_run(reports, run)
        if counts is not None:
            out[run] = counts
    return out


def load(path: Path | None = None) -> Counts:
    path = path or BASELINE
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise BaselineError(f"baseline {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise BaselineError(f"baseline {path}: not valid JSON: {exc}") from exc
    runs = data.get("executed") if isinstance(data, dict) else None
    if not isinstance(runs, dict):
        raise BaselineError(f"baseline {path}: no 'executed' table")
    out: Counts = {}
    for run, suites in runs.items():
        if not isinstance(suites, dict) or not all(
                isinstance(s, str) and isinstance(n, int) and not isinstance(n, bool) and n >= 0
                for s, n in suites.items()):
            raise BaselineError(f"baseline {path}: {run!r} must map suite files to case counts")
        out[str(run)] = dict(suites)
    return out


def write(counts: Counts, path: Path | None = None) -> None:
    data = {
        "about": "Test cases that execute (outcome other than skipped) on mtty in the guest lane, per open "
                 "path and suite file. The lane fails when a suite executes fewer. Update: " + UPDATE_HINT,
        "executed": {run: dict(sorted(counts[run].items())) for run in sorted(counts)},
    }
    (path or BASELINE).write_text(json.dumps(data, indent=1) + "\n")


@dataclass(frozen=True)
class Delta:
    run: str
    suite: str
    baseline: int
    actual: int

    def text(self) -> str:
        return f"{self.run} {self.suite} {self.actual} (baseline {self.baseline})"


@dataclass(frozen=True)
class Comparison:
    fewer: list[Delta] = field(default_factory=list)
    more: list[Delta] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.fewer

    def lines(self, baseline_path: Path | None = None) -> list[str]:
        """At most two lines: the shortfalls (the failure), then the surplus (a note)."""
        out = []
        if self.fewer:
            out.append(f"baseline: fewer test cases executed than {(baseline_path or BASELINE).name}: "
                       + "; ".join(d.text() for d in self.fewer)
                       + f" (a suite now skips or lost cases; if intended: {UPDATE_HINT})")
        if self.more:
            out.append("baseline: note: more test cases executed than the baseline: "
                       + "; ".join(d.text() for d in self.more) + f"; raise it: {UPDATE_HINT}")
        return out


def compare(baseline: Counts, actual: Counts, runs: list[str] | tuple[str, ...] | None = None) -> Comparison:
    """Compare per run and suite file; only ``runs`` (default: every run in the baseline) are judged.

    A run or suite file of the baseline missing from ``actual`` counts as 0 executed.
    """
    fewer: list[Delta] = []
    more: list[Delta] = []
    for run in (list(baseline) if runs is None else list(runs)):
        want, got = baseline.get(run, {}), actual.get(run, {})
        for suite in sorted(set(want) | set(got)):
            b, a = want.get(suite, 0), got.get(suite, 0)
            if a < b:
                fewer.append(Delta(run, suite, b, a))
            elif a > b:
                more.append(Delta(run, suite, b, a))
    return Comparison(fewer, more)


def check(reports: Path, runs: list[str], path: Path | None = None) -> Comparison:
    """The lane's check after a run: this run's ``reports`` against the committed baseline."""
    return compare(load(path), read_reports(reports, runs), runs)


BAD_INPUT = int(LaneFailure.USAGE)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m lane.baseline", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog=f"Exit codes: 0 met (or written); {SHORTFALL_EXIT} fewer cases than the baseline; "
                       f"{BAD_INPUT} bad input (no results, a broken baseline file: one line says what).")
    p.add_argument("reports", type=Path, help="a lane reports directory (reports/lane)")
    p.add_argument("--update", action="store_true", help="write this run's counts as the baseline")
    p.add_argument("--baseline", type=Path, default=BASELINE, help=f"default: lane/{BASELINE.name}")
    try:
        args = p.parse_args(sys.argv[1:] if argv is None else argv)
        actual = read_reports(args.reports)
        if not actual:
            print(f"lane.baseline: no {'/'.join(RUNS)} results.json under {args.reports}", file=sys.stderr)
            return BAD_INPUT
        if args.update:
            missing = [r for r in RUNS if r not in actual]
            if missing:
                print(f"lane.baseline: no results for {', '.join(missing)} under {args.reports}: "
                      "run the whole lane before updating the baseline", file=sys.stderr)
                return BAD_INPUT
            write(actual, args.baseline)
            for run in RUNS:
                total = sum(actual[run].values())
                print(f"lane.baseline: {run}: {total} executed in {len(actual[run])} suite files")
            print(f"lane.baseline: wrote {args.baseline}")
            return 0
        result = compare(load(args.baseline), actual, list(actual))
    except (BaselineError, BadInput) as exc:
        print(f"lane.baseline: {exc}", file=sys.stderr)
        return BAD_INPUT
    for line in result.lines(args.baseline):
        print(f"lane: {line}")
    if result.ok:
        print("lane: baseline: met")
    return 0 if result.ok else SHORTFALL_EXIT


if __name__ == "__main__":
    sys.exit(main())
