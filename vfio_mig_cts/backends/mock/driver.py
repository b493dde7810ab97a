"""The mock migration driver: one device's state machine, internal state and sessions.

It behaves as a correct upstream driver does: a ``while (cur != new)`` loop over the core's next
state, one arc at a time; saving and resuming sessions over a real byte stream; reset to RUNNING.
``Quirks`` bend that behaviour for the fault catalogue.
"""

from __future__ import annotations

import errno
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from vfio_mig_cts.backends.mock import paths, resuming
from vfio_mig_cts.backends.mock.dma import DmaLog
from vfio_mig_cts.backends.mock.quirks import Quirks
from vfio_mig_cts.backends.mock.streams import CHUNK, END_RECORD, HEADER, RECORD, ResumeStream, SaveStream
from vfio_mig_cts.backends.protocol import DataStream, KernelProfile
from vfio_mig_cts.uapi.vfio import MigFlag, State

S = State
RUNNING_STATES = frozenset({S.RUNNING, S.RUNNING_P2P, S.PRE_COPY, S.PRE_COPY_P2P})
# Arcs that start or end a data session: a detour through one of them would lose the session's data.
_SESSION_ARCS = frozenset({(S.RUNNING, S.PRE_COPY), (S.RUNNING_P2P, S.PRE_COPY_P2P), (S.STOP, S.STOP_COPY),
                           (S.STOP, S.RESUMING), (S.PRE_COPY, S.RUNNING), (S.PRE_COPY_P2P, S.RUNNING_P2P),
                           (S.STOP_COPY, S.STOP), (S.RESUMING, S.STOP)})


def _err(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)))


def initial_image(identity: int, size: int) -> bytearray:
    """The device's internal state after reset: a pattern that depends on its identity."""
    seed = identity.to_bytes(8, "little")
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        counter += 1
    return out[:size]


class SavingFile(DataStream, Protocol):
    """What the driver needs of its saving file (``SaveStream``, or a personality's own)."""

    dead: bool
    race_delay: float

    def mark_dirty(self, offset: int, length: int) -> None: ...

    def enter_stop_copy(self) -> None: ...


class ResumingFile(DataStream, Protocol):
    """What the driver needs of its resuming file (``ResumeStream``, or a personality's own)."""

    dead: bool
    race_delay: float


@dataclass
class MockConfig:
    """One mock device: its feature set, size, identity (decides compatibility), kernel and bugs.

    ``driver_class`` makes a personality's driver (vfio_mig_cts/backends/mock/personalities/) instead of the
    reference ``MockDriver``; ``driver_name`` is the name a real device of that driver reports.
    """

    flags: int = int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)
    state_size: int = 256
    identity: int = 0x5EED
    profile: KernelProfile = field(default_factory=lambda: KernelProfile("debian-6.12.117"))
    quirks: Quirks = field(default_factory=Quirks)
    dma_logging: bool = True
    hang_seconds: float = 3600.0  # how long a simulated kernel hang lasts (a forked child is killed first)
    race_delay: float = 0.0  # seconds the driver sleeps inside each arc and each read, holding its locks
    driver_class: Callable[[MockConfig], MockDriver] | None = None
    driver_name: str = "mock"


