"""The terminal's view of the record: results by rule, the matrix, and the one-line summary.

Rules:

- Results by rule: for each rule a test judged (or broke), how many tests held it, broke it
  (failed, warning, known failure), passed unexpectedly, skipped it or errored; a rule a test
  declared but never reached is not counted as held.
- Findings: every failed, erroring, unexpectedly passing or warning test outside the matrix, with its
  findings (rule, force, expected, observed) wrapped, never cut.
- A quiet run (``-q``) where every test passed or skipped prints one summary line; otherwise the matrix and the
  rule table follow, every problem with its rule, expected and observed.
"""

from __future__ import annotations

import textwrap
from collections import Counter, defaultdict

from vfio_mig_cts.reports import matrix
from vfio_mig_cts.reports.record import Outcome, RunResults, RunStatus, TestRecord
from vfio_mig_cts.spec.registry import RULES

RULE_COLUMNS = ("passed", "failed", "warning", "xfailed", "xpassed", "skipped", "error")


def per_rule(tests: list[TestRecord]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for t in tests:
        broken = set(t.broken)
        for rid in t.rules:
            kind = t.outcome.value
            ran = t.outcome not in (Outcome.SKIPPED, Outcome.HAZARD, Outcome.ERROR)
            if ran and rid not in broken and rid not in t.judged:
                continue  # declared, but the test ended (or took another branch) before judging it
            if kind in ("failed", "warning", "xfailed") and rid not in broken:
                kind = "passed"  # this rule held; another one broke
            if kind == "hazard":
                kind = "skipped"
            out[rid][kind] += 1
    return dict(out)


def rule_lines(tests: list[TestRecord]) -> list[str]:
    table = per_rule(tests)
    lines = [f"{'rule':<30} {'force':<10} " + " ".join(f"{c:>7}" for c in RULE_COLUMNS) + "  family"]
    for rid in sorted(table, key=lambda i: (RULES[i].family.value if i in RULES else "", i)):
        c = table[rid]
        rule = RULES.get(rid)
        force = rule.force.value if rule else "?"
        fam = rule.family.value if rule else "?"
        lines.append(f"{rid:<30} {force:<10} " + " ".join(f"{c[k]:>7}" for k in RULE_COLUMNS) + f"  {fam}")
    return lines


def summary_line(results: RunResults, where: str) -> str:
    c = results.counts()
    parts = ", ".join(f"{c[o]} {o.value}" for o in Outcome if c[o])
    status = "" if results.run.status is RunStatus.COMPLETE else f" (run {results.run.status.value})"
    return f"vfio-mig-cts: {len(results.tests)} tests: {parts or 'none'}{status}; reports in {where}"


def quiet_ok(results: RunResults) -> bool:
    """Nothing a quiet run needs to show beyond the summary line: it completed and every test passed or skipped."""
    return results.run.status is RunStatus.COMPLETE and all(
        t.outcome in (Outcome.PASSED, Outcome.SKIPPED, Outcome.HAZARD) for t in results.tests)


SYMBOL = {Outcome.FAILED: "FAIL", Outcome.XPASSED: "XPASS", Outcome.ERROR: "ERROR", Outcome.WARNING: "WARN"}


def problem_lines(tests: list[TestRecord], width: int, limit: int = 40) -> list[str]:
    """Every failed, erroring, unexpectedly passing or warning test that is not an arc of the matrix, with its
    findings (rule, force, expected, observed) wrapped to ``width``."""
    problems = [t for t in tests if t.outcome in SYMBOL and t.case is None]
    out: list[str] = []
    for t in problems[:limit]:
        out.append(f"{SYMBOL[t.outcome]} {t.nodeid}")
        details = [f.summary() for f in t.findings if t.outcome is not Outcome.XPASSED] or [t.headline]
        for d in details:
            out += textwrap.wrap(d, width=max(width, 40), initial_indent="    ", subsequent_indent="        ")
    if len(problems) > limit:
        out.append(f"... and {len(problems) - limit} more (results.json)")
    return out


def sections(results: RunResults, width: int) -> list[tuple[str, list[str]]]:
    """(title, lines) for the terminal summary."""
    out: list[tuple[str, list[str]]] = []
    problems = problem_lines(results.tests, width)
    if problems:
        out.append(("vfio-mig-cts: findings", problems))
    lines = matrix.terminal_lines(results.tests, width)
    if lines:
        out.append(("vfio-mig-cts: conformance matrix (from-state x requested state)", lines))
    families = matrix.family_terminal_lines(results.tests)
    if families:
        out.append(("vfio-mig-cts: rule families", families))
    rules = rule_lines(results.tests)
    if len(rules) > 1:
        warned = sum(1 for t in results.tests if t.outcome is Outcome.WARNING)
        if warned:
            rules.append(f"{warned} test(s) broke a should/convention rule (warnings; --strict-rules makes them "
                         "failures); details in each test's 'conformance warnings' section and in results.json")
        out.append(("vfio-mig-cts: results by rule", rules))
    return out
