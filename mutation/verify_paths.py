"""Proof by exhaustion for the surviving mutants of vfio_mig_cts/backends/mock/paths.py (mutation/equivalent.md).

``python -m mutation.verify_paths [PATHS_PY]`` applies each mutation to the module's text, loads the
result, and compares the driver's next-state answer (next state or errno) for every feature set,
every current state and every requested state (plus two out of range) with the unmutated module's.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from vfio_mig_cts.backends.mock import driver as drv_module
from vfio_mig_cts.backends.mock.backend import FEATURE_SETS
from vfio_mig_cts.uapi.vfio import State

OR = "ReplaceBinaryOperator_BitAnd_BitOr"
MUTATIONS = {
    f"paths.{OR}.2": ("    if flags & MigFlag.PRE_COPY:", "    if flags | MigFlag.PRE_COPY:"),
    f"paths.{OR}.3": ("        if flags & MigFlag.P2P:", "        if flags | MigFlag.P2P:"),
    f"paths.{OR}.5": ("bool(flags & MigFlag.PRE_COPY)", "bool(flags | MigFlag.PRE_COPY)"),
    "paths.AddNot.15": ("        if node == cur:", "        if not node == cur:"),
    "paths.ReplaceComparisonOperator_Eq_NotEq.2": ("        if node == cur:", "        if node != cur:"),
    "paths.RemoveDecorator.0": ("@cache\ndef arcs_for", "def arcs_for"),
    "paths.RemoveDecorator.1": ("@cache\ndef shortest_path", "def shortest_path"),
}


def _load(text: str) -> types.ModuleType:
    mod = types.ModuleType("paths_under_test")
    exec(compile(text, "paths_under_test", "exec"), mod.__dict__)  # our own source, mutated
    return mod


def table(paths: types.ModuleType) -> dict[tuple[int, State, int], object]:
    original = drv_module.__dict__["paths"]
    drv_module.__dict__["paths"] = paths
    try:
        out: dict[tuple[int, State, int], object] = {}
        for flags in FEATURE_SETS:
            drv = drv_module.MockDriver(drv_module.MockConfig(flags=flags))
            for cur in State:
                for new in range(-1, len(State) + 1):
                    if new == cur:
                        continue  # the driver's loop never asks
                    try:
                        out[(flags, cur, new)] = drv.next_state(cur, new)
                    except OSError as exc:
                        out[(flags, cur, new)] = exc.errno
        return out
    finally:
        drv_module.__dict__["paths"] = original


def main(argv: list[str]) -> int:
    src = Path(argv[0] if argv else "vfio_mig_cts/backends/mock/paths.py").read_text()
    base = table(_load(src))
    bad = 0
    for mid, (old, new) in MUTATIONS.items():
        if src.count(old) != 1:
            print(f"{mid}: its source text is not (once) in the module; skipped")
            continue
        mutated = table(_load(src.replace(old, new)))
        diff = [k for k in base if base[k] != mutated[k]]
        bad += bool(diff)
        print(f"{mid}: {'identical next-state table' if not diff else f'DIFFERS at {diff[:3]}'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
