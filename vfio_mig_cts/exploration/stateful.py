"""Stateful exploration: one device driven through a sequence of steps, each judged as it is taken.

``Explorer`` owns a device and what the reference model says about it: the state, the open data
sessions (live, ended, closed), the last precopy counters, a saved stream to resume. Each public
method is one step (a SET, a read, a write, a precopy-info query, a reset ...). It checks what it
observed with the shared check helpers (judging/checks.py, judging/resume_cases.py, judging/driving.py)
on a ``Judge``: a ``Verdict`` that raises at the first broken rule, whatever its force, so a sequence
that breaks a should-rule shrinks too (the test reports the finding with the rule's own force).

Known findings: the rules the expectation files list for the driver under test (``known_rules``) are
``tolerated`` by the judge: a finding of one is recorded and the sequence goes on, so that a known
driver bug met early does not keep the explorer from everything after it; the test reports them as
known, and an unknown finding still stops the sequence, shrinks and fails.

A step that does not apply where the device is (a read with no session open, leaving RESUMING before
the stream is complete, a hazard the run may not take) does nothing and is not logged. The log of
steps taken is what vfio_mig_cts/exploration/shrink.py replays and shrinks and what
vfio_mig_cts/exploration/reproducer.py writes as a standalone script; vfio_mig_cts/exploration/walk.py
draws the steps from a seed.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vfio_mig_cts.backends.protocol import (
    ArcTrace,
    DataStream,
    DeviceProfile,
    ErrorInjection,
    KernelLog,
    KernelProfile,
    MigrationDevice,
    PrecopyInfo,
    data_size,
    get_state,
    get_state_fd,
    precopy_info,
    set_state,
)
from vfio_mig_cts.judging import checks
from vfio_mig_cts.judging.containment import run_contained
from vfio_mig_cts.judging.driving import PRECOPY_WAIT, Session, load, save, set_and_get, settle_early_end, walk
from vfio_mig_cts.judging.expectations import Expectation
from vfio_mig_cts.judging.resume_cases import Live, check_dead, reset_out_of
from vfio_mig_cts.judging.verdict import Finding, RuleViolation, Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import MigFlag, State, state_name

S = State
PRECOPY_STATES = frozenset({S.PRE_COPY, S.PRE_COPY_P2P})
TARGETS: tuple[int, ...] = (S.RUNNING, S.STOP, S.STOP_COPY, S.RESUMING, S.PRE_COPY, S.PRE_COPY_P2P,
                            S.RUNNING_P2P, S.ERROR, 8, 0xFFFFFFFF)
READ_SIZES = (4096, 1, 7, 16, 64, 1 << 20)
WRITE_SIZES = (1 << 20, 1, 7, 24, 64)

# --- the judge ------------------------------------------------------------------------------------

def known_rules(expectations: Iterable[Expectation], driver: str, device: str) -> dict[str, tuple[Expectation, ...]]:
    """The rules the expectation files list for this driver (or this device), each with its entries.

    An entry's tests name the fixed-suite cases that break the rule; that the driver breaks it is what
    the explorer needs to know, so the entry counts whichever tests it names. A random sequence may or
    may not meet such a finding, so for the explorer it is not strict: met, it is reported as known
    (``known_lines``) and the sequence goes on; not met, nothing is said."""
    out: dict[str, list[Expectation]] = {}
    for e in expectations:
        if e.driver not in (None, driver) or e.device not in (None, device):
            continue
        out.setdefault(e.rule, []).append(e)
    return {r: tuple(es) for r, es in sorted(out.items())}


def known_lines(known: dict[str, tuple[Expectation, ...]], findings: Iterable[Finding]) -> list[tuple[str, str]]:
    """Per known rule met, in the order first met: ``RULE (reason) [file:entry]`` and a text with the
    number of findings and the first one's message (for the test's report)."""
    met: dict[str, list[Finding]] = {}
    for f in findings:
        met.setdefault(f.rule.id, []).append(f)
    out = []
    for rid, fs in met.items():
        entries = known.get(rid, ())
        why = "; ".join(e.reason for e in entries) or "tolerated"
        where = ", ".join(e.origin for e in entries if e.origin)
        head = f"{rid} ({why})" + (f" [{where}]" if where else "")
        out.append((head, f"known: {head}: {len(fs)} finding(s), the first:\n{fs[0].message()}"))
    return out


class Judge(Verdict):
    """A ``Verdict`` that raises at the first broken rule of any force (``tolerated`` ones excepted:
    those are recorded and the run goes on, for rules an expectation file says the driver breaks)."""

    def __init__(self, tolerated: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.tolerated = tolerated

    def check(self, rule_id: str, ok: bool, expected: str, observed: str, context: str = "") -> bool:
        finding = self.record(rule_id, ok, expected, observed, context)
        if finding is None:
            return True
        if rule_id in self.tolerated:
            return False
        raise RuleViolation(finding)


# --- what the explorer knows about data sessions ------------------------------------------------

@dataclass
class Track:
    """One data session's fd, and what the model expects of it."""

    stream: DataStream
    kind: str  # "saving" or "resuming"
    started: State  # the state whose arc started the session
    moved: bool = False  # moved within the saving group since it started
    stop_copy: bool = False  # the session is in STOP_COPY now
    ended_read: bool = False  # read() returned 0 in STOP_COPY
    got: int = 0  # bytes read so far
    last_info: PrecopyInfo | None = None
    fresh: bool = True  # nothing read and the device not changed since the session started
    image: bytes = b""  # (resuming) the complete stream it is being given
    digest: bytes | None = None  # (resuming) the source's state digest when the image was saved
    written: int = 0  # (resuming) bytes of the image write() took
    writes: int = 0  # (resuming) write() calls
    closed: bool = False
    end_rule: str = ""  # why it ended: FD.ENDED (an arc) or RESET.DEAD_FDS (a reset)
    end_why: str = ""

    @property
    def complete(self) -> bool:
        return self.kind == "resuming" and bool(self.image) and self.written == len(self.image) and not self.closed


