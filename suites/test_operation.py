"""What the arcs do to the device itself: STOP keeps its internal state, RUNNING operates, the saving
arcs leave its operation as it was; RUNNING and ERROR are always supported.

The first three need a device profile (``DeviceProfile``: change the device as a guest would, compare its
state): without one they skip, saying so. Rules: vfio_mig_cts/spec/rulebook/operation.py.
"""

from __future__ import annotations

import time

import pytest

from vfio_mig_cts.backends.protocol import (
    DeviceProfile,
    ErrorInjection,
    MigrationDevice,
    data_size,
    get_state,
    migration_flags,
)
from vfio_mig_cts.judging.driving import Session, reach, read_all, reset, save, set_and_get, step, stream_limit, walk
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import MigFlag, State, state_name

S = State
STOP_PAUSE = 0.05  # seconds the stopped device is left alone between two digests


def _profile(dut: MigrationDevice) -> DeviceProfile:
    if not isinstance(dut, DeviceProfile):
        pytest.skip(f"no device profile for driver {dut.driver}: cannot change the device or compare its state")
    return dut


def _operates(dev: DeviceProfile, seed: int) -> bool:
    """Whether what a guest does (the profile's ``dirty``) changes the device's state now."""
    before = dev.state_digest()
    dev.dirty(seed)
    return dev.state_digest() != before


@pytest.mark.rule("STATE.STOP_UNCHANGED")
def test_stop_keeps_state(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """In STOP the device's state digest stays the same: across GETs, MIG_DATA_SIZE, a pause, and a save
    (STOP -> STOP_COPY, read to the end, -> STOP; STOP_COPY behaves as STOP)."""
    dev = _profile(dut)
    dev.dirty(81)
    walk(dut, flags, verdict, session, S.STOP, "stopping the device")
    want = dev.state_digest()

    def same(what: str) -> None:
        got = dev.state_digest()
        verdict.check("STATE.STOP_UNCHANGED", got == want, expected=f"state digest {want.hex()[:16]} (at STOP)",
                      observed=f"state digest {got.hex()[:16]}", context=f"in {state_name(get_state(dut))}, {what}")

    for _ in range(3):
        get_state(dut)
    try:
        data_size(dut)
    except OSError:
        pass  # SIZE.ANY_STATE's business
    time.sleep(STOP_PAUSE)
    same(f"after three GETs, a MIG_DATA_SIZE and {STOP_PAUSE:g} s")
    stream = step(dut, verdict, S.STOP_COPY, "saving the stopped device")
    session.keep(stream)
    same("after STOP -> STOP_COPY")
    if stream is not None:
        read_all(stream, limit=stream_limit(dut), verdict=verdict)
        same("after reading the stream to its end")
    step(dut, verdict, S.STOP, "ending the save")
    same("after STOP_COPY -> STOP")


def _ways_into_running(flags: int) -> list[tuple[str, State]]:
    """(how, the state the device is in before the arc into RUNNING)."""
    ways = [("STOP -> RUNNING", S.STOP)]
    if flags & MigFlag.P2P:
        ways.append(("RUNNING_P2P -> RUNNING", S.RUNNING_P2P))
    if flags & MigFlag.PRE_COPY:
        ways.append(("PRE_COPY -> RUNNING", S.PRE_COPY))
    ways.append(("RESUMING -> RUNNING (after a resume)", S.RESUMING))
    return ways


@pytest.mark.rule("STATE.RUNNING_OPERATES")
def test_running_operates(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """However the device got to RUNNING (opened, or by each arc into it), what a guest does changes its state."""
    dev = _profile(dut)
    ways = [("opened (RUNNING from the start)", S.RUNNING), *_ways_into_running(flags)]
    for n, (how, before) in enumerate(ways):
        reach(dut, flags, verdict, session, before)
        if before != S.RUNNING:
            walk(dut, flags, verdict, session, S.RUNNING, f"into RUNNING: {how}")
        verdict.check("STATE.RUNNING_OPERATES", _operates(dev, 90 + n),
                      expected="the device state changes when a guest uses the device",
                      observed="the state digest stayed the same", context=f"in RUNNING, reached by {how}")
        session.close_all()
        reset(dut, verdict, "between ways into RUNNING")


@pytest.mark.rule("STATE.SAVING_KEEPS_OPERATION")
def test_saving_arcs_keep_operation(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """RUNNING -> PRE_COPY and RUNNING_P2P -> PRE_COPY_P2P leave the device operating as it did before the
    arc; STOP -> STOP_COPY leaves it stopped (its state does not change)."""
    dev = _profile(dut)
    arcs = [(a, b) for a, b in ((S.RUNNING, S.PRE_COPY), (S.RUNNING_P2P, S.PRE_COPY_P2P))
            if model.supports(flags, a) and model.supports(flags, b)]
    for n, (frm, to) in enumerate(arcs):
        reach(dut, flags, verdict, session, frm)
        before = _operates(dev, 100 + 2 * n)
        session.keep(step(dut, verdict, to, f"{frm.name} -> {to.name}"))
        after = _operates(dev, 101 + 2 * n)
        verdict.check("STATE.SAVING_KEEPS_OPERATION", after == before,
                      expected=f"the device operates in {to.name} as in {frm.name} "
                               f"({'its state changes' if before else 'its state does not change'} when used)",
                      observed=f"in {to.name} its state {'changes' if after else 'does not change'} when used",
                      context=f"the arc {frm.name} -> {to.name}")
        session.close_all()
        reset(dut, verdict, "between arcs")
    walk(dut, flags, verdict, session, S.STOP, "stopping the device")
    want = dev.state_digest()
    session.keep(step(dut, verdict, S.STOP_COPY, "STOP -> STOP_COPY"))
    got = dev.state_digest()
    verdict.check("STATE.SAVING_KEEPS_OPERATION", got == want, expected=f"state digest {want.hex()[:16]} (in STOP)",
                  observed=f"state digest {got.hex()[:16]}", context="after the arc STOP -> STOP_COPY")


@pytest.mark.rule("MIG.ALWAYS_SUPPORTED")
def test_running_and_error_supported(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """RUNNING is a target from every supported state, whatever the flags; ERROR, where the backend can put
    the device there, is reported as ERROR and left by VFIO_DEVICE_RESET."""
    advertised = migration_flags(dut)
    for state in model.supported_states(flags):
        if state == S.RUNNING:
            continue
        reach(dut, flags, verdict, session, state)
        err, _, after = set_and_get(dut, S.RUNNING)
        verdict.check("MIG.ALWAYS_SUPPORTED", err == 0 and after == S.RUNNING,
                      expected="success, GET reports RUNNING", observed=f"{errno_name(err)}, GET reports "
                      f"{state_name(after)}", context=f"SET {state.name} -> RUNNING (MIGRATION flags {advertised:#x})")
        session.close_all()
        reset(dut, verdict, "between states")
    if isinstance(dut, ErrorInjection):
        save(dut, flags, verdict, session)  # a device that has migrated once, then fails
        dut.inject_error()
        now = get_state(dut)
        verdict.check("MIG.ALWAYS_SUPPORTED", now == S.ERROR, expected="GET reports ERROR",
                      observed=f"GET reports {state_name(now)}", context="after the device failed (the mock's hook)")
        reset(dut, verdict, "leaving ERROR")
