"""Driving a device: reaching a state by legal single arcs, saving a stream, loading one.

Every SET here is itself judged (``ARC.TRANSITION``): a device that cannot take the legal arcs a
test needs for its setup fails on that rule, with the setup named in the message.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vfio_mig_cts.backends.protocol import (
    POLLIN,
    DataStream,
    ErrorInjection,
    Losable,
    MigrationDevice,
    PrecopyInfo,
    Unavailable,
    data_size,
    get_state,
    set_state,
)
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import State, state_name

MIN_STREAM_LIMIT = 64 << 20  # a saving stream may always carry this much (stream_limit())
STREAM_MARGIN = 4  # ... plus this many times the device's MIG_DATA_SIZE estimate
HARD_STREAM_LIMIT = 16 << 30  # ... and never more than this: past it the stream has no end
SMALL_READ_SPAN = 64 << 10  # reads of small sizes cover this much of a stream, larger reads the rest
READ_CHUNK = 1 << 20
PRECOPY_WAIT = 2.0  # seconds to wait with poll() for PRE_COPY data the counters announced (a bound, not the header's)


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


class EndlessStream(OSError):
    """A saving stream went on past its limit (``stream_limit()``) without an end."""

    def __init__(self, limit: int, got: int) -> None:
        super().__init__(errno.EFBIG, f"saving stream exceeds {limit} bytes without an end")
        self.limit, self.got = limit, got


def judge_endless(verdict: Verdict, limit: int, got: int, context: str) -> None:
    """A STOP_COPY stream with no end within its limit breaks EOS.STOPCOPY_ZERO (must: it raises)."""
    verdict.check("EOS.STOPCOPY_ZERO", False,
                  expected=f"read() returning 0 within {limit} bytes (the device's MIG_DATA_SIZE estimate "
                           f"x {STREAM_MARGIN} + {MIN_STREAM_LIMIT >> 20} MiB, at most {HARD_STREAM_LIMIT >> 30} GiB)",
                  observed=f"{got} bytes read and no end of stream", context=context)


def stream_limit(dev: MigrationDevice) -> int:
    """How many bytes a saving stream may carry before the suite calls it endless: the device's own
    MIG_DATA_SIZE estimate times 4 plus 64 MiB (a margin: it is an estimate, and PRE_COPY re-sends what the
    device dirtied), and never more than 16 GiB (a hard cap). A GET that fails counts as an estimate of 0."""
    try:
        estimate = data_size(dev)
    except OSError:
        estimate = 0
    return min(HARD_STREAM_LIMIT, STREAM_MARGIN * estimate + MIN_STREAM_LIMIT)


def _next_size(pieces: tuple[int, ...], chunk: int, i: int, done: int) -> int:
    """The size of read number ``i``: ``pieces`` cycled over the first SMALL_READ_SPAN bytes, then ``chunk``."""
    return pieces[i % len(pieces)] if pieces and done < SMALL_READ_SPAN else chunk


def read_all(stream: DataStream, chunk: int = READ_CHUNK, limit: int = MIN_STREAM_LIMIT,
             verdict: Verdict | None = None, context: str = "", pieces: tuple[int, ...] = ()) -> bytes:
    """Read a STOP_COPY stream to its end (read() returning 0), in ``chunk``-byte reads (or ``pieces``
    cycled over the first SMALL_READ_SPAN bytes). ``limit``: see ``stream_limit()``.

    With a verdict, a read() error is judged: ENOMSG breaks EOS.STOPCOPY_NO_ENOMSG, any other
    error EOS.STOPCOPY_ZERO (the stream must end with 0, not an error); so is a stream that goes on past
    ``limit`` (EOS.STOPCOPY_ZERO: no end of stream). Without one, these raise OSError.
    """
    out = bytearray()
    i = 0
    while len(out) <= limit:
        try:
            data = stream.read(_next_size(pieces, chunk, i, len(out)))
        except OSError as exc:
            if verdict is None:
                raise
            rule = "EOS.STOPCOPY_NO_ENOMSG" if exc.errno == errno.ENOMSG else "EOS.STOPCOPY_ZERO"
            verdict.check(rule, False, expected="data, then read() returning 0",
                          observed=f"read() failed with {errno_name(exc.errno)} after {len(out)} bytes",
                          context=context or "reading a STOP_COPY stream")
            raise
        i += 1
        if not data:
            return bytes(out)
        out += data
    if verdict is not None:
        judge_endless(verdict, limit, len(out), context or "reading a STOP_COPY stream")
    raise EndlessStream(limit, len(out))


def read_available(stream: DataStream, chunk: int = READ_CHUNK, limit: int = MIN_STREAM_LIMIT,
                   pieces: tuple[int, ...] = ()) -> bytes:
    """Read PRE_COPY data up to the temporary end of stream (ENOMSG, or 0 from drivers that do so), or up
    to ``limit`` bytes (a running device may go on producing data: the caller then moves on, and STOP_COPY
    ends the stream). Read sizes as ``read_all``'s."""
    out = bytearray()
    i = 0
    while len(out) <= limit:
        try:
            data = stream.read(_next_size(pieces, chunk, i, len(out)))
            i += 1
        except OSError as exc:
            if exc.errno == errno.ENOMSG:
                return bytes(out)
            raise
        if not data:
            return bytes(out)
        out += data
    return bytes(out)


