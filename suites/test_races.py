"""Races on one device: a reset against a state change, two readers on one saving fd, a state change
while a poll() waits, a second open while the device is in use.

Each race runs ``--race-repeat`` times; every racing call has ``--race-timeout`` seconds. The device
must end where the uAPI allows, no call may hang, and no data may come out of a session that ended.
On the mock the driver sleeps inside each arc and each read (``RaceWindow``), which widens the
windows the races aim at. Rules: vfio_mig_cts/spec/rulebook/concurrency.py; what the same device does without
a race is checked first with the other suites' rules, so a device that already fails that is blamed
for that, not for the race.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable

import pytest

from fixtures.plugin import backend_of, is_real, resume_target
from fixtures.stateful_options import RACE_TIMEOUT_MOCK, option
from vfio_mig_cts.backends.protocol import (
    POLLIN,
    DataStream,
    DeviceProfile,
    MigrationDevice,
    OpenAgain,
    RaceWindow,
    get_state,
    set_state,
)
from vfio_mig_cts.exploration.races import Ran, race, reraise, wait_done
from vfio_mig_cts.judging.checks import check_digest, check_loaded, check_stopcopy_read
from vfio_mig_cts.judging.driving import (
    Session,
    drain_in_group,
    judge_endless,
    load,
    open_session,
    reach,
    read_all,
    read_available,
    reset,
    step,
    stream_limit,
    walk,
)
from vfio_mig_cts.judging.resume_cases import Live, check_dead, reset_out_of
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import MigFlag, State, state_name

S = State
WINDOW = 0.0005  # seconds the mock's driver sleeps inside each arc and each read during these races


def _timeout(request: pytest.FixtureRequest) -> float:
    t = option(request.config, "race_timeout")
    if t is not None:
        return float(t)
    if is_real(backend_of(request.config)):
        return float(request.config.getoption("ioctl_timeout")) + 1.0
    return RACE_TIMEOUT_MOCK


def _repeat(request: pytest.FixtureRequest, share: int = 1) -> int:
    return max(1, int(option(request.config, "race_repeat")) // share)


@pytest.fixture
def racer(dut: MigrationDevice) -> MigrationDevice:
    """The device under test, with the mock's race window widened."""
    if isinstance(dut, RaceWindow):
        dut.widen_race_window(WINDOW)
    return dut


def _stuck(verdict: Verdict, ran: dict[str, Ran], timeout: float, what: str) -> bool:
    """Whether a call is still running past the timeout (CONC.NO_DEADLOCK); then wait a while longer
    for it, since the test cannot go on with the device while a call is stuck."""
    if all(r.done for r in ran.values()):
        reraise(ran)
        return False
    stuck = "; ".join(r.describe() for r in ran.values())
    verdict.check("CONC.NO_DEADLOCK", False, expected=f"every racing call returns within {timeout:g} s",
                  observed=stuck, context=what)
    if not wait_done(ran, 3 * timeout):
        pytest.fail(f"{what}: calls still stuck after {4 * timeout:g} s ({stuck}); the device is lost",
                    pytrace=False)
    return True


def _broke(verdict: Verdict, fn: Callable[[], None]) -> bool:
    """Run a check of what the device does without a race; whether it broke a rule (recorded)."""
    before = len(verdict.findings)
    fn()
    return len(verdict.findings) > before


