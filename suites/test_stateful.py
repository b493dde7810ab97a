"""Random sequences of steps on one device, each judged against the model and the registry.

A seeded random walk (vfio_mig_cts/exploration/walk.py) takes SETs (legal and illegal), reads and writes
of varying sizes on the live data fd, precopy-info queries, early closes, reads of ended fds, resets, full
save/resume cycles (and, on the mock, ERROR); the checks are the shared ones (vfio_mig_cts/judging/checks.py).
A failure shrinks to a minimal sequence, printed (and written under the reports folder) as a standalone
script that replays it on the same backend. ``--stateful-examples``, ``--stateful-steps`` and
``--stateful-seed`` size and seed it (by default one fixed seed per test id, so CI runs repeat).

On the mock each sequence gets a fresh device; on a real one the device under test is reset between
sequences (and the reset judged).

A rule the expectation files list for the driver under test (whichever tests the entry names) is a
known finding: met, it is recorded (the property ``known`` and the report section ``known findings``:
``known: RULE (reason) [file:entry]``) and the sequence goes on past it. It neither fails the test nor
makes it a warning, an expected failure or, when not met, an unexpected pass: random sequences may or
may not meet it. Any other finding stops the sequence, shrinks and is reported with its rule's force.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from fixtures.plugin import EXPECT_KEY, backend_of, is_real
from fixtures.stateful_options import option, stateful_seed
from vfio_mig_cts.backends.protocol import Backend, MigrationDevice, Role, get_state
from vfio_mig_cts.exploration.reproducer import Target, script
from vfio_mig_cts.exploration.stateful import Explorer, Judge, known_lines, known_rules
from vfio_mig_cts.exploration.walk import Exploration, explore
from vfio_mig_cts.judging.expectations import Expectation
from vfio_mig_cts.judging.verdict import Verdict
from vfio_mig_cts.reports.writer import REPRODUCER, reproducer_name
from vfio_mig_cts.uapi.vfio import State


def _target(config: pytest.Config, flags: int, dev: MigrationDevice, real: bool, known: frozenset[str]) -> Target:
    devices = (dev.name,) if real else ()
    return Target(backend=str(config.getoption("backend")), flags=flags, fault=config.getoption("fault"),
                  personality=config.getoption("personality"),
                  kernel_profile=config.getoption("kernel_profile"), devices=devices,
                  open_path=str(config.getoption("open_path")), ioctl_timeout=float(config.getoption("ioctl_timeout")),
                  extra=dict(getattr(config.option, "backend_extra", None) or {}),
                  hazard_timeout=float(config.getoption("hazard_timeout")),
                  run_hazards=bool(config.getoption("run_hazards")), known=tuple(sorted(known)))


def _keep_script(request: pytest.FixtureRequest, text: str) -> Path:
    """The reproducer travels with the test's record; the reports writer puts it in ``stateful/`` with the
    run's other files (vfio_mig_cts/reports/writer.py). Without reports it goes to a temporary file."""
    config = request.config
    name = reproducer_name(request.node.nodeid)
    if config.getoption("no_reports"):
        path = Path(tempfile.mkdtemp(prefix="vfio-cts-")) / name
        path.write_text(text)
        os.chmod(path, 0o755)
        return path
    request.node.user_properties.append((REPRODUCER, text))
    return Path(str(config.getoption("reports"))) / "stateful" / name


# Many sequences on a real device (under TCG in the lane) take a minute or more; the examples count is
# an option, so the ceiling is generous.
@pytest.mark.timeout(900)
def test_random_sequences(flags: int, dut: MigrationDevice, verdict: Verdict, request: pytest.FixtureRequest) -> None:
    """Random step sequences, every step checked; a failure comes with its minimal reproducer."""
    config = request.config
    backend: Backend = backend_of(config)
    real = is_real(backend)
    profile = backend.kernel_profile()
    expectations: list[Expectation] = config.stash.get(EXPECT_KEY, [])
    known = known_rules(expectations, dut.driver, dut.name)
    tolerated = frozenset(known)
    seed = stateful_seed(config, request.node.nodeid)
    request.node.user_properties.append(("stateful_seed", str(seed)))
    knobs = {"hazard_timeout": float(config.getoption("hazard_timeout")),
             "run_hazards": bool(config.getoption("run_hazards")), "real": real}

    judges: list[Judge] = []

    def judge() -> Judge:
        judges.append(Judge(tolerated))
        return judges[-1]

    def make() -> Explorer:
        if real:  # the device under test, back in RUNNING (the previous sequence's reset was judged)
            if get_state(dut) != State.RUNNING:
                dut.reset()
            return Explorer(dut, flags, judge(), profile, reset_at_end=True, **knobs)  # type: ignore[arg-type]
        return Explorer(backend.open(Role.DUT, flags), flags, judge(), profile, reset_at_end=False,
                        **knobs)  # type: ignore[arg-type]

    def done(ex: Explorer, failed: bool) -> None:
        if ex.dev is not dut:
            ex.dev.close()
        elif failed:
            try:
                dut.reset()
            except OSError:
                pass

    examples, steps = int(option(config, "stateful_examples")), int(option(config, "stateful_steps"))
    out = explore(Exploration(make, done), examples, steps, seed)
    print(f"stateful: seed {seed} (--stateful-seed {seed}), {out.runs} sequences, {out.steps} steps, "
          + (f"shrunk from {out.unshrunk} steps in {out.replays} replays, " if out.finding else "")
          + f"{out.seconds:.2f} s")
    # The rules the sequences judged, for the reports; known ones left out (met or not, they must not
    # make this test an expected failure or an unexpected pass).
    for rid in sorted({r for j in judges for r in j.judged} - tolerated):
        if rid not in verdict.checked:
            verdict.checked.append(rid)
        if rid not in verdict.judged:
            verdict.judged.append(rid)
    lines = known_lines(known, out.tolerated)
    if lines:  # recorded before an unknown finding fails the test, so the report has both
        request.node.user_properties.append(("known", "; ".join(head for head, _ in lines)))
        text = "\n\n".join(body for _, body in lines)
        request.node.add_report_section("call", "known findings", text)
        print(f"stateful: known findings, gone past:\n{text}")
    if out.finding is not None:
        f = out.finding
        origin = (f"Found by {request.node.nodeid} with --stateful-seed {seed} on backend "
                  f"{config.getoption('backend')}" + (f" (fault {config.getoption('fault')})"
                                                      if config.getoption("fault") else "")
                  + (f" (personality {config.getoption('personality')})" if config.getoption("personality") else "")
                  + (f"; {out.flaky}" if out.flaky else ""))
        text = script(_target(config, flags, dut, real, tolerated), out.sequence, f, origin)
        path = _keep_script(request, text)
        print(f"stateful reproducer ({len(out.sequence)} steps): {path}\n{text}")
        verdict.check(f.rule.id, False, expected=f.expected, observed=f.observed,
                      context=f"{f.context}\nminimal sequence: {len(out.sequence)} step(s), --stateful-seed {seed}"
                              + (f" ({out.flaky})" if out.flaky else "")
                              + f"; reproducer: {path}\n" + text)
