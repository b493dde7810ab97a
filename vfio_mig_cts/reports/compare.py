"""``./cts compare BEFORE AFTER``: what changed between two runs, as a maintainer checks a patch.

BEFORE and AFTER are ``results.json`` files or the reports folders that hold them. Tests are keyed by
node id (and, in a run over several devices, by the device's place in the run), never by device
name, so runs on two hosts or two devices compare.

Rules:

- Worse: a test that was not bad (failed, unexpected pass, error) and now is ("new failures"); a test
  that now breaks a rule it did not break before, at any force ("new findings": a new warning is one);
  a test that passed and is now skipped or gone.
- Better: a bad test that no longer is ("fixed"); findings that went away.
- Every change is listed with both outcomes and the findings (rule, force, expected, observed); then
  the changes per rule.
- Exit status: 0 when nothing got worse, 1 when something did, 4 (usage) when a file is missing or is
  not a vfio-mig-cts results file.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vfio_mig_cts.errors import BadInput, Exit, Parser
from vfio_mig_cts.reports.record import Outcome, RunResults, TestRecord, load


def keyed(results: RunResults) -> dict[str, TestRecord]:
    """Each test by node id; with several devices, by node id and the device's place in the run."""
    order = {name: i for i, (name, _driver) in enumerate(results.run.devices)}
    several = len({t.device for t in results.tests}) > 1
    return {(f"{t.nodeid}#{order.get(t.device, 0)}" if several else t.nodeid): t for t in results.tests}


@dataclass
class Change:
    key: str
    before: TestRecord | None
    after: TestRecord | None

    @property
    def new_rules(self) -> list[str]:
        had = set(self.before.broken) if self.before else set()
        return [r for r in (self.after.broken if self.after else ()) if r not in had]

    @property
    def gone_rules(self) -> list[str]:
        has = set(self.after.broken) if self.after else set()
        return [r for r in (self.before.broken if self.before else ()) if r not in has]

    def line(self) -> str:
        b = self.before.outcome.value if self.before else "(absent)"
        a = self.after.outcome.value if self.after else "(absent)"
        out = [f"  {self.key}: {b} -> {a}"]
        if self.after is not None:
            for f in self.after.findings:
                if f.rule in self.new_rules:
                    out.append(f"      {f.summary()}")
            if self.after.outcome is Outcome.ERROR and self.after.headline:
                out.append(f"      {self.after.headline}")
        return "\n".join(out)


@dataclass
class Comparison:
    new_failures: list[Change] = field(default_factory=list)
    new_findings: list[Change] = field(default_factory=list)
    lost: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    other: list[Change] = field(default_factory=list)
    per_rule: Counter[str] = field(default_factory=Counter)  # +1 a test newly breaks it, -1 no longer

    @property
    def worse(self) -> bool:
        return bool(self.new_failures or self.new_findings or self.lost)


def compare(before: RunResults, after: RunResults) -> Comparison:
    b, a = keyed(before), keyed(after)
    out = Comparison()
    for key in [*b, *(k for k in a if k not in b)]:
        c = Change(key, b.get(key), a.get(key))
        was_bad = c.before is not None and c.before.outcome.bad
        is_bad = c.after is not None and c.after.outcome.bad
        for r in c.new_rules:
            out.per_rule[r] += 1
        for r in c.gone_rules:
            out.per_rule[r] -= 1
        if is_bad and not was_bad:
            out.new_failures.append(c)
        elif c.new_rules:
            out.new_findings.append(c)
        elif (c.before is not None and c.before.outcome is Outcome.PASSED
              and (c.after is None or not c.after.outcome.executed)):
            out.lost.append(c)
        elif was_bad and not is_bad and c.after is not None:
            out.fixed.append(c)
        elif c.before is None or c.after is None or c.before.outcome is not c.after.outcome:
            out.other.append(c)
    return out


def _describe(path: Path, r: RunResults) -> str:
    run = r.run
    return (f"{path} ({run.host or '?'}, {run.backend or '?'}, {len(r.tests)} tests, run {run.status.value}, "
            f"devices {', '.join(d for d, _ in run.devices) or '?'})")


def render(before_path: Path, before: RunResults, after_path: Path, after: RunResults, c: Comparison) -> str:
    lines = [f"before: {_describe(before_path, before)}", f"after:  {_describe(after_path, after)}"]
    for title, changes in (("new failures", c.new_failures), ("new findings (warnings and failures of rules not "
                           "broken before)", c.new_findings), ("no longer run (passed before)", c.lost),
                           ("fixed", c.fixed), ("other changes", c.other)):
        if changes:
            lines += ["", f"{title} ({len(changes)}):", *(ch.line() for ch in changes)]
    changed = {r: n for r, n in sorted(c.per_rule.items()) if n}
    if changed:
        lines += ["", "by rule (tests newly breaking it, or no longer):"]
        lines += [f"  {r}: {n:+d}" for r, n in changed.items()]
    lines += ["", ("WORSE: " if c.worse else "not worse: ")
              + f"{len(c.new_failures)} new failure(s), {len(c.new_findings)} new finding(s), {len(c.lost)} no "
              f"longer run, {len(c.fixed)} fixed, {len(c.other)} other change(s)"]
    return "\n".join(lines)


def _results_file(path: Path) -> Path:
    return path / "results.json" if path.is_dir() else path


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="./cts compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path, help="results.json (or its reports folder) of the run before the patch")
    p.add_argument("after", type=Path, help="results.json (or its reports folder) of the run after")
    try:
        args = p.parse_args(argv)
    except BadInput as exc:
        print(f"./cts compare: {exc}", file=sys.stderr)
        return int(Exit.BAD_INPUT)
    loaded = []
    for path in (args.before, args.after):
        f = _results_file(path)
        try:
            loaded.append(load(f))
        except ValueError as exc:
            print(f"./cts compare: {exc}: give a results.json a run wrote (or its reports folder)", file=sys.stderr)
            return int(Exit.BAD_INPUT)
    c = compare(loaded[0], loaded[1])
    print(render(_results_file(args.before), loaded[0], _results_file(args.after), loaded[1], c))
    return 1 if c.worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