def reread_after_wait(stream: DataStream, size: int, timeout: float = PRECOPY_WAIT) -> tuple[bytes, int]:
    """read() again, waiting with poll() (at most ``timeout`` seconds in all) for data the PRE_COPY counters
    announced: they are estimates (vfio.h:1236-1237), and a driver may report data it is still saving (mlx5
    counts an incremental save it has just started, mlx5/main.c:537-568, while read() gives ENOMSG until it
    completes). Returns (data, errno of the last read)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            stream.poll(POLLIN, max(0, int(left * 1000)))
        except OSError:
            pass
        try:
            data, err = stream.read(size), 0
        except OSError as exc:
            data, err = b"", exc.errno or errno.EIO
        if data or time.monotonic() >= deadline:
            return data, err
        time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))  # drivers without .poll report readable


def settle_early_end(stream: DataStream, size: int, query: Callable[[], PrecopyInfo],
                     rounds: int = 2) -> tuple[bytes, int, PrecopyInfo | None]:
    """A PRE_COPY read() gave no data although the counters said data remains: wait and read again
    (``reread_after_wait``), then ask the counters again; ``rounds`` times (asking may itself start the save
    that brings the data, as mlx5's ioctl does, mlx5/main.c:546-568). Returns the data, the last read's
    errno and the counters last asked (None when the first wait brought data)."""
    info: PrecopyInfo | None = None
    err = 0
    for _ in range(rounds):
        data, err = reread_after_wait(stream, size)
        if data:
            return data, err, info
        info = query()
        if info.initial_bytes + info.dirty_bytes == 0:
            break
    return b"", err, info


def save(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session) -> bytes:
    """A complete saved stream by the plain path: (RUNNING ...) -> STOP -> STOP_COPY, read, -> STOP."""
    walk(dev, flags, verdict, session, State.STOP, "saving a stream")
    stream = start_session(dev, verdict, session, State.STOP, State.STOP_COPY, "saving a stream")
    data = read_all(stream, limit=stream_limit(dev), verdict=verdict, context="saving a stream: STOP -> STOP_COPY")
    step(dev, verdict, State.STOP, "ending the saving session")
    return data


def write_all(stream: DataStream, data: bytes, chunk: int = READ_CHUNK, verdict: Verdict | None = None,
              context: str = "") -> None:
    """Write a complete stream saved from a compatible device. With a verdict, a write() that fails or
    takes nothing breaks RESUME.COMPATIBLE (such a stream must be taken); without one it raises OSError."""
    pos = 0
    while pos < len(data):
        try:
            n = stream.write(data[pos:pos + chunk])
            err = 0
        except OSError as exc:
            if verdict is None:
                raise
            n, err = 0, exc.errno or errno.EIO
        if n <= 0:
            observed = f"write() {'failed with ' + errno_name(err) if err else 'took 0 bytes'} at byte {pos} " \
                       f"of {len(data)}"
            if verdict is not None:
                verdict.check("RESUME.COMPATIBLE", False, expected="write() takes every byte of the stream",
                              observed=observed, context=context or "writing a stream saved from this device")
            raise OSError(err or errno.EIO, observed)
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
        write_all(stream, data, verdict=verdict, context="setup: a complete stream into RESUMING")
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
                      read_precopy: bool = True, pieces: tuple[int, ...] = ()) -> bytes:
    """A complete stream through PRE_COPY: RUNNING -> PRE_COPY, (read the precopy data,) -> STOP_COPY
    (through PRE_COPY_P2P where P2P exists), read to the end, -> STOP. One fd throughout; read sizes as
    ``read_all``'s (``pieces`` over the first SMALL_READ_SPAN bytes)."""
    walk(dev, flags, verdict, session, State.RUNNING, "saving through PRE_COPY")
    stream = start_session(dev, verdict, session, State.RUNNING, State.PRE_COPY, "saving through PRE_COPY")
    limit = stream_limit(dev)
    data = bytearray(read_available(stream, limit=limit, pieces=pieces) if read_precopy else b"")
    walk(dev, flags, verdict, session, State.STOP_COPY, "saving through PRE_COPY")
    data += drain_in_group(stream, verdict, limit=limit, pieces=pieces)
    step(dev, verdict, State.STOP, "ending the saving session")
    return bytes(data)


def drain_in_group(stream: DataStream, verdict: Verdict, chunk: int = READ_CHUNK,
                   limit: int = MIN_STREAM_LIMIT, pieces: tuple[int, ...] = ()) -> bytes:
    """Read to the end a saving fd that moved from PRE_COPY to STOP_COPY (FD.SAVING_GROUP: it must
    go on streaming; and EOS rules for how it ends). Read sizes as ``read_all``'s."""
    context = "reading STOP_COPY after PRE_COPY"
    try:
        return read_all(stream, chunk, limit, pieces=pieces)
    except EndlessStream as exc:
        judge_endless(verdict, exc.limit, exc.got, context)
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOMSG, errno.EIO):
            return read_all(stream, chunk, limit, verdict=verdict, context=context, pieces=pieces)
        verdict.check("FD.SAVING_GROUP", False, expected="the PRE_COPY session's fd streams on in STOP_COPY",
                      observed=f"read() failed with {errno_name(exc.errno)}",
                      context="reading in STOP_COPY on the fd PRE_COPY returned")
        raise


@dataclass(frozen=True)
class LoadResult:
    """Where a resume failed, if it did: at a write() (which byte, and its errno or 0 bytes taken), or at
    the final load."""

    write_errno: int = 0
    write_offset: int = -1  # the byte a write() stopped at (failed, or took nothing); -1: every write() took its bytes
    load_errno: int = 0
    state_after: int = State.STOP

    @property
    def ok(self) -> bool:
        return self.write_offset < 0 and not self.load_errno

    def describe(self) -> str:
        if self.write_offset >= 0:
            how = f"failed with {errno_name(self.write_errno)}" if self.write_errno else "took 0 bytes"
            return f"write() {how} at byte {self.write_offset}"
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
            return LoadResult(write_errno=exc.errno or errno.EIO, write_offset=pos, state_after=get_state(dev))
        if n <= 0:  # a write() that takes nothing would be asked again for ever
            return LoadResult(write_offset=pos, state_after=get_state(dev))
        pos += n
    try:
        set_state(dev, State.STOP)
        err = 0
    except OSError as exc:
        err = exc.errno or 0
    return LoadResult(load_errno=err, state_after=get_state(dev))
