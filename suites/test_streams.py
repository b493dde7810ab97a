"""Migration data streams: STOP_COPY's end of stream, the data_fd lifecycle, MIG_DATA_SIZE, stream
integrity and round trips, the sequence QEMU drives, and PRE_COPY as an option.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import pytest

from fixtures.plugin import resume_target
from vfio_mig_cts.backends.protocol import (
    POLLIN,
    DataStream,
    DeviceProfile,
    MigrationDevice,
    data_size,
    get_state,
    set_state,
)
from vfio_mig_cts.judging.checks import (
    check_data_size,
    check_digest,
    check_direction,
    check_loaded,
    check_no_seek,
    check_saving_group_read,
    check_stopcopy_read,
)
from vfio_mig_cts.judging.driving import (
    SMALL_READ_SPAN,
    Session,
    drain_in_group,
    load,
    open_session,
    reach,
    read_all,
    read_available,
    reset,
    save,
    save_with_precopy,
    step,
    stream_limit,
    walk,
    write_all,
)
from vfio_mig_cts.judging.resume_cases import Live, check_dead
from vfio_mig_cts.judging.resume_cases import open_session as open_live
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import MigFlag, State, state_name

S = State


T = TypeVar("T")


def _errno(fn: Callable[[], T]) -> tuple[int, T | None]:
    """Call ``fn``: (0, its value), or (errno, None) when it raised OSError."""
    try:
        return 0, fn()
    except OSError as exc:
        return exc.errno or 0, None


# --- STOP_COPY's permanent end of stream ---------------------------------------------------------

@pytest.mark.rule("EOS.STOPCOPY_ZERO", "EOS.STOPCOPY_NO_ENOMSG", "EOS.STOPCOPY_POLL")
def test_stopcopy_end_of_stream(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """At STOP_COPY's end read() returns 0, again and again, never ENOMSG; poll reports readable."""
    routes = [("STOP -> STOP_COPY", S.STOP)]
    if flags & MigFlag.PRE_COPY:
        routes.append(("PRE_COPY -> STOP_COPY", S.PRE_COPY))
    for route, start in routes:
        reach(dut, flags, verdict, session, S.RUNNING if start == S.PRE_COPY else S.STOP)
        stream = open_session(dut, verdict, session, start if start == S.PRE_COPY else S.STOP_COPY, route)
        walk(dut, flags, verdict, session, S.STOP_COPY, route)
        if start == S.PRE_COPY:
            drain_in_group(stream, verdict, limit=stream_limit(dut))
        else:
            read_all(stream, limit=stream_limit(dut), verdict=verdict, context=route)
        for attempt in range(1, 4):
            err, data = _errno(lambda s=stream: s.read(4096))  # type: ignore[misc]
            check_stopcopy_read(verdict, err, data, ended=True,
                                context=f"read() number {attempt} after the end, STOP_COPY reached by {route}")
        revents = stream.poll(POLLIN, 0)
        verdict.check("EOS.STOPCOPY_POLL", bool(revents & POLLIN), expected="poll() reports POLLIN",
                      observed=f"revents {revents:#x}", context=f"at the end of stream, {route}")
        session.close_all()
        reset(dut, verdict, "between routes")


# --- the data_fd lifecycle -----------------------------------------------------------------------

