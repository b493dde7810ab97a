"""The Hypothesis state machine that draws ``Explorer`` steps, and a run of it with a seed.

Every rule is one ``Explorer`` step (vfio_mig_cts/exploration/stateful.py), so a failing sequence is a list of the same
method calls a reproducer script makes. Hypothesis generates; the shrinking is the explorer's own
(``fixtures.stateful.shrink``: steps removed, arguments simplified, each candidate replayed on a fresh
run), which reaches a minimal sequence in far fewer replays than Hypothesis' generic shrinker does on
these sequences. A run uses no example database and a fixed seed: the same seed on the same device
gives the same sequences, whatever else the process imported or ran before (see ``fixed_constants``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from vfio_mig_cts.backends.protocol import DeviceProfile, ErrorInjection
from vfio_mig_cts.exploration.stateful import READ_SIZES, TARGETS, WRITE_SIZES, Explorer, Step, shrink
from vfio_mig_cts.judging.verdict import Finding, RuleViolation


@dataclass
class Exploration:
    """Where each run's ``Explorer`` comes from and goes back to, and what the runs did."""

    make: Callable[[], Explorer]  # a device in RUNNING and an explorer on it, for one run
    done: Callable[[Explorer, bool], None]  # after a run (the bool: it failed)
    last: Explorer | None = None
    runs: int = 0
    steps: int = 0
    tolerated: list[Finding] = field(default_factory=list)  # findings of rules the judge lets pass


class MigrationMachine(RuleBasedStateMachine):
    """One run: a device in RUNNING, then random steps (see vfio_mig_cts/exploration/stateful.py)."""

    def __init__(self, exploration: Exploration) -> None:
        super().__init__()
        self.x = exploration
        self.ex = exploration.make()
        self.failed = False
        exploration.last = self.ex
        exploration.runs += 1

    def _do(self, fn: Callable[[], None]) -> None:
        self.x.steps += 1
        try:
            fn()
        except BaseException:
            self.failed = True
            raise

    # --- state changes (two rules: requests for states that exist get twice the share) ------------
    @rule(new=st.sampled_from(TARGETS[:7]))
    def set_state(self, new: int) -> None:
        self._do(lambda: self.ex.set_state(new))

    @rule(new=st.sampled_from(TARGETS))
    def set_any(self, new: int) -> None:
        self._do(lambda: self.ex.set_state(new))

    @precondition(lambda self: bool(self.ex.next_states()))
    @rule(i=st.integers(0, 7))
    def next_arc(self, i: int) -> None:
        """One legal arc on from here: walks reach the deep corners of the FSM far more often."""
        targets = self.ex.next_states()
        self._do(lambda: self.ex.set_state(targets[i % len(targets)]))

    @rule()
    def reset(self) -> None:
        self._do(self.ex.reset)

    # --- the live data fd ------------------------------------------------------------------------
    @precondition(lambda self: self.ex.saving())
    @rule(size=st.sampled_from(READ_SIZES))
    def read(self, size: int) -> None:
        self._do(lambda: self.ex.read(size))

    @precondition(lambda self: self.ex.saving())
    @rule(size=st.sampled_from(READ_SIZES))
    def drain(self, size: int) -> None:
        self._do(lambda: self.ex.drain(size))

    @precondition(lambda self: self.ex.saving())
    @rule()
    def precopy_info(self) -> None:
        self._do(self.ex.precopy_info)

    @precondition(lambda self: self.ex.resuming())
    @rule(size=st.sampled_from(WRITE_SIZES))
    def write(self, size: int) -> None:
        self._do(lambda: self.ex.write(size))

    @precondition(lambda self: self.ex.has_live())
    @rule()
    def wrong_direction(self) -> None:
        self._do(self.ex.wrong_direction)

    @precondition(lambda self: self.ex.has_live())
    @rule()
    def close_fd(self) -> None:
        self._do(self.ex.close_fd)

    @precondition(lambda self: self.ex.has_ended())
    @rule(index=st.integers(0, 7))
    def read_ended(self, index: int) -> None:
        self._do(lambda: self.ex.read_ended(index))

    # --- the device --------------------------------------------------------------------------------
    @precondition(lambda self: isinstance(self.ex.dev, DeviceProfile))
    @rule(seed=st.integers(0, 255))
    def dirty(self, seed: int) -> None:
        self._do(lambda: self.ex.dirty(seed))

    @rule()
    def data_size(self) -> None:
        self._do(self.ex.data_size)

    @rule()
    def get(self) -> None:
        self._do(self.ex.get)

    @precondition(lambda self: self.ex.can_save())
    @rule()
    def save_image(self) -> None:
        self._do(self.ex.save_image)

    @precondition(lambda self: self.ex.can_save())
    @rule()
    def full_cycle(self) -> None:
        self._do(self.ex.full_cycle)

    @precondition(lambda self: isinstance(self.ex.dev, ErrorInjection) and not self.ex.real)
    @rule()
    def inject_error(self) -> None:
        self._do(self.ex.inject_error)

    def teardown(self) -> None:
        try:
            if self.failed:
                self.ex.close_all()
            else:
                self._do(self.ex.finish)
        finally:
            judge = self.ex.judge
            self.x.tolerated.extend(f for f in judge.findings if f.rule.id in judge.tolerated)
            self.x.done(self.ex, self.failed)