class MockDriver:
    """The device: state, memory, open sessions, and the simulated kernel log."""

    def __init__(self, cfg: MockConfig) -> None:
        self.cfg = cfg
        self.q = cfg.quirks
        self.flags = cfg.flags
        self.memory = initial_image(cfg.identity, cfg.state_size)
        self.state = S.RUNNING
        self.save: SavingFile | None = None
        self.resume: ResumingFile | None = None
        self.arcs: list[tuple[State, State]] = []
        self.kernel_log: list[str] = []
        self.precopy_v2 = False
        self.dma = DmaLog(cfg.quirks)  # the log ops' state (vfio_mig_cts/backends/mock/dma.py)
        self.lock = threading.RLock()
        self._drift_armed = False
        self._drift_armed = self._drift_armed or self.q.drift_armed_at_open  # (fault) armed before any STOP
        self.resume_book = resuming.ResumeBook()
        self._sets_since_reset = 0  # (combination_short_after)
        self._reset_mutex = threading.Lock()  # guards _reset_requested (the reset_race_* quirks)
        self._reset_requested = False
        self._frozen = False  # (frozen_after_stop) the device no longer runs

    # --- the core's vfio_mig_get_next_state(), as the mock derives it ------------------------------
    def supports(self, state: int) -> bool:
        if self.q.unsupported_state_accepted and 0 < state < len(State):
            return True
        return 0 <= state < len(State) and State(state) in paths.states_for(self.flags)

    def next_state(self, cur: State, new: int) -> State:
        if not self.supports(cur):
            self.kernel_log.append(f"WARNING: CPU: 0 PID: 1 at drivers/vfio/vfio_main.c:838 "
                                   f"vfio_mig_get_next_state (cur {cur.name})")
            raise _err(errno.EINVAL)
        if not self.supports(new):
            raise self._refusal(cur)
        target = State(new)
        if (cur, target) in paths.BLOCKED:
            if self.q.accept_blocked_arc:
                return target
            if self.q.hang_on_blocked_arc or not self.cfg.profile.blocked_arc_fix:
                self._hang()
            raise self._refusal(cur)
        flags = self.flags if not self.q.unsupported_state_accepted else 7
        path = paths.shortest_path(flags, cur, target)
        if path is None:
            raise self._refusal(cur)
        return path[1]

    def _refusal(self, cur: State) -> OSError:
        """The error of a refused request: EINVAL, as the core's vfio_mig_get_next_state() returns."""
        return _err(self.q.refusal_errno if self.q.refusal_errno and cur != S.ERROR else errno.EINVAL)

    def _hang(self) -> None:
        """Spin like the pre-fix core does (a forked child running this is killed by its parent)."""
        deadline = time.monotonic() + self.cfg.hang_seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise _err(errno.EINTR)

    # --- the driver's set_state loop ----------------------------------------------------------------
    def set_state(self, new: int) -> DataStream | None:
        with self.lock:
            start = self.state
            q = self.q
            if q.state_masked_to_3_bits:
                new &= 0x7
            resuming.leave_dangling_saving(self)
            if start == S.ERROR and new != S.ERROR and q.leave_error_without_reset and self.supports(new):
                self.state = State(new)
                return None
            if new == S.ERROR and q.error_target_accepted:
                self.state = S.ERROR
                return None
            if new == self.state and q.same_state_new_fd and self.state in paths.SAVING:
                self._end_sessions()
                return self._start_save(precopy=self.state != S.STOP_COPY)
            result: DataStream | None = None
            self._sets_since_reset += 1
            deferred = False
            try:
                if new == S.RUNNING and start == q.refuse_running_from:
                    raise self._refusal(start)  # (fault) RUNNING is not a target from here
                if new == S.ERROR:  # "ERROR cannot be specified as a device state" (vfio.h:1171), from ERROR too
                    raise self._refusal(start)
                plan = self._planned_arcs(start, new)
                if q.combination_short_after and self._sets_since_reset > q.combination_short_after:
                    plan = plan[:-1] if len(plan) > 1 else plan
                for cur, nxt in plan:
                    result = self.step(cur, nxt) or result
                    self.state = nxt
                    self._frozen = self._frozen or (nxt == S.STOP and q.frozen_after_stop)
                    if self.cfg.race_delay:
                        time.sleep(self.cfg.race_delay)
                    deferred = deferred or self._take_reset_request()
                    if deferred and q.reset_race_torn:
                        self._end_sessions()  # (fault) the walk stops here and RUNNING is forgotten
                        break
            except OSError:
                if q.refused_request_moves and self.state == start:
                    self.state = S.STOP if start != S.STOP else S.RUNNING
                raise
            if q.keep_old_state and new != start:
                self.state = start
            if result is None and q.fd_where_none_due and new != start:
                result = SaveStream(self.cfg.identity, self.memory, False, lambda: False, lambda: False, self.q)
            if q.no_fd_on_session_start:
                result = None
            if q.state_drifts and self.state == S.STOP:
                self._drift_armed = True
            if deferred and q.reset_race_keeps_session:
                self.state = S.RUNNING  # (fault) the deferred reset leaves the data fds working
            return result

    def _take_reset_request(self) -> bool:
        """(reset_race_* quirks) Whether a reset arrived while this SET holds the state lock."""
        if not (self.q.reset_race_torn or self.q.reset_race_keeps_session):
            return False
        with self._reset_mutex:
            asked, self._reset_requested = self._reset_requested, False
            return asked

    def _planned_arcs(self, start: State, new: int) -> list[tuple[State, State]]:
        """The arcs the loop will take: one next_state() call per arc, as a driver does."""
        arcs: list[tuple[State, State]] = []
        cur = start
        while cur != new:
            nxt = self.next_state(cur, new)
            arcs.append((cur, nxt))
            cur = nxt
        if len(arcs) > 1 and self.q.longer_path and (arcs[0][1], arcs[0][0]) in paths.arcs_for(self.flags) \
                and not {arcs[0], (arcs[0][1], arcs[0][0])} & _SESSION_ARCS:
            arcs = [arcs[0], (arcs[0][1], arcs[0][0]), *arcs]  # there and back again
        if self.q.through_saving_state and arcs and arcs[0][0] == S.STOP and arcs[0][1] != S.STOP_COPY:
            arcs = [(S.STOP, S.STOP_COPY), (S.STOP_COPY, S.STOP), *arcs]
        return arcs

    def step(self, cur: State, nxt: State) -> DataStream | None:
        """One FSM arc, as the driver implements it."""
        self.arcs.append((cur, nxt))
        if cur == S.RESUMING and nxt == S.STOP:
            self._load()
            self._end_sessions()
            return None
        if (cur, nxt) in {(S.PRE_COPY, S.RUNNING), (S.PRE_COPY_P2P, S.RUNNING_P2P), (S.STOP_COPY, S.STOP)}:
            self._end_sessions()
            return None
        if (cur, nxt) in {(S.RUNNING, S.PRE_COPY), (S.RUNNING_P2P, S.PRE_COPY_P2P)}:
            return self._start_save(precopy=True)
        if cur == S.STOP and nxt == S.STOP_COPY:
            return self._start_save(precopy=False)
        if (cur, nxt) == (S.PRE_COPY, S.PRE_COPY_P2P) and self.q.saving_group_breaks_fd and self.save is not None:
            self.save.dead = True
            return None
        if nxt == S.STOP_COPY and cur in (S.PRE_COPY, S.PRE_COPY_P2P) and self.save is not None:
            self.save.enter_stop_copy()
            return None
        if cur == S.STOP and nxt == S.RESUMING:
            self._end_sessions()
            self.resume = self._new_resume()
            return self.resume
        return None  # P2P quiesce/unquiesce and run/stop arcs change nothing the mock models

    def _start_save(self, precopy: bool) -> SavingFile:
        self._end_sessions()
        self.save = self._new_save(precopy)
        self.save.race_delay = self.cfg.race_delay
        return self.save

    # --- what a personality replaces (vfio_mig_cts/backends/mock/personalities/) ----------------------
    def _new_save(self, precopy: bool) -> SavingFile:
        """The saving file a session-starting arc opens (PRE_COPY's when ``precopy``)."""
        return SaveStream(self.cfg.identity, self.memory, precopy,
                          in_precopy_state=lambda: self.state in (S.PRE_COPY, S.PRE_COPY_P2P),
                          v2=lambda: self.precopy_v2, quirks=self.q)

    def _new_resume(self) -> ResumingFile:
        """The resuming file STOP -> RESUMING opens."""
        return ResumeStream(self.cfg.identity, self.cfg.state_size, self.q)

    def _reset_device(self) -> None:
        """What VFIO_DEVICE_RESET does to the device's internal state: back to its state after reset."""
        self.memory[:] = initial_image(self.cfg.identity, self.cfg.state_size)

    def opened(self) -> None:
        """What the driver's open_device does beyond the state (vfio_mig_cts/backends/mock/resuming.py)."""

    def fail(self) -> None:
        """The device failed (``ErrorInjection``): the driver is in ERROR."""
        self.state = S.ERROR

    def _load(self) -> None:
        resuming.load(self)  # validation, the resume quirks and load_not_applied: mock/resuming.py

    def _end_sessions(self) -> None:
        for s in (self.save, self.resume):
            if s is not None:
                s.dead = True
        self.save = self.resume = None

    # --- other entry points -------------------------------------------------------------------------
    def get_state(self) -> State:
        with self.lock:
            state = self.state
            if self.q.stop_changes_state and state in (S.STOP, S.STOP_COPY):
                self.memory[0] = (self.memory[0] + 1) & 0xFF  # (fault) a stopped device's state moves on
            if self._drift_armed:
                self._drift_armed = False
                self.state = S.RUNNING
            return state

    def reset(self) -> None:
        q = self.q
        if q.reset_race_torn or q.reset_race_keeps_session:
            with self._reset_mutex:
                self._reset_requested = True  # a SET holding the lock takes it over (deferred reset)
        if q.reset_race_stall_ms and not self.lock.acquire(blocking=False):
            time.sleep(q.reset_race_stall_ms / 1000)  # (fault) a reset stuck behind a state change
        elif q.reset_race_stall_ms:
            self.lock.release()
        with self.lock:
            if (q.reset_race_torn or q.reset_race_keeps_session) and not self._reset_request_pending():
                return  # a racing SET has handled it (its own, faulty way)
            self._sets_since_reset = 0
            self._frozen = False
            if not resuming.reset(self):
                return
            self._end_sessions()
            if self.q.reset_keeps_state:
                return
            self.state = S.RUNNING
            self._reset_device()

    def _reset_request_pending(self) -> bool:
        with self._reset_mutex:
            pending, self._reset_requested = self._reset_requested, False
            return pending

    def stop_copy_length(self) -> int:
        return HEADER.size + RECORD.size + self.cfg.state_size + len(END_RECORD)

    def dirty(self, seed: int) -> None:
        """Guest activity: change a few bytes of internal state (only while the device runs)."""
        with self.lock:
            if self.state not in RUNNING_STATES or self._frozen:
                return
            if self.q.precopy_freezes and self.state in (S.PRE_COPY, S.PRE_COPY_P2P):
                return
            off = (seed * 97) % self.cfg.state_size
            length = min(CHUNK // 2, self.cfg.state_size - off)
            self.memory[off:off + length] = hashlib.sha256(seed.to_bytes(8, "little")).digest()[:length]
            if self.save is not None:
                self.save.mark_dirty(off, length)

    def digest(self) -> bytes:
        with self.lock:
            return hashlib.sha256(self.memory).digest()
