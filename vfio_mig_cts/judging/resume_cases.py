"""Streams to resume and how a resume went: the helpers of the resume, reset and reopen suites.

The uAPI's test of a resume is the final load: leaving RESUMING must fail whenever the bytes the
driver took (those of write() calls that succeeded) are not one complete valid stream from a
compatible device. A driver may refuse earlier, at write(); ``Attempt`` records which write()
calls it refused (offset and errno), the bytes it took, and how the final load went, so that each
report can say where a failure surfaced and with which errno.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from vfio_mig_cts.backends.protocol import (
    POLLERR,
    POLLHUP,
    POLLIN,
    DataStream,
    DeviceProfile,
    ErrorInjection,
    MigrationDevice,
    Unavailable,
    get_state,
    precopy_info,
    set_state,
)
from vfio_mig_cts.judging import checks
from vfio_mig_cts.judging.driving import (
    Session,
    drain_in_group,
    reach,
    read_available,
    save,
    start_session,
    step,
    stream_limit,
    walk,
    write_all,
)
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import MigFlag, State, state_name

S = State
SOURCES = ("stop_copy", "pre_copy")  # how the resumed stream was saved
CARELESS_CHUNK = 16  # a careless writer's write() size: small, so that it goes on past a refusal
PROBE_READ = 16  # bytes read to leave a saving session mid-stream


# --- saving ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Saved:
    """A complete saved stream, how it was saved, and the source's state when it was."""

    data: bytes
    source: str
    precopy_len: int = 0  # bytes read while in PRE_COPY (0 when saved with STOP_COPY only)
    digest: bytes | None = None  # the source's state digest (DeviceProfile), None without a profile


def sources_for(flags: int) -> tuple[str, ...]:
    return SOURCES if flags & MigFlag.PRE_COPY else SOURCES[:1]


def save_through_precopy(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session,
                         seed: int) -> tuple[bytes, int]:
    """A complete stream through PRE_COPY, and how much of it was read in PRE_COPY.

    Like ``driving.save_with_precopy``, but where a device profile can change the device, it does so
    while in PRE_COPY (once before the precopy part ends, once after), so that the stream re-sends
    dirtied state both in PRE_COPY and in STOP_COPY; and it keeps where the PRE_COPY part ends.
    """
    walk(dev, flags, verdict, session, S.RUNNING, "saving through PRE_COPY")
    stream = start_session(dev, verdict, session, S.RUNNING, S.PRE_COPY, "saving through PRE_COPY")
    limit = stream_limit(dev)
    part = bytearray(read_available(stream, limit=limit))
    if isinstance(dev, DeviceProfile):
        dev.dirty(seed + 1)
        part += read_available(stream, limit=limit)
        dev.dirty(seed + 2)
    walk(dev, flags, verdict, session, S.STOP_COPY, "saving through PRE_COPY")
    rest = drain_in_group(stream, verdict, limit=limit)
    step(dev, verdict, S.STOP, "ending the saving session")
    return bytes(part + rest), len(part)


def save_source(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session, source: str,
                seed: int) -> Saved:
    """Change the device (where a profile can), then save it by ``source``; ends in STOP."""
    if isinstance(dev, DeviceProfile):
        walk(dev, flags, verdict, session, S.RUNNING, "changing the source before saving")
        dev.dirty(seed)
    if source == "pre_copy":
        data, pre = save_through_precopy(dev, flags, verdict, session, seed)
    else:
        data, pre = save(dev, flags, verdict, session), 0
    digest = dev.state_digest() if isinstance(dev, DeviceProfile) else None
    session.close_all()
    return Saved(data, source, pre, digest)


# --- resuming ----------------------------------------------------------------------------------------

@dataclass
class Attempt:
    """One resume session: the write() calls, what they took, and the final load."""

    offered: int
    target: State
    stream: DataStream
    accepted: bytearray = field(default_factory=bytearray)
    calls: int = 0
    refusals: list[tuple[int, int]] = field(default_factory=list)  # (offset in the offered bytes, errno)
    load_errno: int = 0
    state_after: int = S.STOP

    @property
    def loaded(self) -> bool:
        return self.load_errno == 0

    @property
    def surfaced(self) -> str:
        """Where a failure first showed: ``write:EINVAL``, ``final-load:EINVAL``, or ``none``."""
        if self.refusals:
            return f"write:{errno_name(self.refusals[0][1]) if self.refusals[0][1] else 'short'}"
        if self.load_errno:
            return f"final-load:{errno_name(self.load_errno)}"
        return "none"

    def writes(self) -> str:
        took = f"{len(self.accepted)} of {self.offered} bytes taken"
        if not self.refusals:
            return f"write(): {self.calls} call(s), {took}"
        off, err = self.refusals[0]
        more = f", {len(self.refusals)} refusals in all" if len(self.refusals) > 1 else ""
        return (f"write(): {self.calls} call(s), first refused at byte {off} with "
                f"{errno_name(err) if err else 'a short count'}{more}; {took}")

    def describe(self) -> str:
        load = "success" if self.loaded else errno_name(self.load_errno)
        return (f"{self.writes()}; RESUMING -> {self.target.name}: {load}; GET reports "
                f"{state_name(self.state_after)}; failure surfaced: {self.surfaced}")


