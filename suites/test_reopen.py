"""Close and reopen, as after a VMM crash: the data fd, the device, or both, in every state.

The uAPI says nothing of a close in mid-migration; the device must still come back usable: GET
answers with a state the flags support (upstream PCI drivers restart in RUNNING; mtty keeps the
state), a request to leave it returns (success or an errno) without hanging or a kernel splat,
VFIO_DEVICE_RESET returns RUNNING, and a full migration works. A data fd kept across the device's
close is dead afterwards (REOPEN.DEAD_FDS, must: include/linux/vfio.h:192-194, "ensure that FD reaches
end of stream or error ... before close_device() returns").

Closing and reopening the device needs the backend's ``Reopen`` capability (the mock has it). On a
real kernel these paths are hazards: mtty 6.12.117 oopses when the device, closed in RESUMING and
opened again, is asked to leave RESUMING (the task dies holding the state mutex; every later
migration ioctl on that mdev hangs). On a real device those cases run only with ``--run-hazards``,
last, and the request that leaves the reopened state runs in a forked child: a child that hangs or
ends without an answer (the oops kills its task) writes the device off for the rest of the run, the
test fails RESUME.FINAL_LOAD naming the kernel bug (leaving RESUMING with no complete stream must fail
the SET, vfio.h:1094; a request that never returns does not), and the kernel messages are quoted (an
ERROR, or an expected failure where an expectation file lists the bug with ``kernel_messages = true``).
A hang leaving any other reopened state breaks REOPEN.USABLE.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from fixtures.plugin import backend_of, feature_set_id, is_real
from vfio_mig_cts.backends.protocol import Hazard, Losable, MigrationDevice, Reopen, get_state, set_state
from vfio_mig_cts.judging.containment import run_contained
from vfio_mig_cts.judging.driving import Session
from vfio_mig_cts.judging.resume_cases import Live, check_dead, migrate_again, open_session, reset_out_of
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import State, state_name

S = State
WITH_SESSION = frozenset({S.PRE_COPY, S.PRE_COPY_P2P, S.STOP_COPY, S.RESUMING, S.ERROR})
MODES = ("data-fd", "data-fd+device", "device")  # what is closed: the data fd; it, then the device; the device
T = TypeVar("T")
MTTY_OOPS = ("mtty 6.12.117 oopses when a device closed in RESUMING and opened again is asked to leave "
             "RESUMING (the task dies holding the state mutex; the mdev is lost until reboot)")


@dataclass(frozen=True)
class ReopenCase:
    flags: int
    state: State
    mode: str

    @property
    def id(self) -> str:
        return f"{feature_set_id(self.flags)}-{self.state.name}-{self.mode}"

    @property
    def hazard(self) -> bool:
        return self.state == S.RESUMING and self.mode != "data-fd"


def reopen_cases(flag_sets: list[int], modes: tuple[str, ...]) -> list[ReopenCase]:
    return [ReopenCase(f, s, m) for f in flag_sets for s in model.reachable_states(f) for m in modes
            if m == "data-fd+device" or s in WITH_SESSION]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrized as ``arc``: the plugin takes the feature set from ``arc.flags`` (see test_resume.py).
    if "arc" not in metafunc.fixturenames:
        return
    sets = backend_of(metafunc.config).feature_sets()
    modes = MODES[:1] if metafunc.function.__name__ == "test_close_data_fd" else MODES[1:]
    cases = reopen_cases(sets, modes)
    oops = [pytest.mark.hazard(MTTY_OOPS, kind=Hazard.DRIVER)]
    metafunc.parametrize("arc", [pytest.param(c, id=c.id, marks=oops if c.hazard else []) for c in cases])


@pytest.fixture
def case(arc: ReopenCase) -> ReopenCase:
    return arc


def _timed(fn: Callable[[], T]) -> tuple[int, T | None]:
    """(0, value) or (errno, None); ETIMEDOUT is how a hang shows (the vfio backend's watchdog)."""
    try:
        return 0, fn()
    except OSError as exc:
        return exc.errno or errno.EIO, None


def _hang_text(what: str) -> str:
    return (f"KERNEL BUG: {what} did not return (ETIMEDOUT); if an oops was logged, the task died "
            "holding the driver's state mutex (see the kernel messages); the device is lost until reboot")


@pytest.mark.rule("REOPEN.USABLE", "ARC.RESET", "RESET.ABORT_RESUMING", "RESUME.COMPATIBLE")
def test_close_data_fd(case: ReopenCase, dut: MigrationDevice, verdict: Verdict, session: Session,
                       request: pytest.FixtureRequest) -> None:
    """Closing a session's data fd mid-stream leaves the state as it was; reset and a migration work."""
    live = open_session(dut, case.flags, verdict, session, case.state)
    before = get_state(dut)
    for fd in live:
        fd.stream.close()
    err, after = _timed(lambda: get_state(dut))
    observed = _hang_text("GET") if err == errno.ETIMEDOUT else (
        f"GET failed with {errno_name(err)}" if err else f"GET reports {state_name(after or 0)}")
    verdict.check("REOPEN.USABLE", not err and after == before, expected=f"GET reports {state_name(before)}",
                  observed=observed, context=f"after closing the {live[0].kind} fd in {case.state.name}")
    if err:
        return
    session.close_all()
    why = f"closing the data fd in {case.state.name}"
    reset_out_of(dut, verdict, why)
    migrate_again(dut, case.flags, verdict, session, seed=61, why=f"a migration after {why}")


def _set_running(dut: MigrationDevice) -> tuple[int, int]:
    """(errno of SET RUNNING, the state GET then reports); (ETIMEDOUT, -1) when the SET hung: no GET."""
    try:
        stream = set_state(dut, S.RUNNING)
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:
            return errno.ETIMEDOUT, -1
        return exc.errno or errno.EIO, get_state(dut)
    if stream is not None:
        stream.close()
    return 0, get_state(dut)


def _leave(dut: MigrationDevice, state: int, contained: bool, verdict: Verdict, context: str,
           timeout: float) -> int | None:
    """SET RUNNING from the state the reopened device came back in; it must return (success or an errno).

    Leaving RESUMING: the session that fed it ended at the close (include/linux/vfio.h:192-194), so no
    complete stream was written; the request must return and fail (RESUME.FINAL_LOAD, vfio.h:1094: a request
    that never returns neither fails nor succeeds), and a success is the should of the final check
    (RESUME.FINAL_CHECK). Leaving another state: it must return (REOPEN.USABLE).

    On a real device in a hazard case the request runs in a forked child (vfio_mig_cts/judging/containment.py): a child
    that hangs, or whose task the kernel kills (mtty's oops), writes the device off. Returns the state
    GET reports afterwards, or None when the request did not return (the verdict has failed).
    """
    rule = "RESUME.FINAL_LOAD" if state == S.RESUMING else "REOPEN.USABLE"
    expected = ("SET RUNNING returns and fails (RESUMING was left with no complete stream: its session ended "
                "at the close)" if state == S.RESUMING else "SET RUNNING returns (success or an errno)")
    if contained:
        res = run_contained(lambda: _set_running(dut), timeout)
        if res.error:
            raise RuntimeError(f"contained request failed: {res.error}")
        err, after = res.value if res.value else (res.errno, -1)
        outcome = "" if res.answered and err != errno.ETIMEDOUT else (
            f"hung for {res.seconds:.1f} s" if res.hung else
            f"did not return: the process making it ended ({res.died}), as when the kernel oopses" if res.died
            else "did not return (ETIMEDOUT)")
        if outcome:
            if isinstance(dut, Losable):
                dut.mark_lost(f"SET {state_name(state)} -> RUNNING {outcome}")
            verdict.check(rule, False, expected=expected,
                          observed=_hang_text(f"SET {state_name(state)} -> RUNNING") + f" ({outcome})",
                          context=context + " (contained in a forked child: a hazard)")
            return None
    else:
        err, got = _timed(lambda: _set_running(dut))
        err, after = got if got is not None else (err, -1)
        hung = err == errno.ETIMEDOUT
        verdict.check(rule, not hung, expected=expected,
                      observed=_hang_text(f"SET {state_name(state)} -> RUNNING") if hung
                      else f"{errno_name(err)}, GET reports {state_name(after)}", context=context)
        if hung:
            return None
    if state == S.RESUMING:
        verdict.check("RESUME.FINAL_CHECK", err != 0, expected=expected,
                      observed=f"{errno_name(err)}, GET reports {state_name(after)}", context=context)
    return after


@pytest.mark.rule("REOPEN.USABLE", "REOPEN.DEAD_FDS", "ARC.RESET", "RESET.ABORT_RESUMING", "RESUME.COMPATIBLE",
                  "RESUME.FINAL_LOAD")
def test_reopen_device(case: ReopenCase, dut: MigrationDevice, verdict: Verdict, session: Session,
                       request: pytest.FixtureRequest) -> None:
    """Closing and reopening the device in a state (the data fd closed first, or kept): it comes back in a
    state the flags support, leaves it without hanging, resets to RUNNING and migrates; a kept fd is dead."""
    if not isinstance(dut, Reopen):
        pytest.skip(f"backend {backend_of(request.config).name} cannot close and reopen a device "
                    "(no Reopen capability)")
    flags = case.flags
    live = open_session(dut, flags, verdict, session, case.state)
    kept: list[Live] = []
    if case.mode == "data-fd+device":
        for fd in live:
            fd.stream.close()
    else:
        kept = live
    where = f"closed in {case.state.name} ({'data fd closed first' if case.mode != 'device' else 'data fd kept'})"
    err, _ = _timed(dut.reopen)
    got: int | None = None
    if not err:
        err, got = _timed(lambda: get_state(dut))
    allowed = {int(s) for s in model.supported_states(flags)} | {int(S.ERROR)}
    state = got if got is not None and not err else -1
    if err:
        observed = _hang_text("reopen/GET") if err == errno.ETIMEDOUT else f"reopen/GET failed with {errno_name(err)}"
    else:
        observed = f"GET reports {state_name(state)}"
        request.node.user_properties.append(("reopened-in", state_name(state)))
    verdict.check("REOPEN.USABLE", not err and state in allowed,
                  expected="the device opens and GET reports a state its flags support (or ERROR)",
                  observed=observed, context=f"device {where}, opened again")
    if err:
        return
    if state not in (S.RUNNING, S.ERROR):  # a SET from ERROR trips the core's WARN_ON: only reset leaves it
        context = f"device {where}, opened again in {state_name(state)}"
        left = _leave(dut, state, case.hazard and is_real(backend_of(request.config)), verdict, context,
                      request.config.getoption("hazard_timeout"))
        if left is None:
            return
    for fd in kept:
        check_dead(verdict, "REOPEN.DEAD_FDS", fd, f"device {where} and opened again")
    session.close_all()
    reset_out_of(dut, verdict, f"device {where} and opened again")
    migrate_again(dut, flags, verdict, session, seed=71, why=f"a migration after the device was {where}")
