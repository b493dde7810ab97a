"""Driving a device: reaching a state by legal single arcs, saving a stream, loading one.

Every SET here is itself judged (``ARC.TRANSITION``): a device that cannot take the legal arcs a
test needs for its setup fails on that rule, with the setup named in the message.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from vfio_mig_cts.backends.protocol import (
    DataStream,
    ErrorInjection,
    Losable,
    MigrationDevice,
    Unavailable,
    get_state,
    set_state,
)
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import State, state_name

MAX_STREAM = 64 << 20  # a saving stream larger than this is a runaway driver, not a device state
READ_CHUNK = 1 << 20


@dataclass
class Session:
    """The data streams a test holds open; closed at teardown."""

    streams: list[DataStream] = field(default_factory=list)

    def keep(self, stream: DataStream | None) -> DataStream | None:
        if stream is not None:
            self.streams.append(stream)
        return stream

    @property
    def current(self) -> DataStream | None:
        return self.streams[-1] if self.streams else None

    def close_all(self) -> None:
        for s in self.streams:
            try:
                s.close()
            except OSError:
                pass
        self.streams.clear()


def step(dev: MigrationDevice, verdict: Verdict, new: State, why: str) -> DataStream | None:
    """SET one state, requiring success and GET == new (ARC.TRANSITION)."""
    before = get_state(dev)
    try:
        stream = set_state(dev, new)
        err = 0
    except OSError as exc:
        stream, err = None, exc.errno or 0
    after = get_state(dev)
    verdict.check("ARC.TRANSITION", err == 0 and after == new,
                  expected=f"success, GET reports {new.name}",
                  observed=f"{errno_name(err)}, GET reports {state_name(after)}",
                  context=f"setup: {why}: SET {state_name(before)} -> {new.name}")
    return stream


def open_session(dev: MigrationDevice, verdict: Verdict, session: Session, new: State, why: str) -> DataStream:
    """SET a session-starting state; the new data_fd is required (ARC.DATA_FD) and kept."""
    return _new_fd(verdict, session, step(dev, verdict, new, why), f"a new data_fd entering {new.name}", why)


def start_session(dev: MigrationDevice, verdict: Verdict, session: Session, frm: State, new: State,
                  why: str) -> DataStream:
    """SET ``new`` from ``frm`` (where the device is), an arc that starts a session; its data_fd is
    required (ARC.DATA_FD) and kept."""
    return _new_fd(verdict, session, step(dev, verdict, new, why), f"a data_fd from {frm.name} -> {new.name}", why)


def _new_fd(verdict: Verdict, session: Session, stream: DataStream | None, expected: str, why: str) -> DataStream:
    """The data_fd a session-starting SET returned, required (ARC.DATA_FD) and kept for teardown."""
    session.keep(stream)
    verdict.check("ARC.DATA_FD", stream is not None, expected=expected, observed="no data_fd", context=f"setup: {why}")
    assert stream is not None
    return stream


def walk(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session, target: State,
         why: str) -> None:
    """Move from the current state to ``target`` one model arc at a time (no combination SETs)."""
    cur = State(get_state(dev))
    p = model.plan(flags, cur, target)
    if not p.ok:
        raise Unavailable(f"no legal path {cur.name} -> {target.name} with these flags")
    for _, nxt in p.arcs:
        session.keep(step(dev, verdict, nxt, why))


def reset(dev: MigrationDevice, verdict: Verdict, why: str) -> None:
    """VFIO_DEVICE_RESET, requiring GET to report RUNNING afterwards (ARC.RESET)."""
    before = get_state(dev)
    dev.reset()
    after = get_state(dev)
    verdict.check("ARC.RESET", after == State.RUNNING, expected="GET reports RUNNING after VFIO_DEVICE_RESET",
                  observed=f"GET reports {state_name(after)}", context=f"{why}: reset from {state_name(before)}")


def set_and_get(dev: MigrationDevice, to: int) -> tuple[int, bool, int]:
    """SET then GET: (errno, whether a data_fd came back, the state GET then reports). The fd is closed."""
    try:
        stream = set_state(dev, to)
        err = 0
    except OSError as exc:
        stream, err = None, exc.errno or 0
    if stream is not None:
        stream.close()
    return err, stream is not None, get_state(dev)


def read_all(stream: DataStream, chunk: int = READ_CHUNK, limit: int = MAX_STREAM,
             verdict: Verdict | None = None, context: str = "") -> bytes:
    """Read a STOP_COPY stream to its end (read() returning 0).

    With a verdict, a read() error is judged: ENOMSG breaks EOS.STOPCOPY_NO_ENOMSG, any other
    error EOS.STOPCOPY_ZERO (the stream must end with 0, not an error).
    """
    out = bytearray()
    while len(out) <= limit:
        try:
            data = stream.read(chunk)
        except OSError as exc:
            if verdict is None:
                raise
            rule = "EOS.STOPCOPY_NO_ENOMSG" if exc.errno == errno.ENOMSG else "EOS.STOPCOPY_ZERO"
            verdict.check(rule, False, expected="data, then read() returning 0",
                          observed=f"read() failed with {errno_name(exc.errno)} after {len(out)} bytes",
                          context=context or "reading a STOP_COPY stream")
            raise
        if not data:
            return bytes(out)
        out += data
    raise OSError(errno.EFBIG, f"saving stream exceeds {limit} bytes without an end")


def read_available(stream: DataStream, chunk: int = READ_CHUNK, limit: int = MAX_STREAM) -> bytes:
    """Read PRE_COPY data up to the temporary end of stream (ENOMSG, or 0 from drivers that do so)."""
    out = bytearray()
    while len(out) <= limit:
        try:
            data = stream.read(chunk)
        except OSError as exc:
            if exc.errno == errno.ENOMSG:
                return bytes(out)
            raise
        if not data:
            return bytes(out)
        out += data
    raise OSError(errno.EFBIG, f"precopy stream exceeds {limit} bytes without a pause")


def save(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session) -> bytes:
    """A complete saved stream by the plain path: (RUNNING ...) -> STOP -> STOP_COPY, read, -> STOP."""
    walk(dev, flags, verdict, session, State.STOP, "saving a stream")
    stream = start_session(dev, verdict, session, State.STOP, State.STOP_COPY, "saving a stream")
    data = read_all(stream, verdict=verdict, context="saving a stream: STOP -> STOP_COPY")
    step(dev, verdict, State.STOP, "ending the saving session")
    return data


def write_all(stream: DataStream, data: bytes, chunk: int = READ_CHUNK) -> None:
    pos = 0
    while pos < len(data):
        n = stream.write(data[pos:pos + chunk])
        if n <= 0:
            raise OSError(errno.EIO, f"write() took {n} bytes at offset {pos}")
        pos += n


def reach(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session, target: State) -> None:
    """Bring a RUNNING device to ``target`` by legal arcs; RESUMING gets a complete valid stream.

    The stream is the device's own, saved first, so that leaving RESUMING is legal (a correct
    driver must refuse RESUMING -> STOP on an empty or partial stream).
    """
    if target == State.ERROR:
        if not isinstance(dev, ErrorInjection):
            raise Unavailable("ERROR is reachable only through the mock's fault hook")
        dev.inject_error()
        return
    if target == State.RESUMING:
        data = save(dev, flags, verdict, session)
        stream = start_session(dev, verdict, session, State.STOP, State.RESUMING, "entering RESUMING")
        write_all(stream, data)
        return
    walk(dev, flags, verdict, session, target, f"bringing the device to {target.name}")


@dataclass(frozen=True)
class Restored:
    """How teardown left the device: whether it needed a reset, the state after, or an error."""

    reset: bool
    state: int | None
    error: str = ""
    lost: str = ""  # the device was written off during the test (vfio_mig_cts/judging/containment.py): left alone

    @property
    def ok(self) -> bool:
        return not self.error and self.state == State.RUNNING


def restore_running(dev: MigrationDevice, session: Session) -> Restored:
    """Teardown: close streams, reset if the device is not in RUNNING, and say how that went. A device
    written off during the test (its lock may be held by a dead task) gets no request at all."""
    session.close_all()
    lost = dev.lost_reason() if isinstance(dev, Losable) else None
    if lost:
        return Restored(False, None, lost=lost)
    try:
        if get_state(dev) == State.RUNNING:
            return Restored(False, State.RUNNING)
        dev.reset()
        return Restored(True, get_state(dev))
    except OSError as exc:
        return Restored(True, None, f"restoring RUNNING failed: {errno_name(exc.errno)} ({exc})")
    except RuntimeError as exc:  # a backend's "device lost" after a hang: not a kernel errno
        return Restored(True, None, f"restoring RUNNING failed: {exc}")


def save_with_precopy(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session,
                      read_precopy: bool = True, chunk: int = READ_CHUNK) -> bytes:
    """A complete stream through PRE_COPY: RUNNING -> PRE_COPY, (read the precopy data,) -> STOP_COPY
    (through PRE_COPY_P2P where P2P exists), read to the end, -> STOP. One fd throughout."""
    walk(dev, flags, verdict, session, State.RUNNING, "saving through PRE_COPY")
    stream = start_session(dev, verdict, session, State.RUNNING, State.PRE_COPY, "saving through PRE_COPY")
    data = bytearray(read_available(stream, chunk) if read_precopy else b"")
    walk(dev, flags, verdict, session, State.STOP_COPY, "saving through PRE_COPY")
    data += drain_in_group(stream, verdict, chunk)
    step(dev, verdict, State.STOP, "ending the saving session")
    return bytes(data)


def drain_in_group(stream: DataStream, verdict: Verdict, chunk: int = READ_CHUNK) -> bytes:
    """Read to the end a saving fd that moved from PRE_COPY to STOP_COPY (FD.SAVING_GROUP: it must
    go on streaming; and EOS rules for how it ends)."""
    try:
        return read_all(stream, chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOMSG, errno.EIO):
            return read_all(stream, chunk, verdict=verdict, context="reading STOP_COPY after PRE_COPY")
        verdict.check("FD.SAVING_GROUP", False, expected="the PRE_COPY session's fd streams on in STOP_COPY",
                      observed=f"read() failed with {errno_name(exc.errno)}",
                      context="reading in STOP_COPY on the fd PRE_COPY returned")
        raise


@dataclass(frozen=True)
class LoadResult:
    """Where a resume failed, if it did: at a write() (and which byte), or at the final load."""

    write_errno: int = 0
    write_offset: int = -1
    load_errno: int = 0
    state_after: int = State.STOP

    @property
    def ok(self) -> bool:
        return not self.write_errno and not self.load_errno

    def describe(self) -> str:
        if self.write_errno:
            return f"write() failed with {errno_name(self.write_errno)} at byte {self.write_offset}"
        if self.load_errno:
            return f"final load (RESUMING -> STOP) failed with {errno_name(self.load_errno)}, " \
                   f"GET reports {state_name(self.state_after)}"
        return "loaded: RESUMING -> STOP succeeded"


def load(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session, data: bytes,
         sizes: tuple[int, ...] = (READ_CHUNK,)) -> LoadResult:
    """Resume ``data`` into ``dev`` (from RUNNING), written in pieces of the given sizes (cycled)."""
    walk(dev, flags, verdict, session, State.STOP, "loading a stream")
    stream = start_session(dev, verdict, session, State.STOP, State.RESUMING, "loading a stream")
    pos, i = 0, 0
    while pos < len(data):
        piece = data[pos:pos + sizes[i % len(sizes)]]
        i += 1
        try:
            n = stream.write(piece)
        except OSError as exc:
            return LoadResult(write_errno=exc.errno or 0, write_offset=pos, state_after=get_state(dev))
        pos += n
    try:
        set_state(dev, State.STOP)
        err = 0
    except OSError as exc:
        err = exc.errno or 0
    return LoadResult(load_errno=err, state_after=get_state(dev))
