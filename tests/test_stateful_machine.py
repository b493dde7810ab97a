"""The stateful explorer on the mock: clean on the correct mock, repeatable by seed, and a fault that only
shows deep in a sequence found, shrunk to a minimal sequence, and reproduced by the printed script."""

from __future__ import annotations

import importlib
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.mock.quirks import with_changes
from vfio_mig_cts.backends.protocol import Role
from vfio_mig_cts.exploration.reproducer import Target, script
from vfio_mig_cts.exploration.shrink import replay
from vfio_mig_cts.exploration.stateful import Explorer, Judge, Step
from vfio_mig_cts.exploration.walk import Exploration, Outcome, explore
from vfio_mig_cts.uapi.vfio import MigFlag

ALL = int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)
DEEP = {"combination_short_after": 8}  # the 9th SET since a reset, if a combination, stops an arc short


def exploration(flags: int, quirks: dict[str, Any] | None = None, tolerated: frozenset[str] = frozenset(),
                logs: list[list[Step]] | None = None) -> Exploration:
    backend = MockBackend(quirks=with_changes(quirks or {}))

    def make() -> Explorer:
        return Explorer(backend.open(Role.DUT, flags), flags, Judge(tolerated), backend.kernel_profile(),
                        reset_at_end=False)

    def done(ex: Explorer, failed: bool) -> None:
        if logs is not None:
            logs.append(list(ex.log))

    return Exploration(make, done)


@pytest.mark.parametrize("flags", [1, 3, 5, 7])
def test_correct_mock_explores_clean(flags: int) -> None:
    """Hundreds of steps in well under the time a CI run allows, and no finding."""
    start = time.monotonic()
    out = explore(exploration(flags), examples=20, steps=40, seed=1)
    assert out.finding is None, out.finding.message() if out.finding else ""
    assert out.steps >= 300
    assert time.monotonic() - start < 20


def test_same_seed_same_sequences() -> None:
    first: list[list[Step]] = []
    second: list[list[Step]] = []
    explore(exploration(ALL, logs=first), examples=5, steps=30, seed=99)
    explore(exploration(ALL, logs=second), examples=5, steps=30, seed=99)
    assert first == second
    third: list[list[Step]] = []
    explore(exploration(ALL, logs=third), examples=5, steps=30, seed=100)
    assert third != first


def test_same_seed_whatever_the_process_imported(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same seed draws the same sequences after the process imports a module full of integers and
    draws from the global ``random``.

    A generator that reads state of the process (Hypothesis, which the explorer once used, draws now and
    then from the constants written in the process's local modules) made a worker under xdist that had
    collected all of tests/ draw other sequences from the same seed than a run of one file did. The module
    here is local (not a test file, not in site-packages) and holds integers that ``dirty`` (0..255) could
    draw."""
    first: list[list[Step]] = []
    explore(exploration(ALL, logs=first), examples=20, steps=40, seed=1)
    where = tmp_path_factory.mktemp("constants")
    name = "vfio_cts_more_constants"
    (where / f"{name}.py").write_text("VALUES = (" + ", ".join(str(n) for n in range(101, 256, 3)) + ")\n")
    sys.path.insert(0, str(where))
    try:
        importlib.import_module(name)
        random.seed(12345)
        random.random()
        second: list[list[Step]] = []
        explore(exploration(ALL, logs=second), examples=20, steps=40, seed=1)
    finally:
        sys.path.remove(str(where))
        sys.modules.pop(name, None)
    assert second == first


@pytest.fixture(scope="module")
def deep() -> Outcome:
    """The deep fault, explored on the plain STOP_COPY feature set with a seed that finds it."""
    return explore(exploration(1, DEEP), examples=200, steps=60, seed=2)


def test_deep_fault_found_and_shrunk(deep: Outcome) -> None:
    """Found by a random sequence and shrunk: the fault needs eight SETs before a combination request
    (the composite steps, a save or a full cycle, make several each), and the last step is that request,
    which the faulty driver stops an arc short of its target."""
    assert deep.finding is not None
    assert deep.finding.rule.id == "ARC.TRANSITION"
    seq = deep.sequence
    assert 2 <= len(seq) < deep.unshrunk, (deep.unshrunk, seq)
    assert seq[-1][0] == "set_state", seq
    path = deep.finding.context.split("model path: ")[1].splitlines()[0]
    assert path.count("->") >= 2, path  # a combination request
    backend = MockBackend(quirks=with_changes(DEEP))
    dev = backend.open(Role.DUT, 1)
    ex = Explorer(dev, 1, Judge(), backend.kernel_profile(), reset_at_end=False)
    with pytest.raises(AssertionError):
        for name, args in seq:
            getattr(ex, name)(*args)
    assert dev.drv._sets_since_reset > DEEP["combination_short_after"]  # deep: past the eighth SET


def test_shrunk_sequence_is_minimal(deep: Outcome) -> None:
    """The sequence breaks the rule again on replay, and no single step can be left out."""
    ex = exploration(1, DEEP)
    again, _ = replay(ex.make, ex.done, deep.sequence)
    assert again is not None and again.rule.id == "ARC.TRANSITION"
    for i in range(len(deep.sequence)):
        shorter, _ = replay(ex.make, ex.done, deep.sequence[:i] + deep.sequence[i + 1:])
        assert shorter is None or shorter.rule.id != "ARC.TRANSITION", f"step {i + 1} is not needed"


def test_reproducer_script_runs_on_its_own(deep: Outcome, tmp_path: Path) -> None:
    """The printed script, run by itself, fails the same way (exit 1, the same rule and observation)."""
    assert deep.finding is not None
    text = script(Target(backend="mock", flags=1, extra={"quirks": DEEP}), deep.sequence, deep.finding, "tests")
    path = tmp_path / "repro.py"
    path.write_text(text)
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "REPRODUCED" in run.stdout
    assert deep.finding.rule.headline() in run.stdout
    assert deep.finding.observed in run.stdout
    correct = text.replace(f"extra={{'quirks': {DEEP!r}}}, ", "")
    assert correct != text
    path.write_text(correct)
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_tolerated_rule_is_recorded_not_stopped_at() -> None:
    """A rule an expectation file covers does not stop the run; its findings come back for the report."""
    out = explore(exploration(ALL, {"keep_old_state": True}, tolerated=frozenset({"ARC.TRANSITION", "ARC.NO_ASYNC",
                                                                                  "ARC.DATA_FD"})),
                  examples=5, steps=20, seed=3)
    assert out.tolerated and {f.rule.id for f in out.tolerated} <= {"ARC.TRANSITION", "ARC.NO_ASYNC", "ARC.DATA_FD"}
