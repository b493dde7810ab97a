"""Every state arc: each reachable from-state x the 8 states and two out-of-range values, per feature set.

Judged against the reference model of ``vfio_mig_get_next_state()`` (vfio_mig_cts/spec/model.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fixtures.plugin import backend_of, feature_set_id
from vfio_mig_cts.backends.protocol import (
    ArcTrace,
    Backend,
    ErrorInjection,
    Hazard,
    KernelLog,
    MigrationDevice,
    flags_name,
    get_state,
    get_state_fd,
)
from vfio_mig_cts.judging.checks import judge_set
from vfio_mig_cts.judging.containment import run_contained
from vfio_mig_cts.judging.driving import Session, reach, reset, set_and_get
from vfio_mig_cts.judging.verdict import Verdict
from vfio_mig_cts.reports.record import Case
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import State, state_name

OUT_OF_RANGE = (8, 0xFFFFFFFF)


@dataclass(frozen=True)
class ArcCase:
    flags: int
    frm: State
    to: int

    @property
    def id(self) -> str:
        return f"{feature_set_id(self.flags)}-{self.frm.name}->{state_name(self.to)}"

    def as_case(self) -> Case:
        """The arc as the report's data (the matrix's row and column)."""
        return Case(from_state=self.frm.name, to_state=state_name(self.to))

    @property
    def blocked(self) -> bool:
        return self.frm == State.STOP_COPY and self.to in (State.PRE_COPY, State.PRE_COPY_P2P) \
            and model.supports(self.flags, self.to)

    @property
    def from_error(self) -> bool:
        return self.frm == State.ERROR and self.to != State.ERROR

    def hazard_marks(self) -> list[pytest.MarkDecorator]:
        """The request is known to hang or crash some kernels (fixtures/hazards.py decides where it runs)."""
        if self.blocked:
            return [pytest.mark.hazard(f"{self.id} spins forever on kernels without 'vfio: prevent infinite loop "
                                       "in vfio_mig_get_next_state() on blocked arc'", kind=Hazard.BLOCKED_ARC)]
        if self.from_error:
            return [pytest.mark.hazard(f"{self.id} trips the core's WARN_ON (fatal under panic_on_warn)",
                                       kind=Hazard.SET_FROM_ERROR)]
        return []


def arc_cases(backend: Backend) -> list[ArcCase]:
    return [ArcCase(f, frm, to)
            for f in backend.feature_sets()
            for frm in model.reachable_states(f)
            for to in (*(int(s) for s in State), *OUT_OF_RANGE)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "arc" in metafunc.fixturenames:
        cases = arc_cases(backend_of(metafunc.config))
        params = [pytest.param(c, id=c.id, marks=c.hazard_marks()) for c in cases]
        metafunc.parametrize("arc", params)


@pytest.mark.rule("ARC.TRANSITION", "ARC.DATA_FD")
def test_arc(arc: ArcCase, dut: MigrationDevice, verdict: Verdict, session: Session,
             request: pytest.FixtureRequest) -> None:
    """A SET from every reachable state to every value: success, state, data_fd and path per the model."""
    try:
        _run_arc(arc, dut, verdict, session, request)
    finally:
        if isinstance(dut, KernelLog) and arc.from_error:
            dut.take_kernel_messages()  # the WARN a SET from ERROR trips is this case's known effect


def _run_arc(arc: ArcCase, dut: MigrationDevice, verdict: Verdict, session: Session,
             request: pytest.FixtureRequest) -> None:
    backend = backend_of(request.config)
    profile = backend.kernel_profile()
    flags = arc.flags
    reach(dut, flags, verdict, session, arc.frm)
    if isinstance(dut, ArcTrace):
        dut.take_arcs()
    p = model.plan(flags, arc.frm, arc.to)
    request_text = (f"request: SET {arc.frm.name} -> {state_name(arc.to)} (flags {flags_name(flags)})\n"
                    f"model path: {p.describe()}")

    if arc.blocked:
        timeout = request.config.getoption("hazard_timeout")
        res = run_contained(lambda: set_and_get(dut, arc.to), timeout)
        if res.hung:
            if not profile.blocked_arc_fix:
                pytest.xfail(f"KERNEL BUG (core): SET {arc.id} hung for {res.seconds:.1f} s: this kernel lacks "
                             "'vfio: prevent infinite loop in vfio_mig_get_next_state() on blocked arc'; "
                             "the device is lost until reboot")
            verdict.check("ARC.BLOCKED", False, expected="the request fails within the timeout",
                          observed=f"the ioctl hung for {res.seconds:.1f} s (driver hang; the kernel "
                                   "profile says the core has the fix)", context=request_text)
        if res.error:
            raise RuntimeError(f"contained request failed: {res.error}")
        err, got_fd, after = res.value if res.value else (res.errno, False, get_state(dut))
    else:
        err, got_fd, after = set_and_get(dut, arc.to)
    trace = dut.take_arcs() if isinstance(dut, ArcTrace) and not arc.blocked else None
    judge_set(verdict, flags, arc.frm, arc.to, err, got_fd, after, f"flags {flags_name(flags)}", trace)


@pytest.mark.rule("ARC.GET_FD", "ARC.NO_ASYNC")
def test_get_reports_no_fd_and_stays(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """GET returns data_fd -1, and the state does not change between GETs with nothing in between."""
    for target in model.supported_states(flags):
        if target == State.RESUMING:
            continue
        reach(dut, flags, verdict, session, target)
        state, fd = get_state_fd(dut)
        verdict.check("ARC.GET_FD", fd == -1, expected="data_fd -1", observed=f"data_fd {fd}",
                      context=f"GET in {state_name(state)}")
        again = [get_state(dut) for _ in range(3)]
        verdict.check("ARC.NO_ASYNC", all(s == target for s in again),
                      expected=f"GET reports {target.name} three times",
                      observed=f"GET reports {', '.join(state_name(s) for s in again)}",
                      context=f"repeated GET after reaching {target.name}")
        session.close_all()
        reset(dut, verdict, "between states")


@pytest.mark.rule("ARC.RESET")
def test_reset_returns_to_running(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """VFIO_DEVICE_RESET from every reachable state (ERROR where the backend can reach it) gives RUNNING."""
    targets = [s for s in model.reachable_states(flags) if s != State.ERROR or isinstance(dut, ErrorInjection)]
    for target in targets:
        reach(dut, flags, verdict, session, target)
        reset(dut, verdict, "reset from every state")
        session.close_all()