def attempt(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session, chunks: list[bytes],
            target: State = S.STOP, careless: bool = False) -> Attempt:
    """A resume session: STOP -> RESUMING, one write() per chunk (continuing on partial counts), then
    SET ``target``. A careful writer stops at the first refused write(); a careless one goes on."""
    walk(dev, flags, verdict, session, S.STOP, "preparing a resume")
    stream = start_session(dev, verdict, session, S.STOP, S.RESUMING, "entering RESUMING")
    att = Attempt(sum(len(c) for c in chunks), target, stream)
    offset = 0
    for chunk in chunks:
        pos = 0
        while pos < len(chunk):
            att.calls += 1
            try:
                n = stream.write(chunk[pos:])
            except OSError as exc:
                att.refusals.append((offset + pos, exc.errno or 0))
                break
            if n <= 0:
                att.refusals.append((offset + pos, 0))
                break
            att.accepted += chunk[pos:pos + n]
            pos += n
        offset += len(chunk)
        if att.refusals and not careless:
            break
    try:
        extra = set_state(dev, target)
        if extra is not None:
            extra.close()
    except OSError as exc:
        att.load_errno = exc.errno or errno.EIO
    att.state_after = get_state(dev)
    return att


def careless_chunks(chunks: list[bytes]) -> list[bytes]:
    data = b"".join(chunks)
    return [data[i:i + CARELESS_CHUNK] for i in range(0, len(data), CARELESS_CHUNK)]


def refused_states(flags: int, target: State) -> set[int]:
    """Where a refused final load may leave the device: a state of the path before ``target``
    (RESUMING itself for RESUMING -> STOP), or ERROR (vfio.h: "optionally go to the ERROR state")."""
    path = model.plan(flags, S.RESUMING, target).path
    return {int(s) for s in path[:-1]} | {int(S.ERROR)}


def check_refused_state(verdict: Verdict, flags: int, att: Attempt, context: str) -> None:
    allowed = refused_states(flags, att.target)
    names = ", ".join(state_name(s) for s in sorted(allowed))
    verdict.check("ARC.FAILED_STATE", att.state_after in allowed,
                  expected=f"GET reports one of {names} (the path before the failing arc, or ERROR)",
                  observed=att.describe(), context=context)


def reset_out_of(dev: MigrationDevice, verdict: Verdict, why: str) -> int:
    """VFIO_DEVICE_RESET: from RESUMING judged as aborting the session, from elsewhere as ARC.RESET."""
    before = get_state(dev)
    dev.reset()
    after = get_state(dev)
    rule = "RESET.ABORT_RESUMING" if before == S.RESUMING else "ARC.RESET"
    verdict.check(rule, after == S.RUNNING, expected="GET reports RUNNING after VFIO_DEVICE_RESET",
                  observed=f"GET reports {state_name(after)}", context=f"{why}: reset from {state_name(before)}")
    return before


def check_digest(verdict: Verdict, dev: MigrationDevice, saved: Saved, context: str) -> None:
    """The device state equals the source's when it was saved (STREAM.ROUND_TRIP), where a device
    profile can tell."""
    if saved.digest is None or not isinstance(dev, DeviceProfile):
        return
    checks.check_digest(verdict, saved.digest, dev.state_digest(), context)


def check_loaded(verdict: Verdict, att: Attempt, context: str, refusals_ok: bool = False) -> None:
    """A complete valid stream from a compatible device: taken by write() and loaded (RESUME.COMPATIBLE),
    and the device then in the requested state (ARC.TRANSITION).

    With ``refusals_ok`` the writer offered more than the stream and write() refused the excess: what
    was taken is exactly the stream, so only the load is judged.
    """
    verdict.check("RESUME.COMPATIBLE", (refusals_ok or not att.refusals) and att.loaded,
                  expected="leaving RESUMING succeeds" if refusals_ok
                  else "write() takes every byte and leaving RESUMING succeeds", observed=att.describe(),
                  context=context)
    verdict.check("ARC.TRANSITION", att.state_after == att.target,
                  expected=f"GET reports {att.target.name} after the load", observed=att.describe(), context=context)


def check_resumed(verdict: Verdict, dev: MigrationDevice, att: Attempt, saved: Saved, context: str,
                  after: str) -> None:
    """The device's saved stream, resumed on it or a compatible device, loads (RESUME.COMPATIBLE,
    ARC.TRANSITION) and restores the saved state (STREAM.ROUND_TRIP). ``after``: the context of the latter."""
    check_loaded(verdict, att, context)
    check_digest(verdict, dev, saved, after)