def _baseline_dead_fds(dut: MigrationDevice, flags: int, verdict: Verdict, session: Session) -> bool:
    """Without a race: an arc that ends a session (a saving one, and a resuming one), and a reset, leave its
    fd dead (FD.ENDED, RESET.DEAD_FDS). Whether all hold, so that a live fd after a race is the race's doing."""
    walk(dut, flags, verdict, session, S.STOP, "baseline")
    first = open_session(dut, verdict, session, S.STOP_COPY, "baseline")
    step(dut, verdict, S.STOP, "baseline: STOP_COPY -> STOP ends the session")
    ended = _broke(verdict, lambda: check_dead(verdict, "FD.ENDED", Live("saving", first),
                                               "baseline (no race): after STOP_COPY -> STOP"))
    second = open_session(dut, verdict, session, S.STOP_COPY, "baseline")
    reset_out_of(dut, verdict, "baseline (no race)")
    by_reset = _broke(verdict, lambda: check_dead(verdict, "RESET.DEAD_FDS", Live("saving", second),
                                                  "baseline (no race): after VFIO_DEVICE_RESET in STOP_COPY"))
    session.close_all()
    reach(dut, flags, verdict, session, S.RESUMING)  # a complete stream written: leaving RESUMING loads it
    resuming = session.current
    assert resuming is not None
    step(dut, verdict, S.STOP, "baseline: RESUMING -> STOP ends the session")
    loaded = _broke(verdict, lambda: check_dead(verdict, "FD.ENDED", Live("resuming", resuming),
                                                "baseline (no race): after RESUMING -> STOP"))
    session.close_all()
    walk(dut, flags, verdict, session, S.RUNNING, "baseline done")
    return not (ended or by_reset or loaded)


# --- a reset racing a state change ---------------------------------------------------------------

def _enter(dut: MigrationDevice, flags: int, verdict: Verdict, session: Session, state: State) -> DataStream | None:
    """Bring a RUNNING device to ``state`` by legal arcs; the data fd of the session it has, if any."""
    source = {S.STOP_COPY: S.STOP, S.PRE_COPY: S.RUNNING}.get(state)
    if source is None:
        reach(dut, flags, verdict, session, state)
        return None
    walk(dut, flags, verdict, session, source, f"bringing the device to {state.name}")
    return open_session(dut, verdict, session, state, f"bringing the device to {state.name}")


def _reset_race_pairs(flags: int) -> list[tuple[State, State]]:
    pairs = [(S.RUNNING, S.STOP_COPY), (S.STOP, S.RESUMING), (S.STOP_COPY, S.RUNNING), (S.RUNNING, S.STOP)]
    if flags & MigFlag.PRE_COPY:
        pairs += [(S.RUNNING, S.PRE_COPY), (S.PRE_COPY, S.STOP_COPY), (S.PRE_COPY, S.STOP)]
    return pairs


@pytest.mark.rule("CONC.RESET_RACE", "CONC.DEAD_SESSION", "CONC.NO_DEADLOCK")
def test_reset_races_state_change(flags: int, racer: MigrationDevice, verdict: Verdict, session: Session,
                                  request: pytest.FixtureRequest) -> None:
    """VFIO_DEVICE_RESET from another thread while a SET walks its path: the device ends in RUNNING or the
    SET's target, and the fds of sessions the reset ended give no data."""
    dut, timeout = racer, _timeout(request)
    judge_fds = _baseline_dead_fds(dut, flags, verdict, session)
    rng = random.Random(0x5EED)
    pairs = _reset_race_pairs(flags)
    window = WINDOW if isinstance(dut, RaceWindow) else 0.0005
    for i in range(_repeat(request)):
        start, target = pairs[i % len(pairs)]
        old = _enter(dut, flags, verdict, session, start)
        arcs = len(model.plan(flags, start, target).arcs)
        delay = rng.uniform(0, window * (arcs + 1))
        what = f"race {i + 1}: SET {start.name} -> {target.name} ({arcs} arcs) against a reset after " \
               f"{delay * 1e3:.2f} ms"

        def delayed_reset(delay: float = delay) -> None:
            time.sleep(delay)
            dut.reset()

        ran = race({"SET": lambda t=target: set_state(dut, t), "reset": delayed_reset}, timeout)  # type: ignore[misc]
        if _stuck(verdict, ran, timeout, what):
            return
        stream: DataStream | None = ran["SET"].value
        session.keep(stream)
        after = get_state(dut)
        err = ran["SET"].err
        allowed = {S.RUNNING} | ({target} if not err else set())
        verdict.check("CONC.RESET_RACE", after in allowed,
                      expected=" or ".join(sorted(state_name(s) for s in allowed)),
                      observed=f"GET reports {state_name(after)} (SET {errno_name(err)}, reset "
                               f"{errno_name(ran['reset'].err)})", context=what)
        may_fd = model.plan(flags, start, target).new_fd or model.plan(flags, S.RUNNING, target).new_fd
        verdict.check("ARC.DATA_FD", stream is None or may_fd, expected="no data_fd", observed="a data_fd",
                      context=what)
        if judge_fds:
            dead = [("the session open before the race", old)]
            if after == S.RUNNING and stream is not None and target != S.RUNNING:
                dead.append((f"the session SET {target.name} started (the reset came last)", stream))
            for name, fd in dead:
                if fd is not None:
                    kind = "resuming" if fd is stream and target == S.RESUMING else "saving"
                    check_dead(verdict, "CONC.DEAD_SESSION", Live(kind, fd), f"{what}: {name}")
        session.close_all()
        reset_out_of(dut, verdict, f"after {what}")


