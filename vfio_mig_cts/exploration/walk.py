"""Random sequences of ``Explorer`` steps from a seed, and the minimal one for a finding.

A sequence is a seeded random walk: at each step one of the ``MOVES`` that apply where the device is
(a SET of a state that exists, of any value, or along a legal arc; a read, a drain, a write, a
precopy-info query, a wrong-direction call or an early close on the live fd; a read of an ended fd;
a reset, GET, MIG_DATA_SIZE, a save, a full save/resume cycle, guest activity, ERROR on the mock),
drawn with equal odds, then one of its argument values, with equal odds. ``explore`` runs ``examples``
sequences of ``steps`` steps, all drawn from one ``random.Random(seed)``: the same seed on the same
device gives the same sequences, whatever else the process imported or ran (the suite's default is
one fixed seed per test id, ``--stateful-seed`` changes it). At the first broken rule the sequence is
shrunk (vfio_mig_cts/exploration/shrink.py) and the exploration ends; the caller writes the minimal
sequence as a script (vfio_mig_cts/exploration/reproducer.py).

Why a seeded walk and not Hypothesis (issue 12 item 8, option (b)): both were built and measured on
the mock (2 shared, busy cores). Hypothesis' ``RuleBasedStateMachine`` as designed (rules,
preconditions, "GET reports the model's state" as an invariant, its own shrinking and step printing,
``@seed``, no example database) found every fault tests/test_stateful_faults.py names, in 142 s; this
walk and ``shrink`` find them all in under 3 s, each at the first seed tried. At the suite's default
size (20 sequences of 40 steps) the walk meets the PRE_COPY faults for 16 to 19 seeds of 20 where
Hypothesis' generation (as the explorer ran it before) met them for 10 to 15. Most of a Hypothesis
replay's time went to its choice-sequence machinery, and its shrinker took 35 to 1300 replays per
finding (this shrinker: 4 to 27); on the deep fault of tests/test_stateful_machine.py it took 800 to
2600 replays and 20 to 47 s, and its result kept a step the failure does not need for 4 of the 11
seeds that found it, where ``shrink`` ends 1-minimal within a bounded number of replays. That bound
matters on a real device, where a replay is a reset and dozens of ioctls. The clean run on the mock
is not slower either: the suite's four feature sets explore in about a third of the time. A failing sequence
is the explorer's own calls, so the reproducer is those calls; and a seed is all a CI run needs to be
repeated, with nothing drawn from the process's state (Hypothesis draws now and then from the
constants of the process's imported modules, which made a run under xdist differ from one of a
single file until a private hook was patched).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vfio_mig_cts.backends.protocol import DeviceProfile, ErrorInjection
from vfio_mig_cts.exploration.shrink import shrink
from vfio_mig_cts.exploration.stateful import READ_SIZES, TARGETS, WRITE_SIZES, Explorer, Step
from vfio_mig_cts.judging.verdict import Finding, RuleViolation

Args = tuple[Any, ...]
DIRTY_SEEDS = 256  # dirty()'s seed: which bytes of the device's state a guest changes


@dataclass(frozen=True)
class Move:
    """A kind of step: the ``Explorer`` method it calls, and the argument tuples it may take where the
    device is now (none: the move does not apply here)."""

    step: str
    args: Callable[[Explorer], Sequence[Args]]


def _always(*choices: Args) -> Callable[[Explorer], Sequence[Args]]:
    return lambda ex: choices


def _when(applies: Callable[[Explorer], bool], *choices: Args) -> Callable[[Explorer], Sequence[Args]]:
    return lambda ex: choices if applies(ex) else ()


MOVES: tuple[Move, ...] = (
    # state changes: three moves, so SETs are a fair share of the steps; requests for states that exist
    # come twice as often as other values, and a walk along legal arcs reaches the deep corners of the FSM
    Move("set_state", _always(*((t,) for t in TARGETS[:7]))),
    Move("set_state", _always(*((t,) for t in TARGETS))),
    Move("set_state", lambda ex: [(s,) for s in ex.next_states()]),
    Move("reset", _always(())),
    # the live data fd
    Move("read", _when(Explorer.saving, *((n,) for n in READ_SIZES))),
    Move("drain", _when(Explorer.saving, *((n,) for n in READ_SIZES))),
    Move("precopy_info", _when(Explorer.saving, ())),
    Move("write", _when(Explorer.resuming, *((n,) for n in WRITE_SIZES))),
    Move("wrong_direction", _when(Explorer.has_live, ())),
    Move("close_fd", _when(Explorer.has_live, ())),
    Move("read_ended", _when(Explorer.has_ended, *((i,) for i in range(8)))),
    # the device
    Move("dirty", _when(lambda ex: isinstance(ex.dev, DeviceProfile), *((s,) for s in range(DIRTY_SEEDS)))),
    Move("data_size", _always(())),
    Move("get", _always(())),
    Move("save_image", _when(Explorer.can_save, ())),
    Move("full_cycle", _when(Explorer.can_save, ())),
    Move("inject_error", _when(lambda ex: isinstance(ex.dev, ErrorInjection) and not ex.real, ())),
)


def draw(rnd: random.Random, ex: Explorer) -> Step:
    """The next step: a move that applies here, then one of its argument tuples."""
    choices = [(m.step, args) for m in MOVES if (args := m.args(ex))]
    step, args = rnd.choice(choices)
    return step, tuple(rnd.choice(args))


@dataclass
class Exploration:
    """Where each sequence's ``Explorer`` comes from and goes back to."""

    make: Callable[[], Explorer]  # a device in RUNNING and an explorer on it, for one sequence
    done: Callable[[Explorer, bool], None]  # after a sequence (the bool: it failed)


