"""VFIO_DEVICE_RESET from every state with a data session open: RUNNING, dead fds, a working device.

vfio.h: "To abort a RESUMING session the device must be reset."; "To recover from ERROR
VFIO_DEVICE_RESET must be used to return the device_state back to RUNNING." What a reset does to open
data fds is include/linux/vfio.h:192-194's: "The driver is responsible to ensure that FD reaches end of
stream or error whenever the migration FSM leaves a data transfer state" (RESET.DEAD_FDS, must). ERROR
is reached through the mock's fault hook only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fixtures.plugin import backend_of, feature_set_id
from vfio_mig_cts.backends.protocol import MigrationDevice
from vfio_mig_cts.judging.driving import Session
from vfio_mig_cts.judging.resume_cases import check_dead, migrate_again, open_session, reset_out_of
from vfio_mig_cts.judging.verdict import Verdict
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import State


@dataclass(frozen=True)
class ResetCase:
    flags: int
    state: State

    @property
    def id(self) -> str:
        return f"{feature_set_id(self.flags)}-{self.state.name}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrized as ``arc``: the plugin takes the feature set from ``arc.flags`` (see test_resume.py).
    if "arc" in metafunc.fixturenames:
        cases = [ResetCase(f, s) for f in backend_of(metafunc.config).feature_sets()
                 for s in model.reachable_states(f)]
        metafunc.parametrize("arc", cases, ids=[c.id for c in cases])


@pytest.fixture
def case(arc: ResetCase) -> ResetCase:
    return arc


@pytest.mark.rule("ARC.RESET", "RESET.ABORT_RESUMING", "RESET.DEAD_FDS", "RESUME.COMPATIBLE")
def test_reset_from(case: ResetCase, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """Reset in a state (its data session open mid-stream where it has one): GET reports RUNNING, the old
    fds yield and take nothing, and a full migration afterwards works."""
    live = open_session(dut, case.flags, verdict, session, case.state)
    why = f"reset in {case.state.name}" + (f" with the {live[0].kind} session open" if live else "")
    reset_out_of(dut, verdict, why)
    for fd in live:
        check_dead(verdict, "RESET.DEAD_FDS", fd, why)
    session.close_all()
    migrate_again(dut, case.flags, verdict, session, seed=51, why=f"a migration after the {why}")