# --- two readers on one saving fd ----------------------------------------------------------------

def _reader(stream: DataStream, chunk: int, limit: int) -> tuple[list[bytes], int]:
    """Read to the end: the pieces in the order read, and the errno that stopped it (0: end of stream;
    EFBIG: no end within ``limit`` bytes)."""
    pieces: list[bytes] = []
    total = 0
    while total <= limit:
        try:
            data = stream.read(chunk)
        except OSError as exc:
            return pieces, exc.errno or errno.EIO
        if not data:
            return pieces, 0
        pieces.append(data)
        total += len(data)
    return pieces, errno.EFBIG


def _reader_ended(verdict: Verdict, err: int, pieces: list[bytes], limit: int, context: str) -> None:
    """How a racing reader's stream ended: 0 (EOS.STOPCOPY_*), never an error nor past its limit."""
    if err == errno.EFBIG:
        judge_endless(verdict, limit, sum(len(p) for p in pieces), context)
    elif err:
        check_stopcopy_read(verdict, err, None, False, f"{context} after {len(pieces)} reads")


@pytest.mark.rule("CONC.SHARED_READS", "CONC.NO_DEADLOCK")
def test_two_readers_one_fd(flags: int, racer: MigrationDevice, verdict: Verdict, session: Session,
                            request: pytest.FixtureRequest) -> None:
    """Two threads read one STOP_COPY fd to its end: their pieces are disjoint parts of the one stream
    and add up to exactly what a single reader gets.

    No driver promises that two sessions save the same bytes, so the race's pieces are compared with a
    single reader's stream only where the device showed it: two single-reader sessions of the stopped
    device gave the same bytes (``saves-identical``). Otherwise only how each reader's stream ended is judged
    (the pieces of two readers cannot be put back in order without a reference)."""
    dut, timeout = racer, _timeout(request)
    limit = stream_limit(dut)
    walk(dut, flags, verdict, session, S.STOP, "two readers")
    refs = []
    for n in (1, 2):
        ref_stream = open_session(dut, verdict, session, S.STOP_COPY, f"reference stream {n}, one reader")
        refs.append(read_all(ref_stream, limit=limit, verdict=verdict, context=f"reference stream {n}"))
        step(dut, verdict, S.STOP, "ending the reference session")
    ref = refs[0] if refs[0] == refs[1] else None
    request.node.user_properties.append(
        ("saves-identical", "yes" if ref is not None else
         f"no ({len(refs[0])} and {len(refs[1])} bytes): the race's pieces are not compared, only its ends"))
    for i in range(_repeat(request, 2)):
        stream = open_session(dut, verdict, session, S.STOP_COPY, "two readers")
        what = f"race {i + 1}: two threads reading one STOP_COPY fd in 16- and 24-byte reads"
        ran = race({"reader A": lambda s=stream: _reader(s, 16, limit),  # type: ignore[misc]
                    "reader B": lambda s=stream: _reader(s, 24, limit)}, timeout)  # type: ignore[misc]
        if _stuck(verdict, ran, timeout, what):
            return
        got: list[bytes] = []
        for r in ran.values():
            pieces, err = r.value
            got += pieces
            _reader_ended(verdict, err, pieces, limit, f"{what}: {r.name}")
        if ref is not None:
            joined = b"".join(got)
            strays = [p for p in got if p not in ref]
            same = len(joined) == len(ref) and sorted(joined) == sorted(ref) and not strays
            verdict.check("CONC.SHARED_READS", same,
                          expected=f"pieces that together are the {len(ref)}-byte stream one reader gets "
                                   "(this device saved the same bytes in two sessions)",
                          observed=f"{len(got)} pieces, {len(joined)} bytes"
                                   + (f", {len(strays)} not in the stream" if strays else "")
                                   + ("" if sorted(joined) == sorted(ref) else ", not the stream's bytes"),
                          context=what)
        step(dut, verdict, S.STOP, "ending the session")
        session.close_all()