@dataclass
class Outcome:
    """What an exploration found: nothing, or a finding and the minimal sequence that makes it."""

    seed: int
    runs: int  # sequences run (until the finding)
    steps: int  # steps drawn in them
    seconds: float
    finding: Finding | None = None
    sequence: list[Step] = field(default_factory=list)  # the minimal sequence
    flaky: str = ""  # the failing sequence did not break the rule again on replay: why
    tolerated: list[Finding] = field(default_factory=list)  # findings of rules the judge lets pass
    unshrunk: int = 0  # steps of the failing sequence before shrinking
    replays: int = 0  # sequences shrinking replayed


def _run(exploration: Exploration, rnd: random.Random, steps: int, out: Outcome) -> list[Step] | None:
    """One sequence; the steps it took when a rule broke (``out.finding`` set), None when none did."""
    ex = exploration.make()
    out.runs += 1
    failed = True
    try:
        for _ in range(steps):
            name, args = draw(rnd, ex)
            out.steps += 1
            getattr(ex, name)(*args)
        ex.finish()
        failed = False
    except RuleViolation as exc:
        out.finding = exc.finding
        return list(ex.log)
    finally:
        if failed:
            ex.close_all()
        judge = ex.judge
        out.tolerated.extend(f for f in judge.findings if f.rule.id in judge.tolerated)
        exploration.done(ex, failed)
    return None


def explore(exploration: Exploration, examples: int, steps: int, seed: int) -> Outcome:
    """``examples`` sequences of ``steps`` steps drawn from ``seed``, up to the first that breaks a rule,
    which comes back shrunk."""
    start = time.monotonic()
    rnd = random.Random(seed)
    out = Outcome(seed, 0, 0, 0.0)
    failing = None
    while failing is None and out.runs < max(1, examples):
        failing = _run(exploration, rnd, max(1, steps), out)
    if failing is not None and out.finding is not None:
        out.unshrunk = len(failing)

        def make() -> Explorer:
            out.replays += 1
            return exploration.make()

        shrunk, smaller = shrink(make, exploration.done, failing, out.finding.rule.id)
        if shrunk is not None and shrunk.rule.id == out.finding.rule.id:
            out.finding, out.sequence = shrunk, smaller
        else:
            out.sequence = failing
            out.flaky = f"the sequence of {len(failing)} steps did not break {out.finding.rule.id} again on replay"
    out.seconds = time.monotonic() - start
    return out