@pytest.mark.rule("FD.SAVING_GROUP", "RESUME.COMPATIBLE")
def test_saving_group_keeps_one_fd(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session,
                                   request: pytest.FixtureRequest) -> None:
    """PRE_COPY <-> PRE_COPY_P2P -> STOP_COPY keep the session's fd, which streams a complete stream."""
    if not flags & MigFlag.PRE_COPY:
        pytest.skip("the saving group has one state without VFIO_MIGRATION_PRE_COPY")
    reach(dut, flags, verdict, session, S.RUNNING)
    stream = open_session(dut, verdict, session, S.PRE_COPY, "starting the session")
    moves = [S.PRE_COPY_P2P, S.PRE_COPY, S.PRE_COPY_P2P, S.STOP_COPY] if flags & MigFlag.P2P else [S.STOP_COPY]
    limit = stream_limit(dut)
    data = bytearray()
    for nxt in moves:
        err, chunk = _errno(lambda: read_available(stream, 4096, limit))
        check_saving_group_read(verdict, err, f"reading in {state_name(get_state(dut))}")
        data += chunk or b""
        new_fd = step(dut, verdict, nxt, "moving within the saving group")
        verdict.check("ARC.DATA_FD", new_fd is None, expected="no new data_fd inside the saving group",
                      observed="a new data_fd", context=f"-> {nxt.name}")
    data += drain_in_group(stream, verdict, limit=limit)
    step(dut, verdict, S.STOP, "ending the session")
    control = save(dut, flags, verdict, session)  # a stream saved without moving within the group
    dest = resume_target(request, dut, flags, verdict)
    res = load(dest, flags, verdict, session, control)
    check_loaded(verdict, "RESUME.COMPATIBLE", res, f"loading the {len(control)} bytes of a plain STOP_COPY save "
                 "(the control: a device that cannot load that is not blamed for the saving group)")
    session.close_all()
    reset(dest, verdict, "between loads")
    res = load(dest, flags, verdict, session, bytes(data))
    check_loaded(verdict, "FD.SAVING_GROUP", res, f"loading the {len(data)} bytes read across the group")


END_ARCS = {  # the arc that ends a session, from the state it starts in
    "STOP_COPY->STOP": (S.STOP_COPY, S.STOP, 0),
    "PRE_COPY->RUNNING": (S.PRE_COPY, S.RUNNING, MigFlag.PRE_COPY),
    "PRE_COPY_P2P->RUNNING_P2P": (S.PRE_COPY_P2P, S.RUNNING_P2P, MigFlag.PRE_COPY | MigFlag.P2P),
    "RESUMING->STOP": (S.RESUMING, S.STOP, 0),
}


@pytest.mark.rule("FD.ENDED")
@pytest.mark.parametrize("end", sorted(END_ARCS))
def test_ended_session_fd_yields_nothing(flags: int, end: str, dut: MigrationDevice, verdict: Verdict,
                                         session: Session) -> None:
    """After the arc that ends its session, and again once the reverse arc started a new session, the old
    fd is at end of stream or error for every operation: read, poll, GET_PRECOPY_INFO (a saving fd) or
    write (a resuming fd)."""
    start, after, needs = END_ARCS[end]
    if flags & needs != needs:
        pytest.skip(f"{end} needs {MigFlag(needs)!r}")
    if start == S.RESUMING:
        reach(dut, flags, verdict, session, start)  # a complete stream written, so that leaving RESUMING loads
        stream = session.current
        verdict.check("ARC.DATA_FD", stream is not None, expected="a data_fd from STOP -> RESUMING",
                      observed="none", context="setup: starting a resume session")
        assert stream is not None
        old = Live("resuming", stream)
    else:
        old = open_live(dut, flags, verdict, session, start)[0]
    step(dut, verdict, after, f"ending the session with {end}")
    check_dead(verdict, "FD.ENDED", old, f"after {end}")
    new = step(dut, verdict, start, f"a new session: {after.name} -> {start.name}")
    session.keep(new)
    check_dead(verdict, "FD.ENDED", old, f"after {end}, with a new session open ({after.name} -> {start.name})")


