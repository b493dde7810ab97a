"""Outcomes: how a check against a registry rule becomes a pass, a failure or a warning.

A broken *must* rule fails the test at once (``RuleViolation``). A broken *should* or *convention*
rule is recorded as a warning and the test goes on; the plugin reports the test as a warning, or as
a failure under ``--strict-rules``.
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass, field

from vfio_mig_cts.reports.record import Finding as RecordFinding
from vfio_mig_cts.spec.registry import Force, Rule, rule


def errno_name(code: int | None) -> str:
    """``EINVAL`` for 22; ``success`` for None or 0."""
    if not code:
        return "success"
    return errno_mod.errorcode.get(code, f"errno {code}")


@dataclass(frozen=True)
class Finding:
    """One broken rule: what was expected and observed, in uAPI terms."""

    rule: Rule
    expected: str
    observed: str
    context: str = ""

    def record(self) -> RecordFinding:
        """The finding as the reports carry it (rule, force, quote and source as fields)."""
        r = self.rule
        return RecordFinding(rule=r.id, force=r.force.value, source=r.source, quote=r.quote,
                             expected=self.expected, observed=self.observed, context=self.context)

    def message(self) -> str:
        return self.record().text()


class RuleViolation(AssertionError):
    """A *must* rule was broken: the test fails with the finding's message."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message())
        self.finding = finding


@dataclass
class Verdict:
    """The rules one test checks (declared by its ``rule`` marks, then any it judged), the rules it
    actually judged before it ended, and the findings it made."""

    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    judged: list[str] = field(default_factory=list)

    def record(self, rule_id: str, ok: bool, expected: str, observed: str, context: str = "") -> Finding | None:
        """Note that the rule was judged; a broken one becomes a recorded finding (returned)."""
        r = rule(rule_id)
        if rule_id not in self.checked:
            self.checked.append(rule_id)
        if rule_id not in self.judged:
            self.judged.append(rule_id)
        if ok:
            return None
        finding = Finding(r, expected, observed, context)
        self.findings.append(finding)
        return finding

    def check(self, rule_id: str, ok: bool, expected: str, observed: str, context: str = "") -> bool:
        """Judge one observation against a rule; raise on a broken *must*, record anything else."""
        finding = self.record(rule_id, ok, expected, observed, context)
        if finding is None:
            return True
        if finding.rule.force is Force.MUST:
            raise RuleViolation(finding)
        return False

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.rule.force is not Force.MUST]

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.rule.force is Force.MUST]

    def broken_rules(self) -> list[str]:
        return sorted({f.rule.id for f in self.findings})
