"""Replaying a sequence of ``Explorer`` steps, and shrinking one that breaks a rule to a minimal one.

``shrink`` is delta debugging on the steps (chunks removed, halving the chunk, down to single steps),
then each step's argument made simpler; every candidate is replayed on a fresh explorer, and one is
kept only when it still breaks the same rule. It ends 1-minimal (no single step can go) unless it runs
out of its budget of replays or seconds (a hanging device makes replays slow), and then returns the
best so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vfio_mig_cts.exploration.stateful import READ_SIZES, TARGETS, WRITE_SIZES, Explorer, Step
from vfio_mig_cts.judging.verdict import Finding, RuleViolation

SIMPLER: dict[str, tuple[Any, ...]] = {  # per step, its argument values from simplest to least simple
    "set_state": TARGETS, "read": READ_SIZES, "write": WRITE_SIZES, "read_ended": (0,), "dirty": (0,)}


def replay(make: Callable[[], Explorer], done: Callable[[Explorer, bool], None],
           steps: list[Step]) -> tuple[Finding | None, list[Step]]:
    """Take ``steps`` on a fresh explorer: the finding it stops at (None: every step passed), and the
    steps it took (a step that no longer applies is dropped)."""
    ex = make()
    failed = True
    try:
        for name, args in steps:
            getattr(ex, name)(*args)
        ex.finish()
        failed = False
    except RuleViolation as exc:
        return exc.finding, list(ex.log)
    except Exception:
        return None, list(ex.log)
    finally:
        ex.close_all()
        done(ex, failed)
    return None, list(ex.log)


def shrink(make: Callable[[], Explorer], done: Callable[[Explorer, bool], None], steps: list[Step],
           rule_id: str, budget: int = 3000, seconds: float = 20.0) -> tuple[Finding | None, list[Step]]:
    """The shortest sequence found that still breaks ``rule_id``: chunks of steps removed (halving the
    chunk), then each step's argument made simpler; every candidate is replayed on a fresh run. Stops
    after ``budget`` replays or ``seconds`` (a hanging device makes replays slow) with the best so far."""
    finding, best = replay(make, done, steps)
    if finding is None or finding.rule.id != rule_id:
        return finding, best
    tries = 0
    deadline = time.monotonic() + seconds

    def attempt(cand: list[Step]) -> bool:
        nonlocal finding, best, tries
        tries += 1
        if time.monotonic() > deadline:
            tries = budget
            return False
        got, taken = replay(make, done, cand)
        if got is None or got.rule.id != rule_id or len(taken) > len(best):
            return False
        finding, best = got, taken
        return True

    chunk = max(1, len(best) // 2)
    while chunk >= 1 and tries < budget:
        i, before = 0, len(best)
        while i < len(best) and tries < budget:
            if not attempt(best[:i] + best[i + chunk:]):
                i += chunk
        if chunk > 1:
            chunk //= 2
        elif len(best) == before:
            break  # no single step can go: 1-minimal
    for i in range(len(best)):
        if i >= len(best) or tries >= budget:
            break
        name, args = best[i]
        for alt in SIMPLER.get(name, ()):
            if args and alt != args[0]:
                simpler = list(SIMPLER[name]).index(alt) < list(SIMPLER[name]).index(args[0]) \
                    if args[0] in SIMPLER[name] else True
                if simpler and attempt([*best[:i], (name, (alt, *args[1:])), *best[i + 1:]]):
                    break
    return finding, best