@pytest.mark.rule("FD.DIRECTION")
def test_fd_direction(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """A saving fd cannot be written and a resuming fd cannot be read: EBADF."""
    data = save(dut, flags, verdict, session)
    walk(dut, flags, verdict, session, S.STOP, "")
    saving = open_session(dut, verdict, session, S.STOP_COPY, "a saving fd")
    err, _ = _errno(lambda: saving.write(b"x"))
    check_direction(verdict, err, "write() on a saving fd")
    step(dut, verdict, S.STOP, "")
    resuming = open_session(dut, verdict, session, S.RESUMING, "a resuming fd")
    err, _ = _errno(lambda: resuming.read(16))
    check_direction(verdict, err, "read() on a resuming fd")
    resuming.write(data)


@pytest.mark.rule("FD.NO_SEEK")
def test_fd_not_seekable(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """Data fds are streams: lseek, pread and pwrite give ESPIPE."""
    data = save(dut, flags, verdict, session)
    saving = open_session(dut, verdict, session, S.STOP_COPY, "a saving fd")
    for what, op in (("lseek", lambda: saving.lseek(0, os.SEEK_SET)), ("pread", lambda: saving.pread(8, 0))):
        err, _ = _errno(op)
        check_no_seek(verdict, err, f"{what} on a saving fd")
    step(dut, verdict, S.STOP, "")
    resuming = open_session(dut, verdict, session, S.RESUMING, "a resuming fd")
    err, _ = _errno(lambda: resuming.pwrite(data[:8], 0))
    check_no_seek(verdict, err, "pwrite on a resuming fd")
    resuming.write(data)


@pytest.mark.rule("ARC.TRANSITION", "RESUME.COMPATIBLE")
def test_closing_fds_early(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session,
                           request: pytest.FixtureRequest) -> None:
    """Closing a data fd before its session ends breaks nothing: the next arcs and a full migration work."""
    reach(dut, flags, verdict, session, S.STOP_COPY)
    session.close_all()
    step(dut, verdict, S.STOP, "after closing the STOP_COPY fd unread")
    if flags & MigFlag.PRE_COPY:
        reach(dut, flags, verdict, session, S.RUNNING)
        step(dut, verdict, S.PRE_COPY, "")
        session.close_all()
        step(dut, verdict, S.RUNNING, "after closing the PRE_COPY fd unread")
    data = save(dut, flags, verdict, session)
    dest = resume_target(request, dut, flags, verdict)
    res = load(dest, flags, verdict, session, data)
    check_loaded(verdict, "RESUME.COMPATIBLE", res, expected="a full migration afterwards loads")


# --- MIG_DATA_SIZE -------------------------------------------------------------------------------

@pytest.mark.rule("SIZE.ANY_STATE")
def test_data_size_in_every_state(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session) -> None:
    """GET MIG_DATA_SIZE succeeds in every reachable state."""
    for state in model.supported_states(flags):
        reach(dut, flags, verdict, session, state)
        err, _ = _errno(lambda: data_size(dut))
        check_data_size(verdict, err, state)
        session.close_all()
        reset(dut, verdict, "between states")


@pytest.mark.rule("SIZE.ESTIMATE")
def test_data_size_estimate(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session,
                            request: pytest.FixtureRequest) -> None:
    """The estimate is non-zero where STOP_COPY produces data. The header gives an estimate no bound (pds
    always reports 64 KiB, hisi_acc the size of a full VF state): how far it is from the stream is
    recorded as information (``data-size-estimate``), not judged."""
    walk(dut, flags, verdict, session, S.STOP, "")
    estimate = data_size(dut)
    actual = len(save(dut, flags, verdict, session))
    request.node.user_properties.append(
        ("data-size-estimate", f"stop_copy_length {estimate}, STOP_COPY produced {actual} bytes (information)"))
    verdict.check("SIZE.ESTIMATE", estimate > 0 or actual == 0,
                  expected=f"a non-zero estimate (STOP_COPY then produced {actual} bytes)",
                  observed=f"stop_copy_length {estimate}")


# --- integrity and round trips -------------------------------------------------------------------

READ_PATTERNS = {  # read() sizes, cycled over the first SMALL_READ_SPAN bytes (1 MiB reads after that)
    "1MiB": (1 << 20,), "4096": (4096,), "7": (7,), "1": (1,), "mixed": (1, 7, 16, 4096, 3),
}


@pytest.mark.rule("STREAM.READ_CHUNKING", "RESUME.COMPATIBLE", "STREAM.ROUND_TRIP")
def test_read_sizes_do_not_change_the_stream(flags: int, dut: MigrationDevice, verdict: Verdict,
                                             session: Session, request: pytest.FixtureRequest) -> None:
    """A stopped device saved once per read pattern (1 MiB, 4096, 7 and 1 bytes, and sizes mixed): each
    session's stream, on its own, loads on a compatible device and restores the source's state, as the
    stream read in 1 MiB pieces does. No two sessions' bytes are compared: no driver promises to save
    the same bytes twice."""
    if isinstance(dut, DeviceProfile):
        dut.dirty(5)
    walk(dut, flags, verdict, session, S.STOP, "")
    want = dut.state_digest() if isinstance(dut, DeviceProfile) else None
    limit = stream_limit(dut)
    streams = {}
    for name, sizes in READ_PATTERNS.items():
        stream = open_session(dut, verdict, session, S.STOP_COPY, f"saving with {name}-byte reads")
        streams[name] = read_all(stream, limit=limit, verdict=verdict, pieces=sizes,
                                 context=f"saving with {name}-byte reads")
        step(dut, verdict, S.STOP, "")
    session.close_all()
    dest = resume_target(request, dut, flags, verdict)
    for name, data in streams.items():
        # the 1 MiB reads first: a device that cannot load that is blamed for it, not for read sizes
        load_rule, state_rule = (("RESUME.COMPATIBLE", "STREAM.ROUND_TRIP") if name == "1MiB"
                                 else ("STREAM.READ_CHUNKING",) * 2)
        res = load(dest, flags, verdict, session, data)
        check_loaded(verdict, load_rule, res, f"loading the {len(data)}-byte stream read in {name}-byte pieces")
        if want is not None and isinstance(dest, DeviceProfile):
            check_digest(verdict, want, dest.state_digest(), f"after loading the stream read in {name}-byte pieces",
                         rule=state_rule)
        session.close_all()
        reset(dest, verdict, "between loads")


@pytest.mark.rule("STREAM.WRITE_SPLIT", "RESUME.COMPATIBLE")
def test_resume_accepts_any_split(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session,
                                  request: pytest.FixtureRequest) -> None:
    """The same stream written whole, a byte at a time, in 7-byte and in 3-then-rest pieces, loads each time."""
    data = save(dut, flags, verdict, session)
    dest = resume_target(request, dut, flags, verdict)
    for sizes in ((len(data),), (1,), (7,), (3, len(data))):
        res = load(dest, flags, verdict, session, data, sizes)
        rule = "RESUME.COMPATIBLE" if sizes == (len(data),) else "STREAM.WRITE_SPLIT"  # one write(): no split
        check_loaded(verdict, rule, res, f"{len(data)} bytes written in pieces of {sizes}")
        session.close_all()
        reset(dest, verdict, "between splits")


ROUTES = ("stop_copy", "pre_copy", "pre_copy-unread")


def _save_by(route: str, dev: MigrationDevice, flags: int, verdict: Verdict, session: Session) -> bytes:
    if route == "stop_copy":
        return save(dev, flags, verdict, session)
    return save_with_precopy(dev, flags, verdict, session, read_precopy=route == "pre_copy", pieces=(7,))


@pytest.mark.rule("RESUME.COMPATIBLE", "STREAM.ROUND_TRIP")
@pytest.mark.parametrize("route", ROUTES)
def test_round_trip(flags: int, route: str, dut: MigrationDevice, verdict: Verdict, session: Session,
                    request: pytest.FixtureRequest) -> None:
    """A changed device saved (via STOP_COPY, via PRE_COPY read in 7-byte pieces, via PRE_COPY unread)
    and resumed on a compatible device gives the same device state."""
    if route != "stop_copy" and not flags & MigFlag.PRE_COPY:
        pytest.skip("route through PRE_COPY needs VFIO_MIGRATION_PRE_COPY")
    if not isinstance(dut, DeviceProfile):
        pytest.skip(f"no device profile for driver {dut.driver}: cannot compare device states")
    dut.dirty(7)
    data = _save_by(route, dut, flags, verdict, session)
    want = dut.state_digest()
    dest = resume_target(request, dut, flags, verdict)
    res = load(dest, flags, verdict, session, data)
    check_loaded(verdict, "RESUME.COMPATIBLE", res, f"resuming a stream saved via {route}")
    assert isinstance(dest, DeviceProfile)
    check_digest(verdict, want, dest.state_digest(), f"after resuming a stream saved via {route}")


@pytest.mark.rule("ARC.TRANSITION", "ARC.DATA_FD", "RESUME.COMPATIBLE", "STREAM.ROUND_TRIP")
def test_qemu_sequence(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session,
                       request: pytest.FixtureRequest) -> None:
    """What QEMU's hw/vfio/migration.c asks of a driver, end to end, for this feature set.

    Source: save_setup RUNNING -> PRE_COPY (with PRE_COPY), save_iterate reads until both counters are
    zero; vfio_vmstate_change_prepare (with P2P) -> PRE_COPY_P2P or RUNNING_P2P; vfio_vmstate_change
    -> STOP_COPY (one request from PRE_COPY), save_complete_precopy reads until 0; save_cleanup -> STOP.
    Destination: load_setup RUNNING -> RESUMING (a combination request); the stream written as it
    arrives; VM start: prepare -> RUNNING_P2P (with P2P), then -> RUNNING.
    """
    p2p, pre = bool(flags & MigFlag.P2P), bool(flags & MigFlag.PRE_COPY)
    if isinstance(dut, DeviceProfile):
        dut.dirty(3)

    def qset(dev: MigrationDevice, new: State, why: str) -> DataStream | None:
        before = get_state(dev)
        err, stream = _errno(lambda: set_state(dev, new))
        after = get_state(dev)
        plan = model.plan(flags, State(before), new)
        rule = "RESUME.COMPATIBLE" if before == S.RESUMING else "ARC.TRANSITION"  # leaving RESUMING loads
        verdict.check(rule, err == 0 and after == new, expected=f"success, GET reports {new.name}",
                      observed=f"{errno_name(err)}, GET reports {state_name(after)}",
                      context=f"QEMU {why}: SET {state_name(before)} -> {new.name}; model path {plan.describe()}")
        verdict.check("ARC.DATA_FD", (stream is not None) == plan.new_fd,
                      expected="a new data_fd" if plan.new_fd else "no data_fd",
                      observed="a data_fd" if stream is not None else "none", context=f"QEMU {why}")
        return session.keep(stream)

    data = bytearray()
    stream = None
    if pre:
        stream = qset(dut, S.PRE_COPY, "save_setup")
        assert stream is not None
        data += read_available(stream, limit=stream_limit(dut))
    if p2p:
        qset(dut, S.PRE_COPY_P2P if pre else S.RUNNING_P2P, "vfio_vmstate_change_prepare")
    new = qset(dut, S.STOP_COPY, "vfio_vmstate_change (stop)")
    stream = stream or new
    assert stream is not None
    limit = stream_limit(dut)
    data += drain_in_group(stream, verdict, limit=limit) if pre else read_all(stream, limit=limit, verdict=verdict)
    qset(dut, S.STOP, "save_cleanup")
    want = dut.state_digest() if isinstance(dut, DeviceProfile) else None

    dest = resume_target(request, dut, flags, verdict)
    resuming = qset(dest, S.RESUMING, "load_setup")
    assert resuming is not None
    write_all(resuming, bytes(data), verdict=verdict, context="QEMU load_state: the stream written as it arrives")
    if p2p:
        qset(dest, S.RUNNING_P2P, "vfio_vmstate_change_prepare (VM start)")
    qset(dest, S.RUNNING, "vfio_vmstate_change (VM start)")
    if want is not None and isinstance(dest, DeviceProfile):
        check_digest(verdict, want, dest.state_digest(), "after QEMU's sequence", label="digest")


@pytest.mark.rule("FD.ENDED", "ARC.TRANSITION", "RESUME.COMPATIBLE")
def test_precopy_is_optional(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session,
                             request: pytest.FixtureRequest) -> None:
    """PRE_COPY -> RUNNING is a legal arc that ends the session and leaves a working device."""
    if not flags & MigFlag.PRE_COPY:
        pytest.skip("needs VFIO_MIGRATION_PRE_COPY")
    reach(dut, flags, verdict, session, S.RUNNING)
    stream = open_session(dut, verdict, session, S.PRE_COPY, "starting a precopy")
    read_available(stream, 7, SMALL_READ_SPAN)  # some of it, in small reads
    step(dut, verdict, S.RUNNING, "abandoning the precopy (PRE_COPY -> RUNNING)")
    check_dead(verdict, "FD.ENDED", Live("saving", stream), "the abandoned precopy session's fd")
    data = save(dut, flags, verdict, session)
    dest = resume_target(request, dut, flags, verdict)
    res = load(dest, flags, verdict, session, data)
    check_loaded(verdict, "RESUME.COMPATIBLE", res, expected="a migration after the abandoned precopy loads")