Step = tuple[str, tuple[Any, ...]]


class Explorer:
    """A device, the model's view of it, and the steps (see the module docstring)."""

    def __init__(self, dev: MigrationDevice, flags: int, judge: Judge, profile: KernelProfile, *,
                 reset_at_end: bool, hazard_timeout: float = 5.0, run_hazards: bool = False,
                 real: bool = False) -> None:
        self.dev = dev
        self.flags = flags
        self.judge = judge
        self.profile = profile
        self.reset_at_end = reset_at_end
        self.hazard_timeout = hazard_timeout
        self.run_hazards = run_hazards
        self.real = real
        self.state = S(get_state(dev))
        self.live: Track | None = None
        self.ended: list[Track] = []
        self.others: list[DataStream] = []  # fds the model no longer judges (closed at the end)
        self.session = Session()  # fds of composite steps (driving.save / load)
        self.image: bytes = b""
        self.image_digest: bytes | None = None
        self.log: list[Step] = []

    # --- bookkeeping ----------------------------------------------------------------------------------
    def _record(self, name: str, *args: Any) -> None:
        self.log.append((name, tuple(int(a) if isinstance(a, int) else a for a in args)))

    def _where(self) -> str:
        return f"in {self.state.name} (flags {self.flags:#x}), step {len(self.log)}"

    def _end_live(self, end_rule: str, why: str) -> None:
        t = self.live
        self.live = None
        if t is None:
            return
        if t.closed:
            return
        t.end_rule, t.end_why = end_rule, why
        self.ended.append(t)

    def _apply_arcs(self, arcs: tuple[tuple[State, State], ...]) -> None:
        for a, b in arcs:
            if (a, b) in model.SESSION_END_ARCS:
                self._end_live("FD.ENDED", f"{a.name} -> {b.name}")
            t = self.live
            if t is not None and t.kind == "saving" and a in PRECOPY_STATES and b in model.SAVING_GROUP:
                t.moved = True
                t.stop_copy = b == S.STOP_COPY

    def _new_track(self, stream: DataStream, state: State) -> None:
        if state == S.RESUMING:
            self.live = Track(stream, "resuming", state, image=self.image, digest=self.image_digest)
        else:
            self.live = Track(stream, "saving", state, stop_copy=state == S.STOP_COPY)

    def _expect_state(self, why: str) -> None:
        """The device is still where the last step left it (ARC.NO_ASYNC)."""
        now = get_state(self.dev)
        self.judge.check("ARC.NO_ASYNC", now == self.state, expected=f"GET reports {self.state.name}",
                         observed=f"GET reports {state_name(now)}", context=f"{why} {self._where()}")

    # --- where a step applies (the walk's moves ask these too) ----------------------------------------
    def saving(self) -> bool:
        return self.live is not None and self.live.kind == "saving" and not self.live.closed

    def resuming(self) -> bool:
        t = self.live
        return t is not None and t.kind == "resuming" and not t.closed and bool(t.image) and t.written < len(t.image)

    def has_live(self) -> bool:
        return self.live is not None and not self.live.closed

    def has_ended(self) -> bool:
        return any(t.kind == "saving" or t.end_rule == "RESET.DEAD_FDS" for t in self.ended)

    def can_save(self) -> bool:
        return self.state not in (S.ERROR, S.RESUMING)

    def may_set(self, new: int) -> bool:
        """Whether this SET is a step the run takes (see the module docstring)."""
        cur = self.state
        p = model.plan(self.flags, cur, new)
        if cur == S.RESUMING and p.ok and p.arcs:
            t = self.live
            if t is None or not t.complete:
                return False  # a correct driver must refuse the load: the resume suites' business
        if cur == S.ERROR and new != S.ERROR and self.real and self.profile.warn_on_set_from_error \
                and not self.run_hazards:
            return False  # trips the core's WARN_ON (fatal under panic_on_warn)
        blocked = cur == S.STOP_COPY and new in (S.PRE_COPY, S.PRE_COPY_P2P) and model.supports(self.flags, new)
        return not (blocked and not self.profile.blocked_arc_fix)  # spins for ever in the core

    def next_states(self) -> list[State]:
        """The states one header arc away that a SET may go to from here (a walk through the FSM)."""
        return sorted({b for a, b in model.header_arcs(self.flags) if a == self.state and self.may_set(b)})

    # --- steps ----------------------------------------------------------------------------------------
    def set_state(self, new: int) -> None:
        """SET MIG_DEVICE_STATE to ``new`` (any value, legal or not), judged against the model."""
        if not self.may_set(new):
            return
        self._record("set_state", new)
        cur = self.state
        self._expect_state(f"before SET {state_name(new)}")
        if isinstance(self.dev, ArcTrace):
            self.dev.take_arcs()
        blocked = cur == S.STOP_COPY and new in (S.PRE_COPY, S.PRE_COPY_P2P) and model.supports(self.flags, new)
        stream: DataStream | None = None
        if blocked:
            res = run_contained(lambda: set_and_get(self.dev, new), self.hazard_timeout)
            if res.hung:
                self.judge.check("ARC.BLOCKED", False, expected="the request fails within the timeout",
                                 observed=f"the ioctl hung for {res.seconds:.1f} s",
                                 context=f"request: SET {cur.name} -> {state_name(new)} {self._where()}")
            if res.error:
                raise RuntimeError(f"contained request failed: {res.error}")
            err, got_fd, after = res.value if res.value else (res.errno, False, get_state(self.dev))
        else:
            try:
                stream = set_state(self.dev, new)
                err = 0
            except OSError as exc:
                err = exc.errno or errno.EIO
            got_fd, after = stream is not None, get_state(self.dev)
        if stream is not None:
            self.others.append(stream)
        if cur == S.ERROR and isinstance(self.dev, KernelLog):
            self.dev.take_kernel_messages()  # the WARN a SET from ERROR trips is its known effect
        trace = self.dev.take_arcs() if isinstance(self.dev, ArcTrace) and not blocked else None
        p = model.plan(self.flags, cur, new)
        t = self.live
        loading = p.ok and (S.RESUMING, S.STOP) in p.arcs and t is not None and t.kind == "resuming"
        ctx = f"step {len(self.log)}: SET {cur.name} -> {state_name(new)}"
        loaded = True
        if loading and t is not None:
            loaded = self.judge.check("RESUME.COMPATIBLE", err == 0,
                                      expected="write() took the complete stream, so leaving RESUMING succeeds",
                                      observed=f"{errno_name(err)}, GET reports {state_name(after)}",
                                      context=f"{ctx}, after {t.writes} write() calls took all {len(t.image)} bytes")
        if loaded:  # a failed load (a tolerated finding) is not judged again as the SET's ARC.TRANSITION
            checks.judge_set(self.judge, self.flags, cur, new, err, got_fd, after, ctx, trace)
        if 0 <= after < len(State):
            self.state = S(after)  # (a tolerated finding may leave it elsewhere than the model says)
        if not p.ok or err:
            return
        self._apply_arcs(p.arcs)
        if stream is not None:
            self.others.remove(stream)
            self._new_track(stream, self.state)
        if loading and t is not None and t.digest is not None and self.state == S.STOP \
                and isinstance(self.dev, DeviceProfile):
            checks.check_digest(self.judge, t.digest, self.dev.state_digest(), f"after {ctx} loaded the stream")

    def read(self, size: int) -> None:
        """read() on the live saving fd, judged as PRE_COPY's or STOP_COPY's stream."""
        t = self.live
        if not self.saving() or t is None:
            return
        self._record("read", size)
        ctx = f"step {len(self.log)}: read({size}) on the fd from {t.started.name}, {t.got} bytes read, " \
              f"{self._where()}"
        if not t.stop_copy:
            before = self._counters(t, ctx)
            if t.fresh:
                checks.check_entry_counters(self.judge, before, ctx)
            if t.last_info is not None:
                checks.check_initial_not_growing(self.judge, before, t.last_info, ctx)
            t.last_info, t.fresh = before, False
        err, data = _call(lambda: t.stream.read(size))
        if not t.stop_copy:
            assert t.last_info is not None
            if not data and t.last_info.initial_bytes + t.last_info.dirty_bytes:
                # the counters are estimates: wait (bounded) for the data they announced before judging
                data, err, again = settle_early_end(t.stream, size, lambda: self._counters(t, ctx))
                if not data and again is not None:
                    t.last_info = again
                    ctx += f", after waiting up to {PRECOPY_WAIT:g} s with poll() and reading again (twice)"
            if data:
                t.got += len(data)
                return
            if t.moved and err not in (0, errno.ENOMSG):
                checks.check_saving_group_read(self.judge, err, ctx)
            checks.check_precopy_end(self.judge, t.last_info, err, ctx)
            return
        if t.moved and err not in (0, errno.ENOMSG, errno.EIO):
            checks.check_saving_group_read(self.judge, err, ctx)
        checks.check_stopcopy_read(self.judge, err, data, t.ended_read, ctx)
        t.got += len(data or b"")
        t.ended_read = t.ended_read or not data

    def drain(self, size: int, most: int = 64) -> None:
        """read(size) until a read gives no data (PRE_COPY's temporary end, STOP_COPY's 0), ``most`` reads
        at most: each read is its own step."""
        for _ in range(most):
            t = self.live
            if not self.saving() or t is None:
                return
            got, ended = t.got, t.ended_read
            self.read(size)
            if t.got == got or t.ended_read != ended:
                return

    def precopy_info(self) -> None:
        """VFIO_MIG_GET_PRECOPY_INFO on the live saving fd: counters in PRE_COPY, EINVAL elsewhere (only on a
        device with PRE_COPY: the ioctl binds only those, vfio.h:1271; pds's data fds have none, ENOTTY)."""
        t = self.live
        if not self.saving() or t is None or not self.flags & MigFlag.PRE_COPY:
            return
        self._record("precopy_info")
        ctx = f"step {len(self.log)}: GET_PRECOPY_INFO on the fd from {t.started.name} {self._where()}"
        if self.state in PRECOPY_STATES:
            info = self._counters(t, ctx)
            if t.fresh:
                checks.check_entry_counters(self.judge, info, ctx)
            if t.last_info is not None:
                checks.check_initial_not_growing(self.judge, info, t.last_info, ctx)
            t.last_info, t.fresh = info, False
            return
        err, _ = _call(lambda: precopy_info(t.stream))
        checks.check_info_outside_precopy(self.judge, err, f"on the fd from {t.started.name} {self._where()}")

    def write(self, size: int) -> None:
        """write() the next ``size`` bytes of the saved stream to the live resuming fd."""
        t = self.live
        if not self.resuming() or t is None:
            return
        self._record("write", size)
        piece = t.image[t.written:t.written + size]
        err, n = _call(lambda: t.stream.write(piece))
        split = t.writes > 0 or len(piece) < len(t.image)
        ctx = f"step {len(self.log)}: write() of {len(piece)} bytes at offset {t.written} of a " \
              f"{len(t.image)}-byte stream saved from this device"
        self.judge.check("STREAM.WRITE_SPLIT" if split else "RESUME.COMPATIBLE", err == 0 and bool(n),
                         expected="write() takes bytes of a complete stream from a compatible device",
                         observed=errno_name(err) if err else f"write() took {n} bytes", context=ctx)
        t.written += n or 0
        t.writes += 1

    def wrong_direction(self) -> None:
        """write() on the saving fd, or read() on the resuming fd: EBADF."""
        t = self.live
        if not self.has_live() or t is None:
            return
        self._record("wrong_direction")
        if t.kind == "saving":
            err, _ = _call(lambda: t.stream.write(b"x"))
            checks.check_direction(self.judge, err, f"write() on a saving fd {self._where()}")
        else:
            err, _ = _call(lambda: t.stream.read(16))
            checks.check_direction(self.judge, err, f"read() on a resuming fd {self._where()}")

    def close_fd(self) -> None:
        """Close the live session's fd early (a resume can then only be aborted by reset)."""
        t = self.live
        if not self.has_live() or t is None:
            return
        self._record("close_fd")
        t.stream.close()
        t.closed = True

    def read_ended(self, index: int) -> None:
        """The fd of a session that ended: a saving fd yields nothing, one ended by reset takes nothing."""
        olds = [t for t in self.ended if t.kind == "saving" or t.end_rule == "RESET.DEAD_FDS"]
        if not olds:
            return
        self._record("read_ended", index)
        t = olds[index % len(olds)]
        check_dead(self.judge, t.end_rule, Live(t.kind, t.stream),
                   f"step {len(self.log)}: the session from {t.started.name} ended by {t.end_why}, {self._where()}")

    def reset(self) -> None:
        """VFIO_DEVICE_RESET: RUNNING, every session ended."""
        self._record("reset")
        before = self.state
        if self.live is not None and not self.live.closed:
            self._end_live("RESET.DEAD_FDS", f"VFIO_DEVICE_RESET in {before.name}")
        self.live = None
        reset_out_of(self.dev, self.judge, f"step {len(self.log)}")
        self.state = S.RUNNING

    def dirty(self, seed: int) -> None:
        """The device changes its state, as a running guest makes it (where a device profile can)."""
        if not isinstance(self.dev, DeviceProfile):
            return
        self._record("dirty", seed)
        self.dev.dirty(seed)
        if self.live is not None and self.state in PRECOPY_STATES:
            self.live.fresh = False

    def data_size(self) -> None:
        """GET MIG_DATA_SIZE, which works in every state."""
        self._record("data_size")
        err, _ = _call(lambda: data_size(self.dev))
        checks.check_data_size(self.judge, err, self.state)

    def get(self) -> None:
        """GET MIG_DEVICE_STATE three times: data_fd -1 and the state the model expects."""
        self._record("get")
        state, fd = get_state_fd(self.dev)
        again = [state, get_state(self.dev), get_state(self.dev)]
        checks.check_get(self.judge, self.state, fd, again, f"step {len(self.log)}")

    def save_image(self) -> None:
        """Save a complete stream by legal single arcs (-> STOP -> STOP_COPY, read it all, -> STOP): the
        stream later resume sessions are given."""
        if not self.can_save():
            return
        self._record("save_image")
        self._walk_to_stop()
        data = save(self.dev, self.flags, self.judge, self.session)
        self._take_session_fds()
        self.image = data
        self.image_digest = self.dev.state_digest() if isinstance(self.dev, DeviceProfile) else None

    def full_cycle(self) -> None:
        """A full migration onto the device itself: save, reset (the device back to its initial state),
        resume; the load must work and give back the saved state."""
        if not self.can_save():
            return
        self._record("full_cycle")
        self._walk_to_stop()
        data = save(self.dev, self.flags, self.judge, self.session)
        self._take_session_fds()
        digest = self.dev.state_digest() if isinstance(self.dev, DeviceProfile) else None
        reset_out_of(self.dev, self.judge, f"step {len(self.log)}: between saving and resuming")
        self.state = S.RUNNING
        res = load(self.dev, self.flags, self.judge, self.session, data)
        checks.check_loaded(self.judge, "RESUME.COMPATIBLE", res,
                            f"step {len(self.log)}: resuming a {len(data)}-byte stream saved from this device")
        self._take_session_fds()
        self.state = S.STOP
        self.image, self.image_digest = data, digest
        if digest is not None and isinstance(self.dev, DeviceProfile):
            checks.check_digest(self.judge, digest, self.dev.state_digest(),
                                f"step {len(self.log)}: after a full save/resume cycle on the device itself")

    def inject_error(self) -> None:
        """Put the device into ERROR (the mock's fault hook)."""
        if not isinstance(self.dev, ErrorInjection):
            return
        self._record("inject_error")
        self.dev.inject_error()
        self.state = S.ERROR
        if self.live is not None:
            self.others.append(self.live.stream)  # what ERROR does to a session the uAPI does not say
            self.live = None

    # --- helpers -----------------------------------------------------------------------------------
    def _counters(self, t: Track, ctx: str) -> PrecopyInfo:
        """GET_PRECOPY_INFO in a PRE_COPY state; on a session that moved within the saving group, a
        failure is the fd's (FD.SAVING_GROUP), as driving.drain_in_group judges a read."""
        if t.moved:
            err, info = _call(lambda: precopy_info(t.stream))
            if err:
                checks.check_saving_group_read(self.judge, err, f"GET_PRECOPY_INFO: {ctx}")
            if info is not None:
                return info  # type: ignore[no-any-return]
        return checks.precopy_info_or_fail(t.stream, self.judge, ctx)

    def _walk_to_stop(self) -> None:
        p = model.plan(self.flags, self.state, S.STOP)
        walk(self.dev, self.flags, self.judge, self.session, S.STOP, f"step {len(self.log)}")
        self._apply_arcs(p.arcs)
        self.state = S.STOP

    def _take_session_fds(self) -> None:
        """The fds a composite step opened (driving.save / load keep every fd a SET returned, wanted or
        not): closed at the end, not judged again."""
        self.others.extend(self.session.streams)
        self.session.streams.clear()

    # --- a run ---------------------------------------------------------------------------------------
    def finish(self) -> None:
        """The end of a run: every fd closed; on a shared device, a reset back to RUNNING (judged)."""
        self.close_all()
        if self.reset_at_end and self.state != S.RUNNING:
            reset_out_of(self.dev, self.judge, "the end of the sequence")
            self.state = S.RUNNING

    def close_all(self) -> None:
        streams = [t.stream for t in (self.live, *self.ended) if t is not None] + self.others
        self.live, self.ended, self.others = None, [], []
        self.session.close_all()
        for s in streams:
            try:
                s.close()
            except OSError:
                pass


def _call(fn: Callable[[], Any]) -> tuple[int, Any]:
    try:
        return 0, fn()
    except OSError as exc:
        return exc.errno or errno.EIO, None
