"""The mock core's path walk: the next single arc toward a requested state.

Derived independently of the reference model: a breadth-first search over the arcs the core's
comment in ``vfio_mig_get_next_state()`` requires drivers to implement, under the header's two path
rules (shortest path; no saving-group state in the interior), with the two blocked arcs refused.
"""

from __future__ import annotations

from collections import deque
from functools import cache

from vfio_mig_cts.uapi.vfio import MigFlag, State

S = State

# "The coding in this table requires the driver to implement the following FSM arcs" (vfio_main.c).
_BASE_ARCS = {(S.RESUMING, S.STOP), (S.STOP, S.RESUMING), (S.STOP, S.STOP_COPY), (S.STOP_COPY, S.STOP)}
_P2P_ARCS = {(S.RUNNING, S.RUNNING_P2P), (S.RUNNING_P2P, S.RUNNING), (S.RUNNING_P2P, S.STOP),
             (S.STOP, S.RUNNING_P2P)}
_PRECOPY_ARCS = {(S.RUNNING, S.PRE_COPY), (S.PRE_COPY, S.RUNNING), (S.PRE_COPY, S.STOP_COPY)}
_PRECOPY_P2P_ARCS = {(S.PRE_COPY, S.RUNNING), (S.PRE_COPY, S.PRE_COPY_P2P), (S.PRE_COPY_P2P, S.PRE_COPY),
                     (S.PRE_COPY_P2P, S.RUNNING_P2P), (S.PRE_COPY_P2P, S.STOP_COPY),
                     (S.RUNNING, S.PRE_COPY), (S.RUNNING_P2P, S.PRE_COPY_P2P)}
_NO_P2P_ARCS = {(S.RUNNING, S.STOP), (S.STOP, S.RUNNING)}

SAVING = frozenset({S.PRE_COPY, S.PRE_COPY_P2P, S.STOP_COPY})
BLOCKED = frozenset({(S.STOP_COPY, S.PRE_COPY), (S.STOP_COPY, S.PRE_COPY_P2P)})


@cache
def states_for(flags: int) -> frozenset[State]:
    """The states a device with these flags supports (RUNNING and ERROR always exist)."""
    if not flags & MigFlag.STOP_COPY:
        return frozenset()
    have = {S.RUNNING, S.STOP, S.STOP_COPY, S.RESUMING}
    if flags & MigFlag.P2P:
        have.add(S.RUNNING_P2P)
    if flags & MigFlag.PRE_COPY:
        have.add(S.PRE_COPY)
        if flags & MigFlag.P2P:
            have.add(S.PRE_COPY_P2P)
    return frozenset(have)


@cache
def arcs_for(flags: int) -> frozenset[tuple[State, State]]:
    """The single arcs a driver with these flags implements."""
    p2p, pre = bool(flags & MigFlag.P2P), bool(flags & MigFlag.PRE_COPY)
    arcs = set(_BASE_ARCS)
    if p2p:
        arcs |= _P2P_ARCS
    else:
        arcs |= _NO_P2P_ARCS
    if pre and p2p:
        arcs |= _PRECOPY_P2P_ARCS
    elif pre:
        arcs |= _PRECOPY_ARCS
    return frozenset(arcs)


@cache
def shortest_path(flags: int, cur: State, new: State) -> tuple[State, ...] | None:
    """The shortest arc path from cur to new with no saving state in its interior, or None.

    A path that starts and ends in the saving group may move within it (PRE_COPY -> PRE_COPY_P2P ->
    STOP_COPY is one session throughout, as the core's comment lists); any other path passes through
    no saving state.
    """
    if (cur, new) in BLOCKED:
        return None
    arcs = arcs_for(flags)
    prev: dict[State, State] = {}
    todo: deque[State] = deque([cur])
    seen = {cur}
    while todo:
        here = todo.popleft()
        if here == new:
            break
        if here != cur and here in SAVING and not (new in SAVING and _within_group(prev, cur, here)):
            continue  # a saving state may end a path, never continue one from outside the group
        for a, b in sorted(arcs):
            if a == here and b not in seen:
                seen.add(b)
                prev[b] = here
                todo.append(b)
    if new not in seen:
        return None
    path = [new]
    while path[-1] != cur:
        path.append(prev[path[-1]])
    return tuple(reversed(path))


def _within_group(prev: dict[State, State], cur: State, here: State) -> bool:
    """Whether the path found from cur to here stays inside the saving group throughout."""
    node = here
    while True:
        if node not in SAVING:
            return False
        if node == cur:
            return True
        node = prev[node]
