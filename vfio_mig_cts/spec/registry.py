"""The rule registry: every rule the suite checks, once, with its source and its force.

Each quote is the kernel's own text (Linux 6.12 as Debian ships it); ``tests/test_rules.py`` finds
every quote at its cited line in ``linux-source-6.12``. The force is the text's own modal verb:
``must`` is a failure; ``should`` a warning (a failure under ``--strict-rules``); ``convention`` is what
every upstream driver does though the header does not state it (a warning).
"""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule
from vfio_mig_cts.spec.rulebook import PARTS

__all__ = ["RULES", "Family", "Force", "Rule", "register", "rule"]

RULES: dict[str, Rule] = {}


def rule(rule_id: str) -> Rule:
    """The registered rule; an unknown id is a bug in the suite, not in the device."""
    return RULES[rule_id]


def register(*rules: Rule) -> None:
    """Add rules from a later suite module's registry part (ids must be new)."""
    for r in rules:
        if r.id in RULES:
            raise RuntimeError(f"rule {r.id} registered twice")
        RULES[r.id] = r


def _assemble() -> None:
    """The registry: each rule family's part (vfio_mig_cts/spec/rulebook/*.py)."""
    for part in PARTS:
        register(*part)


_assemble()