# --- sessions open in a state, and whether an old fd is dead ------------------------------------------

@dataclass(frozen=True)
class Live:
    """A data fd of a session open in the state a test brought the device to."""

    kind: str  # "saving" or "resuming"
    stream: DataStream


def open_session(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session, state: State) -> list[Live]:
    """Bring a RUNNING device to ``state`` with a data session open mid-stream where the state has one:
    the saving group part-read, RESUMING with half a valid stream written, ERROR (through the mock's
    hook) entered from a part-read STOP_COPY. RUNNING, STOP and RUNNING_P2P have no session."""
    if state == S.ERROR:
        if not isinstance(dev, ErrorInjection):
            raise Unavailable("ERROR is reachable only through the mock's fault hook")
        live = open_session(dev, flags, verdict, session, S.STOP_COPY)
        dev.inject_error()
        return live
    if state == S.RESUMING:
        data = save(dev, flags, verdict, session)
        resuming = start_session(dev, verdict, session, S.STOP, S.RESUMING, "entering RESUMING")
        write_all(resuming, data[:len(data) // 2], verdict=verdict, context="setup: half a stream into RESUMING")
        return [Live("resuming", resuming)]
    reach(dev, flags, verdict, session, state)
    if state not in model.SAVING_GROUP:
        return []
    stream = session.current
    verdict.check("ARC.DATA_FD", stream is not None, expected=f"a data_fd on the way to {state.name}",
                  observed="no data_fd", context=f"setup: entering {state.name}")
    assert stream is not None
    stream.read(PROBE_READ)
    return [Live("saving", stream)]


def check_dead(verdict: Verdict, rule: str, live: Live, context: str) -> None:
    """An fd whose session ended has reached "end of stream or error" (include/linux/vfio.h:192-194), for
    every operation on it: a saving fd's read() yields nothing (an error or 0), its poll() reports an
    event (readable: end of stream; POLLERR/POLLHUP: error; not "wait"), and VFIO_MIG_GET_PRECOPY_INFO
    on it fails or reports no data; a resuming fd's write() takes nothing."""
    where = f"{context}: the old {live.kind} fd"
    if live.kind == "resuming":
        err, n = _call(lambda: live.stream.write(bytes(16)))
        verdict.check(rule, not n, expected="no more bytes taken: write() fails",
                      observed=f"write() took {n} bytes" if n else f"write() failed with {errno_name(err)}" if err
                      else "write() took 0 bytes", context=where)
        return
    err, got = _call(lambda: live.stream.read(4096))
    verdict.check(rule, not got, expected="no more data: read() fails or returns 0",
                  observed=f"read() returned {len(got or b'')} bytes" if got
                  else f"read() failed with {errno_name(err)}" if err else "read() returned 0", context=where)
    err, revents = _call(lambda: live.stream.poll(POLLIN, 0))
    verdict.check(rule, bool(err) or bool((revents or 0) & (POLLIN | POLLERR | POLLHUP)),
                  expected="poll() reports the end (POLLIN) or an error (POLLERR, POLLHUP)",
                  observed=f"poll() failed with {errno_name(err)}" if err else f"poll() revents {revents or 0:#x}",
                  context=where)
    err, info = _call(lambda: precopy_info(live.stream))
    verdict.check(rule, err != 0 or info is None or info.initial_bytes + info.dirty_bytes == 0,
                  expected="VFIO_MIG_GET_PRECOPY_INFO fails or reports no data",
                  observed=f"VFIO_MIG_GET_PRECOPY_INFO failed with {errno_name(err)}" if err or info is None
                  else f"initial_bytes {info.initial_bytes}, dirty_bytes {info.dirty_bytes}", context=where)


T = TypeVar("T")


def _call(fn: Callable[[], T]) -> tuple[int, T | None]:
    """(0, value) or (errno, None) when ``fn`` raised OSError."""
    try:
        return 0, fn()
    except OSError as exc:
        return exc.errno or errno.EIO, None


def migrate_again(dev: MigrationDevice, flags: int, verdict: Verdict, session: Session, seed: int,
                  why: str) -> None:
    """A full migration on a RUNNING device (through PRE_COPY where the flags have it) resumed on the
    device itself after it moved on: the load works and restores the saved state; ends in RUNNING."""
    source = SOURCES[-1] if flags & MigFlag.PRE_COPY else SOURCES[0]
    saved = save_source(dev, flags, verdict, session, source, seed)
    walk(dev, flags, verdict, session, S.RUNNING, f"{why}: the source runs on")
    if isinstance(dev, DeviceProfile):
        dev.dirty(seed + 50)
    att = attempt(dev, flags, verdict, session, [saved.data])
    check_resumed(verdict, dev, att, saved, f"{why}: resuming a stream saved via {source}",
                  f"{why}: after resuming a stream saved via {source}")
    session.close_all()
    walk(dev, flags, verdict, session, S.RUNNING, f"{why}: the resumed device runs")