# --- a state change while poll() waits -----------------------------------------------------------

@pytest.mark.rule("CONC.POLL_WAKE", "CONC.NO_DEADLOCK")
def test_poll_wakes_on_state_change(flags: int, racer: MigrationDevice, verdict: Verdict, session: Session,
                                    request: pytest.FixtureRequest) -> None:
    """poll() waits on a PRE_COPY fd at its temporary end of stream; another thread moves the device to
    STOP_COPY: the poll returns readable then, not at its timeout."""
    if not flags & MigFlag.PRE_COPY:
        pytest.skip("needs VFIO_MIGRATION_PRE_COPY (a temporary end of stream to wait at)")
    dut, timeout = racer, _timeout(request)
    blocked = 0
    for i in range(_repeat(request, 4)):
        reach(dut, flags, verdict, session, S.RUNNING)
        stream = open_session(dut, verdict, session, S.PRE_COPY, "a precopy session to poll")
        read_available(stream, limit=stream_limit(dut))
        if stream.poll(POLLIN, 0) & POLLIN:
            pytest.skip("poll() does not wait at PRE_COPY's temporary end of stream on this driver "
                        "(it reports readable at once), so there is nothing to race")
        what = f"race {i + 1}: poll() on the PRE_COPY fd at its temporary end, SET -> STOP_COPY from another thread"
        moved: list[float] = []

        def move(moved: list[float] = moved) -> None:
            time.sleep(0.01)
            moved.append(time.monotonic())
            walk(dut, flags, verdict, session, S.STOP_COPY, "moving on while poll() waits")
            moved.append(time.monotonic())

        ran = race({"poll": lambda s=stream: s.poll(POLLIN, int(timeout * 1000)), "SET": move},  # type: ignore[misc]
                   timeout + 0.5)
        if _stuck(verdict, ran, timeout + 0.5, what):
            return
        poll = ran["poll"]
        # the fd streams on in STOP_COPY (FD.SAVING_GROUP, EOS)
        data = drain_in_group(stream, verdict, limit=stream_limit(dut))
        assert poll.ended is not None
        if len(moved) < 2 or poll.ended < moved[0]:
            session.close_all()
            reset_out_of(dut, verdict, "between races")
            continue  # poll() did not wait: nothing raced (mtty's data fds have no .poll)
        blocked += 1
        revents = int(poll.value or 0)
        late = poll.ended - moved[1]
        waited = poll.ended - poll.started
        # the bound is the poll's own timeout: a poll that returns only then was not woken
        verdict.check("CONC.POLL_WAKE", bool(revents & POLLIN) and waited < timeout,
                      expected=f"poll() woken with POLLIN by the move to STOP_COPY, before its own {timeout:g} s "
                               "timeout",
                      observed=f"revents {revents:#x} after {waited:.3f} s, {max(late, 0) * 1e3:.0f} ms after the "
                               f"SET returned; then {len(data)} bytes read",
                      context=what)
        session.close_all()
        reset_out_of(dut, verdict, "between races")
    if not blocked:
        pytest.skip(f"poll() on {dut.driver}'s PRE_COPY fd returns at once at the temporary end of stream: "
                    "there is no wait to race")


