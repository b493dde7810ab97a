"""Expectation files from personality runs: ``expectations/<name>.toml`` is what the suite finds on it.

Usage::

    python -m vfio_mig_cts.backends.mock.personalities.regen            # rewrite every file
    python -m vfio_mig_cts.backends.mock.personalities.regen --check    # compare, change nothing
    python -m vfio_mig_cts.backends.mock.personalities.regen mlx5 pds   # some personalities only

Rules:

- A run is ``pytest suites --backend mock --personality NAME --strict-rules``; every test that fails (or errs
  with kernel messages) names the rules it broke, and each (test, rule) is a finding.
- Each finding must be explained by one of the personality's ``deviations`` (same rule, a test glob that
  matches): the entry written for a deviation carries its reason, the driver code (``path:line``) and a
  link, and the exact tests of the run (``test_x[*]`` where every case of a test function broke it). A
  finding no deviation explains, a deviation no finding uses, or an error that names no rule stops the
  tool with the list: the model or the suite changed, and a person decides which is right.
- The file is rendered the same way from the same findings, so ``--check`` (and tests/test_personalities.py,
  which renders from the expected failures of a run with the file) sees any change of rule ids, forces or
  findings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfio_mig_cts.backends.mock.personalities import PERSONALITIES
from vfio_mig_cts.backends.mock.personalities.base import Deviation, Personality
from vfio_mig_cts.faults.suite_run import ROOT, SuiteRun, run_suite
from vfio_mig_cts.judging import globs

EXPECTATIONS = ROOT / "expectations"
FAST = ("-p", "no:allure_pytest", "-p", "no:junitxml")  # results.json is all this needs
FINDING_OUTCOMES = ("failed", "error", "xfailed")


@dataclass(frozen=True)
class Finding:
    nodeid: str
    rule: str


@dataclass
class Explained:
    """The findings of a run sorted by the deviations that explain them, and what is left over."""

    entries: dict[Deviation, list[str]]
    unexplained: list[Finding]
    stale: list[Deviation]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not (self.unexplained or self.stale or self.problems)

    def report(self, name: str) -> str:
        lines = [f"{name}: {len(self.problems)} problem(s), {len(self.unexplained)} unexplained finding(s), "
                 f"{len(self.stale)} deviation(s) without a finding"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  unexplained: {f.rule} in {f.nodeid}" for f in self.unexplained]
        lines += [f"  stale: {d.rule} ({', '.join(d.tests)}): {d.source}" for d in self.stale]
        return "\n".join(lines)


def expectation_path(p: Personality) -> Path:
    return EXPECTATIONS / f"{p.name}.toml"


def run(p: Personality, reports: Path, *extra: str) -> SuiteRun:
    return run_suite(reports, "--backend", "mock", "--personality", p.name, "--strict-rules", *FAST, *extra)


def findings(results: list[dict[str, Any]]) -> tuple[list[Finding], list[str]]:
    """Every (test, broken rule) of a run; and the errors and failures that name no rule."""
    found: set[Finding] = set()
    problems = []
    for r in results:
        if r["outcome"] not in FINDING_OUTCOMES:
            continue
        if not r["broken"]:
            problems.append(f"{r['outcome']} without a rule: {r['nodeid']}: {r['message'][:300]}")
        found.update(Finding(r["nodeid"], rule) for rule in r["broken"])
    return sorted(found, key=lambda f: (f.rule, f.nodeid)), problems


def explain(p: Personality, results: list[dict[str, Any]]) -> Explained:
    found, problems = findings(results)
    entries: dict[Deviation, list[str]] = {d: [] for d in p.deviations}
    unexplained = []
    for f in found:
        hits = [d for d in p.deviations if d.rule == f.rule and any(globs.match(f.nodeid, g) for g in d.tests)]
        if not hits:
            unexplained.append(f)
        for d in hits:
            entries[d].append(f.nodeid)
    for r in results:
        if r["outcome"] == "error" and r["broken"]:
            ok = all(d.kernel_messages for d in p.deviations if r["nodeid"] in entries[d])
            if not ok:
                problems.append(f"error in {r['nodeid']} (broke {', '.join(r['broken'])}) from a deviation "
                                "without kernel_messages: an error is never a driver's finding")
    stale = [d for d, ids in entries.items() if not ids]
    return Explained({d: ids for d, ids in entries.items() if ids}, unexplained, stale, problems)


def compress(ids: list[str], run_ids: list[str]) -> list[str]:
    """The tests as globs: ``test_x[*]`` where every case of test_x in the run is listed, else each id."""
    by_function: dict[str, list[str]] = defaultdict(list)
    for nodeid in run_ids:
        by_function[nodeid.split("[", 1)[0]].append(nodeid)
    chosen = set(ids)
    out: list[str] = []
    for function, cases in sorted(by_function.items()):
        mine = [c for c in cases if c in chosen]
        if not mine:
            continue
        if len(mine) == len(cases) and len(cases) > 1:
            out.append(f"{function}[*]")
        else:
            out.extend(sorted(mine))
    return out


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(p: Personality, explained: Explained, run_ids: list[str]) -> str:
    """The expectation file: a header, then one ``[[expect]]`` per deviation the run showed, in the
    personality's order."""
    lines = [
        f"# Known findings of {p.driver}, Linux 6.12: {p.summary}.",
        f"# As the {p.name} personality of the mock shows them "
        f"(./cts --backend mock --personality {p.name} --strict-rules);",
        "# generated by python -m vfio_mig_cts.backends.mock.personalities.regen from the deviations in",
        f"# vfio_mig_cts/backends/mock/personalities/{p.name}.py: edit those, not this file. Strict: a listed",
        "# test that passes on your device fails the run as an unexpected pass (the driver or its firmware",
        "# differs from the model): remove its entry.",
    ]
    for d in p.deviations:
        ids = explained.entries.get(d)
        if not ids:
            continue
        tests = compress(ids, run_ids)
        lines += ["", "[[expect]]", f"rule = {_toml_str(d.rule)}", f"driver = {_toml_str(p.driver)}",
                  "tests = [" + ", ".join(_toml_str(t) for t in tests) + "]",
                  f"reason = {_toml_str(d.reason + f' ({d.source})')}", f"link = {_toml_str(d.link)}"]
        if d.kernel_messages:
            lines.append("kernel_messages = true")
    return "\n".join(lines) + "\n"