@dataclass
class Outcome:
    """What an exploration found: nothing, or a finding and the minimal sequence that makes it."""

    seed: int
    runs: int
    steps: int
    seconds: float
    finding: Finding | None = None
    sequence: list[Step] = field(default_factory=list)
    flaky: str = ""  # Hypothesis could not make the failure happen again: why
    tolerated: list[Finding] = field(default_factory=list)
    unshrunk: int = 0  # steps of the failing sequence as Hypothesis found it


def _violation(exc: BaseException) -> RuleViolation | None:
    if isinstance(exc, RuleViolation):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _violation(inner)
            if found is not None:
                return found
    return None


@contextmanager
def fixed_constants() -> Iterator[None]:
    """Hypothesis' draws independent of what the process has imported.

    Hypothesis (6.170, pinned in pyproject.toml) now and then draws an integer not at random but from
    its own fixed constants or from a pool of the constants written in the source of every *local*
    module in ``sys.modules`` (not stdlib, not site-packages, not test files; integers beyond -100..100):
    here the project's fixtures, lane and conftest modules. That pool grows with each import. Here it
    reaches ``dirty``'s seed (0..255), and once one draw differs, the random stream and the device's
    state differ and the rest of the run diverges: the same seed drew other sequences in a process that
    had imported more of the project (the modules the other test files import, a whole ``tests/``
    collection under xdist) than in one that had imported less. For the duration of a run the local
    pool is empty (Hypothesis' own constants still apply), and the cache of permitted constants is
    cleared before and after, so that neither this run nor a later Hypothesis user in the process sees
    the other's pool. Hypothesis has no setting for this, so this patches
    ``hypothesis.internal.conjecture.providers``; should those internals move, it does nothing, and
    tests/test_stateful_machine.py::test_same_seed_whatever_the_process_imported fails."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:
        yield
        return
    real = getattr(providers, "_get_local_constants", None)
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if real is None or cache is None:
        yield
        return
    empty = Constants()
    cache.clear()
    setattr(providers, "_get_local_constants", lambda: empty)  # noqa: B010  # a module-level function
    try:
        yield
    finally:
        setattr(providers, "_get_local_constants", real)  # noqa: B010
        cache.clear()


def explore(exploration: Exploration, examples: int, steps: int, seed: int) -> Outcome:
    """Run the machine: ``examples`` sequences of up to ``steps`` steps drawn from ``seed``."""
    def factory() -> MigrationMachine:
        return MigrationMachine(exploration)

    factory._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]  # what @seed(n) sets
    how = settings(max_examples=max(1, examples), stateful_step_count=max(1, steps), deadline=None,
                   database=None, suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                   phases=(Phase.generate,), verbosity=Verbosity.quiet, print_blob=False)
    start = time.monotonic()
    finding, flaky, sequence, unshrunk = None, "", [], 0
    try:
        with fixed_constants():
            run_state_machine_as_test(factory, settings=how)  # type: ignore[arg-type]  # a factory is allowed
    except BaseException as exc:
        found = _violation(exc)
        if found is None:
            raise
        finding = found.finding
        if found is not exc:
            flaky = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        sequence = list(exploration.last.log) if exploration.last is not None else []
        unshrunk = len(sequence)
        shrunk, smaller = shrink(exploration.make, exploration.done, sequence, finding.rule.id)
        if shrunk is not None:
            finding, sequence = shrunk, smaller
        else:
            flaky = flaky or f"the sequence of {len(sequence)} steps did not break {finding.rule.id} again on replay"
    return Outcome(seed, exploration.runs, exploration.steps, time.monotonic() - start, finding, sequence, flaky,
                   list(exploration.tolerated), unshrunk)