# --- a second open while the device is in use ----------------------------------------------------

@pytest.mark.rule("CONC.SECOND_OPEN", "CONC.NO_DEADLOCK", "RESUME.COMPATIBLE", "STREAM.ROUND_TRIP")
def test_second_open_while_in_use(flags: int, racer: MigrationDevice, verdict: Verdict, session: Session,
                                  request: pytest.FixtureRequest) -> None:
    """While one thread reads the STOP_COPY fd, another opens the device again, asks GET, and closes that
    open: the first user's state and session are untouched (or the second open is refused).

    Each session's stream is judged on its own (no driver promises two sessions save the same bytes): it
    ends with 0, loads on a compatible device and restores the source's state, as a session without a
    second open does (checked first, under RESUME.COMPATIBLE and STREAM.ROUND_TRIP)."""
    dut, timeout = racer, _timeout(request)
    if not isinstance(dut, OpenAgain):
        pytest.skip(f"the backend cannot open {dut.name} a second time (no OpenAgain)")
    opener: OpenAgain = dut
    limit = stream_limit(dut)
    walk(dut, flags, verdict, session, S.STOP, "")
    want = dut.state_digest() if isinstance(dut, DeviceProfile) else None
    ref_stream = open_session(dut, verdict, session, S.STOP_COPY, "a reference stream")
    ref = read_all(ref_stream, limit=limit, verdict=verdict, pieces=(16,),
                   context="the reference stream, in 16-byte reads")
    step(dut, verdict, S.STOP, "")
    raced: list[tuple[str, bytes]] = []
    for i in range(_repeat(request, 4)):
        stream = open_session(dut, verdict, session, S.STOP_COPY, "a session in use")
        head = stream.read(16)
        what = f"race {i + 1}: a second open of {dut.name} while its STOP_COPY fd is read"

        def second() -> str:
            other = opener.open_again()
            try:
                return state_name(get_state(other))
            finally:
                other.close()

        ran = race({"reader": lambda s=stream: _reader(s, 16, limit),  # type: ignore[misc]
                    "second open": second}, timeout)
        if _stuck(verdict, ran, timeout, what):
            return
        pieces, err = ran["reader"].value
        now = get_state(dut)
        refused = ran["second open"].err != 0
        seen = f"refused ({errno_name(ran['second open'].err)})" if refused \
            else f"GET reports {ran['second open'].value}"
        verdict.check("CONC.SECOND_OPEN", now == S.STOP_COPY and (refused or ran["second open"].value == "STOP_COPY"),
                      expected="GET reports STOP_COPY on both opens (or the second open is refused)",
                      observed=f"the first open's GET reports {state_name(now)}; the second open: {seen}",
                      context=what)
        verdict.check("CONC.SECOND_OPEN", not err,
                      expected="the session's fd streams to its end (read() returns 0)",
                      observed=f"{len(head) + sum(len(p) for p in pieces)} bytes, then {errno_name(err)}",
                      context=what)
        raced.append((what, head + b"".join(pieces)))
        step(dut, verdict, S.STOP, "ending the session")
        session.close_all()
    dest = resume_target(request, dut, flags, verdict)
    for n, (what, data) in enumerate([("the reference session (no second open)", ref), *raced]):
        load_rule, state_rule = ("CONC.SECOND_OPEN",) * 2 if n else ("RESUME.COMPATIBLE", "STREAM.ROUND_TRIP")
        res = load(dest, flags, verdict, session, data)
        check_loaded(verdict, load_rule, res, f"loading the {len(data)}-byte stream of {what}")
        if want is not None and isinstance(dest, DeviceProfile):
            check_digest(verdict, want, dest.state_digest(), f"after loading the stream of {what}", rule=state_rule)
        session.close_all()
        reset(dest, verdict, "between loads")
