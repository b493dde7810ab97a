"""The rule registry against the kernel source: every quote stands at its cited line."""

from __future__ import annotations

import re

import pytest

from tests.kernel_source import require_source
from vfio_mig_cts.spec.registry import RULES, Force


def _normalize(text: str) -> str:
    text = re.sub(r"^\s*\*\s?", "", text, flags=re.M)
    return " ".join(text.split())


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_quote_stands_at_cited_line(rule_id: str) -> None:
    r = RULES[rule_id]
    path = require_source() / r.path
    lines = path.read_text().splitlines()
    window = _normalize("\n".join(lines[r.line - 1:r.line + 6]))
    first = _normalize(lines[r.line - 1])
    quote = _normalize(r.quote)
    assert quote in window, f"{r.source}: quote not found:\n{quote}\nin\n{window}"
    assert window.index(quote) < max(len(first), 1), f"{r.source}: quote does not start on the cited line"


def test_force_matches_modal_verb() -> None:
    """A rule quoted with 'should' is never a must; one quoted with 'must' is never a should."""
    for r in RULES.values():
        words = set(re.findall(r"[a-z]+", r.quote.lower()))
        if "should" in words and "must" not in words:
            assert r.force is not Force.MUST, r.id
        if "must" in words and "should" not in words:
            assert r.force is Force.MUST, r.id


def test_ids_are_namespaced() -> None:
    for rid in RULES:
        assert re.fullmatch(r"[A-Z]+\.[A-Z0-9_]+", rid), rid
