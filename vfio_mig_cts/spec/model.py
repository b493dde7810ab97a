"""The reference model: the kernel core's path rules, as ``vfio_mig_get_next_state()`` has them.

Source: ``drivers/vfio/vfio_main.c`` (6.12): ``vfio_from_fsm_table`` and ``state_flags_table``.
``tests/test_model.py`` parses both tables out of the kernel source and compares them with the
data here, and checks every path against a breadth-first search of the header's path rules
("Select the shortest path"; "The path cannot have saving group states as interior arcs").

The mock backend does not import this module (its own path walk is ``backends/mock/paths.py``),
so the two can disagree and a test notices.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from functools import cache

from vfio_mig_cts.uapi.vfio import MigFlag, State

S = State

# vfio_from_fsm_table[cur][new]: the next hop before unsupported states are skipped.
FSM_TABLE: dict[State, dict[State, State]] = {
    S.STOP: {S.STOP: S.STOP, S.RUNNING: S.RUNNING_P2P, S.PRE_COPY: S.RUNNING_P2P,
             S.PRE_COPY_P2P: S.RUNNING_P2P, S.STOP_COPY: S.STOP_COPY, S.RESUMING: S.RESUMING,
             S.RUNNING_P2P: S.RUNNING_P2P, S.ERROR: S.ERROR},
    S.RUNNING: {S.STOP: S.RUNNING_P2P, S.RUNNING: S.RUNNING, S.PRE_COPY: S.PRE_COPY,
                S.PRE_COPY_P2P: S.RUNNING_P2P, S.STOP_COPY: S.RUNNING_P2P, S.RESUMING: S.RUNNING_P2P,
                S.RUNNING_P2P: S.RUNNING_P2P, S.ERROR: S.ERROR},
    S.PRE_COPY: {S.STOP: S.RUNNING, S.RUNNING: S.RUNNING, S.PRE_COPY: S.PRE_COPY,
                 S.PRE_COPY_P2P: S.PRE_COPY_P2P, S.STOP_COPY: S.PRE_COPY_P2P, S.RESUMING: S.RUNNING,
                 S.RUNNING_P2P: S.RUNNING, S.ERROR: S.ERROR},
    S.PRE_COPY_P2P: {S.STOP: S.RUNNING_P2P, S.RUNNING: S.RUNNING_P2P, S.PRE_COPY: S.PRE_COPY,
                     S.PRE_COPY_P2P: S.PRE_COPY_P2P, S.STOP_COPY: S.STOP_COPY,
                     S.RESUMING: S.RUNNING_P2P, S.RUNNING_P2P: S.RUNNING_P2P, S.ERROR: S.ERROR},
    S.STOP_COPY: {S.STOP: S.STOP, S.RUNNING: S.STOP, S.PRE_COPY: S.ERROR, S.PRE_COPY_P2P: S.ERROR,
                  S.STOP_COPY: S.STOP_COPY, S.RESUMING: S.STOP, S.RUNNING_P2P: S.STOP,
                  S.ERROR: S.ERROR},
    S.RESUMING: {S.STOP: S.STOP, S.RUNNING: S.STOP, S.PRE_COPY: S.STOP, S.PRE_COPY_P2P: S.STOP,
                 S.STOP_COPY: S.STOP, S.RESUMING: S.RESUMING, S.RUNNING_P2P: S.STOP, S.ERROR: S.ERROR},
    S.RUNNING_P2P: {S.STOP: S.STOP, S.RUNNING: S.RUNNING, S.PRE_COPY: S.RUNNING,
                    S.PRE_COPY_P2P: S.PRE_COPY_P2P, S.STOP_COPY: S.STOP, S.RESUMING: S.STOP,
                    S.RUNNING_P2P: S.RUNNING_P2P, S.ERROR: S.ERROR},
    S.ERROR: {s: S.ERROR for s in State},
}

_ALL_FLAGS = 0xFFFFFFFF  # ~0U: ERROR's requirement is never met

# state_flags_table[state]: the migration flags a state needs.
STATE_FLAGS: dict[State, int] = {
    S.STOP: MigFlag.STOP_COPY,
    S.RUNNING: MigFlag.STOP_COPY,
    S.PRE_COPY: MigFlag.STOP_COPY | MigFlag.PRE_COPY,
    S.PRE_COPY_P2P: MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY,
    S.STOP_COPY: MigFlag.STOP_COPY,
    S.RESUMING: MigFlag.STOP_COPY,
    S.RUNNING_P2P: MigFlag.STOP_COPY | MigFlag.P2P,
    S.ERROR: _ALL_FLAGS,
}

SAVING_GROUP = frozenset({S.PRE_COPY, S.PRE_COPY_P2P, S.STOP_COPY})

# Arcs that "begin the process of saving/restoring ... and will return a new data_fd" (vfio.h).
SESSION_START_ARCS = frozenset({(S.RUNNING, S.PRE_COPY), (S.RUNNING_P2P, S.PRE_COPY_P2P),
                                (S.STOP, S.STOP_COPY), (S.STOP, S.RESUMING)})
# Arcs that terminate a data transfer session (vfio.h: "The ... arc will terminate a data transfer
# session"; "Leaving RESUMING terminates a data transfer session").
SESSION_END_ARCS = frozenset({(S.PRE_COPY, S.RUNNING), (S.PRE_COPY_P2P, S.RUNNING_P2P),
                              (S.STOP_COPY, S.STOP), (S.RESUMING, S.STOP)})


# STATE_FLAGS as plain ints indexed by state: supports() runs for every arc of every plan (IntFlag
# arithmetic costs a microsecond a call there).
_NEED: tuple[int, ...] = tuple(int(STATE_FLAGS[s]) for s in sorted(State))


def supports(flags: int, state: int) -> bool:
    """Whether a device with these migration flags supports ``state`` (state_flags_table)."""
    if not 0 <= state < len(_NEED):
        return False
    need = _NEED[state]
    return (need & int(flags)) == need


def supported_states(flags: int) -> tuple[State, ...]:
    """States SET_STATE accepts as a target, in enum order (ERROR never is one)."""
    return tuple(s for s in State if supports(flags, s))


def reachable_states(flags: int) -> tuple[State, ...]:
    """States a device can be in: the supported ones plus ERROR."""
    return (S.ERROR, *supported_states(flags))


def next_state(flags: int, cur: int, new: int) -> State | None:
    """One call of ``vfio_mig_get_next_state()``: the next arc's end, or None for -EINVAL."""
    if cur >= len(State) or not supports(flags, cur):
        return None  # the core WARN_ONs here (cur == ERROR lands here too)
    if new >= len(State) or not supports(flags, new):
        return None
    nxt = FSM_TABLE[State(cur)][State(new)]
    while nxt != S.ERROR and not supports(flags, nxt):
        nxt = FSM_TABLE[nxt][State(new)]
    return None if nxt == S.ERROR else nxt