def regenerate(p: Personality, check: bool) -> tuple[bool, str]:
    """Run the personality, explain its findings, and write (or compare) its expectation file."""
    with tempfile.TemporaryDirectory(prefix=f"regen-{p.name}-") as tmp:
        result = run(p, Path(tmp))
    explained = explain(p, result.results)
    if not result.results:
        return False, f"{p.name}: the run produced no results:\n{result.output[-2000:]}"
    if not explained.ok:
        return False, explained.report(p.name)
    text = render(p, explained, [r["nodeid"] for r in result.results])
    path = expectation_path(p)
    if check:
        same = path.is_file() and path.read_text() == text
        return same, f"{p.name}: {path.relative_to(ROOT)} {'is current' if same else 'differs from a new run'}"
    path.write_text(text)
    return True, f"{p.name}: wrote {path.relative_to(ROOT)} ({len(explained.entries)} entries)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the files, write nothing")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"personalities (default: all of {', '.join(sorted(PERSONALITIES))})")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.names) - set(PERSONALITIES))
    if unknown:
        ap.error(f"unknown personality {', '.join(unknown)} (known: {', '.join(sorted(PERSONALITIES))})")
    status = 0
    for name in args.names or sorted(PERSONALITIES):
        ok, line = regenerate(PERSONALITIES[name], args.check)
        print(line)
        status |= not ok
    return status


if __name__ == "__main__":
    sys.exit(main())
