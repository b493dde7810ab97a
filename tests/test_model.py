"""The reference model against the kernel's own tables and the header's path rules."""

from __future__ import annotations

import re
from collections import deque

import pytest

from tests.kernel_source import require_source
from vfio_mig_cts.backends.mock import paths as mock_paths
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import MigFlag, State

FEATURE_SETS = (1, 3, 5, 7)
FLAG_VALUES = {"VFIO_MIGRATION_STOP_COPY": MigFlag.STOP_COPY, "VFIO_MIGRATION_P2P": MigFlag.P2P,
               "VFIO_MIGRATION_PRE_COPY": MigFlag.PRE_COPY, "~0U": 0xFFFFFFFF}


def _function_body(src: str) -> str:
    start = src.index("int vfio_mig_get_next_state(")
    return src[start:src.index("EXPORT_SYMBOL_GPL(vfio_mig_get_next_state)", start)]


def parse_fsm_table(src: str) -> dict[State, dict[State, State]]:
    body = _function_body(src)
    table_src = body[body.index("vfio_from_fsm_table[VFIO_DEVICE_NUM_STATES]"):body.index("state_flags_table")]
    table: dict[State, dict[State, State]] = {}
    for row in re.finditer(r"\[VFIO_DEVICE_STATE_(\w+)\]\s*=\s*\{(.*?)\}", table_src, re.S):
        cells = re.findall(r"\[VFIO_DEVICE_STATE_(\w+)\]\s*=\s*VFIO_DEVICE_STATE_(\w+)", row.group(2))
        table[State[row.group(1)]] = {State[a]: State[b] for a, b in cells}
    return table


def parse_state_flags(src: str) -> dict[State, int]:
    body = _function_body(src)
    flags_src = body[body.index("state_flags_table[VFIO_DEVICE_NUM_STATES]"):]
    flags_src = flags_src[:flags_src.index("};")]
    out = {}
    for name, expr in re.findall(r"\[VFIO_DEVICE_STATE_(\w+)\]\s*=\s*([^,\]]+?),\s*$", flags_src, re.M | re.S):
        value = 0
        for term in re.split(r"\s*\|\s*", " ".join(expr.split())):
            value |= FLAG_VALUES[term]
        out[State[name]] = value
    return out


def test_fsm_table_matches_kernel_source() -> None:
    src = (require_source() / "drivers/vfio/vfio_main.c").read_text()
    parsed = parse_fsm_table(src)
    assert len(parsed) == 8 and all(len(row) == 8 for row in parsed.values())
    assert parsed == model.FSM_TABLE


def test_state_flags_match_kernel_source() -> None:
    src = (require_source() / "drivers/vfio/vfio_main.c").read_text()
    assert parse_state_flags(src) == model.STATE_FLAGS


def _rule_paths(flags: int, cur: State, new: State) -> list[tuple[State, ...]]:
    """Every shortest path over the header's arcs obeying the saving-group rule (breadth first)."""
    arcs = model.header_arcs(flags)
    best: list[tuple[State, ...]] = []
    todo: deque[tuple[State, ...]] = deque([(cur,)])
    while todo:
        path = todo.popleft()
        if best and len(path) > len(best[0]):
            break
        if path[-1] == new:
            best.append(path)
            continue
        for a, b in arcs:
            if a == path[-1] and b not in path:
                cand = (*path, b)
                if _obeys_saving_rule(cand, new):
                    todo.append(cand)
    return best


def _obeys_saving_rule(path: tuple[State, ...], new: State) -> bool:
    """'The path cannot have saving group states as interior arcs, only starting/end states.'

    Read with the core's own list of combinations: a path that starts and ends in the saving group
    may move inside it (PRE_COPY -> PRE_COPY_P2P -> STOP_COPY); no other path passes through it.
    """
    interior = path[1:-1] if path[-1] == new else path[1:]
    if path[0] in model.SAVING_GROUP and new in model.SAVING_GROUP:
        return all(s in model.SAVING_GROUP for s in interior)
    return not any(s in model.SAVING_GROUP for s in interior)


@pytest.mark.parametrize("flags", FEATURE_SETS)
def test_model_paths_are_the_header_rule_paths(flags: int) -> None:
    """Every model path is a shortest rule-abiding path over the header's arcs; refusals have none."""
    blocked = {(State.STOP_COPY, State.PRE_COPY), (State.STOP_COPY, State.PRE_COPY_P2P)}
    for cur in model.supported_states(flags):
        for new in model.supported_states(flags):
            p = model.plan(flags, cur, new)
            if cur == new:
                assert p.ok and not p.arcs
                continue
            candidates = _rule_paths(flags, cur, new)
            if (cur, new) in blocked:
                assert not p.ok, f"{cur.name}->{new.name} must be refused"
                continue
            assert p.ok, f"{cur.name}->{new.name} refused by the model"
            assert p.path in candidates, f"{cur.name}->{new.name}: model {p.describe()}, rule paths {candidates}"


@pytest.mark.parametrize("flags", FEATURE_SETS)
def test_mock_walk_agrees_with_model(flags: int) -> None:
    """The mock derives its walk independently (BFS); it and the model must agree everywhere."""
    for cur in model.supported_states(flags):
        for new in model.supported_states(flags):
            p = model.plan(flags, cur, new)
            mock = mock_paths.shortest_path(flags, cur, new)
            want = (p.path or (cur,)) if p.ok else None
            assert mock == want, f"{cur.name}->{new.name}: mock {mock}, model {p.describe()}"


def test_refusals() -> None:
    assert not model.plan(7, State.RUNNING, State.ERROR).ok
    assert not model.plan(1, State.RUNNING, State.RUNNING_P2P).ok
    assert not model.plan(7, State.RUNNING, 8).ok
    err = model.plan(7, State.ERROR, State.RUNNING)
    assert not err.ok and err.warns
    assert model.plan(7, State.ERROR, State.ERROR).ok


def test_sessions() -> None:
    assert model.plan(7, State.RUNNING, State.PRE_COPY).new_fd
    assert not model.plan(7, State.PRE_COPY, State.STOP_COPY).new_fd
    assert model.plan(7, State.PRE_COPY, State.RESUMING).new_fd
    assert model.plan(7, State.PRE_COPY, State.RESUMING).ends_session
    assert model.plan(1, State.RUNNING, State.STOP_COPY).new_fd
    assert not model.plan(1, State.STOP_COPY, State.STOP_COPY).new_fd