@dataclass(frozen=True)
class Plan:
    """What a correct driver does for SET_STATE(new) from ``cur``: the arcs, or an errno."""

    cur: int
    new: int
    arcs: tuple[tuple[State, State], ...]
    errno: int = 0
    warns: bool = False  # the core's WARN_ON(cur not supported) fires: a kernel splat

    @property
    def ok(self) -> bool:
        return self.errno == 0

    @property
    def new_fd(self) -> bool:
        """A new data_fd is returned: the path ends with a session-starting arc."""
        return bool(self.arcs) and self.arcs[-1] in SESSION_START_ARCS

    @property
    def ends_session(self) -> bool:
        """The path leaves the saving group or RESUMING, terminating the open session."""
        return any(arc in SESSION_END_ARCS for arc in self.arcs)

    @property
    def path(self) -> tuple[State, ...]:
        if not self.arcs:
            return ()
        return (self.arcs[0][0], *(b for _, b in self.arcs))

    def describe(self) -> str:
        if not self.ok:
            return f"{errno.errorcode[self.errno]} (no path)"
        if not self.arcs:
            return "no arcs (already there)"
        return " -> ".join(s.name for s in self.path)


@cache
def plan(flags: int, cur: State, new: int) -> Plan:
    """The driver loop ``while (cur != new) { get_next_state(); step(); }`` over the core's table.
    (A pure function of its arguments, kept once computed: a ``Plan`` is immutable.)"""
    arcs: list[tuple[State, State]] = []
    here = cur
    if new == here:
        return Plan(cur, new, ())
    warns = here >= len(State) or not supports(flags, here)
    while here != new:
        nxt = next_state(flags, here, new)
        if nxt is None:
            return Plan(cur, new, tuple(arcs), errno.EINVAL, warns=warns)
        arcs.append((here, nxt))
        here = nxt
        if len(arcs) > len(State):  # the table has no cycles; guard against edits that add one
            raise AssertionError(f"model loops from {cur.name} to {new}")
    return Plan(cur, new, tuple(arcs))


# The FSM arcs the header defines (vfio.h, "The driver implements the following behavior for the
# FSM arcs"), used by the breadth-first check of the path rules.
HEADER_ARCS: frozenset[tuple[State, State]] = frozenset({
    (S.RUNNING_P2P, S.STOP), (S.STOP_COPY, S.STOP), (S.RESUMING, S.STOP),
    (S.PRE_COPY, S.RUNNING), (S.RUNNING_P2P, S.RUNNING),
    (S.PRE_COPY_P2P, S.RUNNING_P2P), (S.RUNNING, S.RUNNING_P2P), (S.STOP, S.RUNNING_P2P),
    (S.RUNNING, S.PRE_COPY), (S.RUNNING_P2P, S.PRE_COPY_P2P), (S.STOP, S.STOP_COPY),
    (S.PRE_COPY, S.PRE_COPY_P2P), (S.PRE_COPY_P2P, S.PRE_COPY), (S.PRE_COPY_P2P, S.STOP_COPY),
    (S.STOP, S.RESUMING),
})
# "For the purpose of specification the states behave as though the device was fully running if
# not supported": without P2P, RUNNING_P2P collapses into RUNNING; the core's comment lists the
# arcs a driver must then implement ("Without P2P and precopy the driver must implement: RUNNING ->
# STOP, STOP -> RUNNING"; with precopy but no P2P: "PRE_COPY -> STOP_COPY").
EXTRA_ARCS_WITHOUT_P2P: frozenset[tuple[State, State]] = frozenset({
    (S.RUNNING, S.STOP), (S.STOP, S.RUNNING), (S.PRE_COPY, S.STOP_COPY),
})


@cache
def header_arcs(flags: int) -> frozenset[tuple[State, State]]:
    """The single arcs a device with ``flags`` implements, per the header and the core's comment."""
    arcs = set(HEADER_ARCS)
    if not flags & MigFlag.P2P:
        arcs |= EXTRA_ARCS_WITHOUT_P2P
    return frozenset((a, b) for a, b in arcs if supports(flags, a) and supports(flags, b))
