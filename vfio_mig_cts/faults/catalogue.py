"""The fault catalogue: faulty mocks as data.

Each entry names the rule it breaks, a small declarative change to the mock (``Quirks`` knobs, and
a kernel profile where the fault is the core's), and the tests that must fail against it. The
suite's own tests run every entry: each listed test must fail (or warn, for should/convention
rules, which ``--strict-rules`` turns into failures), every failure must belong to the entry's rule family,
and the correct mock must pass everything.

``python -m vfio_mig_cts.faults.catalogue [NAME...]`` lists the entries (or those named) with their rules
and quotes; an unknown name is bad input (exit 4).
"""

from __future__ import annotations

import sys

from vfio_mig_cts.errors import Exit
from vfio_mig_cts.faults.book import PARTS
from vfio_mig_cts.faults.entry import Fault
from vfio_mig_cts.spec.registry import RULES

ARCS = "suites/test_arcs.py::test_arc"
PLUMB = "suites/test_plumbing.py::"

_FAULTS: tuple[Fault, ...] = (
    Fault("accepts-blocked-arc", "ARC.BLOCKED",
          "executes STOP_COPY -> PRE_COPY{,_P2P} instead of refusing it",
          {"accept_blocked_arc": True},
          (f"{ARCS}[pre_copy-STOP_COPY->PRE_COPY]", f"{ARCS}[p2p+pre_copy-STOP_COPY->PRE_COPY_P2P]")),
    Fault("hangs-on-blocked-arc", "ARC.BLOCKED",
          "the driver spins on a blocked arc although the core has the fix (contained, reported as a hang)",
          {"hang_on_blocked_arc": True},
          (f"{ARCS}[pre_copy-STOP_COPY->PRE_COPY]", f"{ARCS}[p2p+pre_copy-STOP_COPY->PRE_COPY]")),
    Fault("fd-where-none-due", "ARC.DATA_FD",
          "returns a data_fd from arcs that start no session",
          {"fd_where_none_due": True},
          (f"{ARCS}[stop_copy-RUNNING->STOP]", f"{ARCS}[p2p-STOP->RUNNING_P2P]",
           f"{ARCS}[p2p+pre_copy-PRE_COPY->STOP_COPY]")),
    Fault("no-fd-on-session-start", "ARC.DATA_FD",
          "starts saving/resuming sessions without returning their data_fd",
          {"no_fd_on_session_start": True},
          (f"{ARCS}[stop_copy-STOP->STOP_COPY]", f"{ARCS}[pre_copy-RUNNING->PRE_COPY]")),
    Fault("keeps-old-state", "ARC.TRANSITION",
          "reports success but stays in the old state",
          {"keep_old_state": True},
          (f"{ARCS}[stop_copy-RUNNING->STOP]", f"{ARCS}[p2p+pre_copy-PRE_COPY_P2P->RUNNING]")),
    Fault("refused-request-moves", "ARC.FAILED_STATE",
          "after refusing a request the device is left in another state",
          {"refused_request_moves": True},
          (f"{ARCS}[stop_copy-RUNNING->ERROR]", f"{ARCS}[p2p-STOP->8]",
           f"{ARCS}[stop_copy-RUNNING->RUNNING_P2P]")),
    Fault("takes-longer-path", "ARC.SHORTEST_PATH",
          "combination requests go there and back again before taking the shortest path",
          {"longer_path": True},
          (f"{ARCS}[p2p-RUNNING->STOP_COPY]", f"{ARCS}[p2p+pre_copy-RUNNING->RESUMING]")),
    Fault("passes-through-saving-state", "ARC.NO_SAVING_INTERIOR",
          "paths leaving STOP detour through STOP_COPY",
          {"through_saving_state": True},
          (f"{ARCS}[stop_copy-STOP->RUNNING]", f"{ARCS}[p2p-STOP->RUNNING]")),
    Fault("leaves-error-without-reset", "ARC.ERROR_EXIT",
          "SET from ERROR succeeds instead of requiring VFIO_DEVICE_RESET",
          {"leave_error_without_reset": True},
          (f"{ARCS}[stop_copy-ERROR->RUNNING]", f"{ARCS}[p2p+pre_copy-ERROR->STOP]")),
    Fault("masks-state-number", "ARC.OUT_OF_RANGE",
          "SET keeps only the low 3 bits of device_state, so 0xffffffff means PRE_COPY_P2P",
          {"state_masked_to_3_bits": True},
          (f"{ARCS}[p2p+pre_copy-RUNNING->0xffffffff]", f"{ARCS}[p2p+pre_copy-STOP->0xffffffff]")),
    Fault("accepts-error-target", "ARC.ERROR_TARGET",
          "SET(ERROR) is accepted and moves the device to ERROR",
          {"error_target_accepted": True},
          (f"{ARCS}[stop_copy-RUNNING->ERROR]", f"{ARCS}[p2p+pre_copy-PRE_COPY->ERROR]")),
    Fault("accepts-unsupported-state", "ARC.UNSUPPORTED",
          "optional states work although the MIGRATION flags do not advertise them",
          {"unsupported_state_accepted": True},
          (f"{ARCS}[stop_copy-RUNNING->RUNNING_P2P]", f"{ARCS}[p2p-RUNNING->PRE_COPY]")),
    Fault("refusal-wrong-errno", "ARC.REFUSAL_ERRNO",
          "refused requests (a blocked arc, ERROR or an unsupported state as the target) fail with EPERM, not "
          "the core's EINVAL",
          {"refusal_errno": 1},
          (f"{ARCS}[pre_copy-STOP_COPY->PRE_COPY]", f"{ARCS}[stop_copy-RUNNING->ERROR]",
           f"{ARCS}[stop_copy-RUNNING->RUNNING_P2P]")),
    Fault("same-state-new-session", "ARC.SAME_STATE",
          "SET to the current saving state opens a new session",
          {"same_state_new_fd": True},
          (f"{ARCS}[stop_copy-STOP_COPY->STOP_COPY]", f"{ARCS}[pre_copy-PRE_COPY->PRE_COPY]")),
    Fault("get-returns-fd", "ARC.GET_FD",
          "GET writes 0 into data_fd instead of -1",
          {"get_fd_not_minus_one": True},
          ("suites/test_arcs.py::test_get_reports_no_fd_and_stays[*]",)),
    Fault("state-drifts", "ARC.NO_ASYNC",
          "the device leaves STOP by itself",
          {"state_drifts": True},
          ("suites/test_arcs.py::test_get_reports_no_fd_and_stays[*]",)),
    # --- feature plumbing ---
    Fault("accepts-short-argsz", "FEAT.ARGSZ", "argsz below the 8-byte header is accepted",
          {"accept_short_argsz": True}, (f"{PLUMB}test_argsz_below_header[*]",)),
    Fault("ignores-unknown-flags", "FEAT.UNKNOWN_FLAGS", "undefined flag bits are ignored",
          {"accept_unknown_flags": True}, (f"{PLUMB}test_unknown_flag_bits[*]",)),
    Fault("accepts-get-and-set", "FEAT.GET_SET", "GET|SET without PROBE is accepted",
          {"accept_get_and_set": True}, (f"{PLUMB}test_get_and_set_without_probe[*]",)),
    Fault("probe-needs-payload", "FEAT.PROBE_NO_DATA", "PROBE without a payload is refused",
          {"probe_needs_payload": True}, (f"{PLUMB}test_probe_without_payload[*]",)),
    Fault("probe-ignores-ops", "FEAT.PROBE_OPS", "PROBE|SET succeeds on GET-only features",
          {"probe_ignores_ops": True},
          (f"{PLUMB}test_probe_reports_methods[*-MIGRATION]", f"{PLUMB}test_probe_reports_methods[*-MIG_DATA_SIZE]")),
    Fault("accepts-wrong-op", "FEAT.WRONG_OP", "SET on GET-only features (and GET on SET-only) accepted",
          {"accept_wrong_op": True},
          (f"{PLUMB}test_wrong_method[*-SET-MIGRATION]", f"{PLUMB}test_wrong_method[*-SET-MIG_DATA_SIZE]")),
    Fault("accepts-no-op", "FEAT.NO_OP", "a call with neither GET, SET nor PROBE is accepted",
          {"accept_no_op": True}, (f"{PLUMB}test_neither_get_nor_set[*]",)),
    Fault("accepts-short-payload", "FEAT.SHORT_PAYLOAD", "payloads shorter than the feature's struct accepted",
          {"accept_short_payload": True}, (f"{PLUMB}test_short_payload[*]",)),
    Fault("unknown-feature-wrong-errno", "FEAT.UNKNOWN_ID", "unknown feature ids give EOPNOTSUPP",
          {"unknown_feature_errno": 95}, (f"{PLUMB}test_unknown_feature_id[*]",)),
    Fault("flags-without-stop-copy", "MIG.STOP_COPY", "MIGRATION reports PRE_COPY without STOP_COPY",
          {"migration_flags_override": 4}, (f"{PLUMB}test_migration_flags[*]",)),
    Fault("flags-undefined-bits", "MIG.COMBINATIONS", "MIGRATION reports an undefined flag bit",
          {"migration_flags_override": 1 | 8}, (f"{PLUMB}test_migration_flags[*]",)),
    Fault("reset-keeps-state", "ARC.RESET", "VFIO_DEVICE_RESET leaves the device where it was",
          {"reset_keeps_state": True}, ("suites/test_arcs.py::test_reset_returns_to_running[*]",)),
)

def _assemble() -> dict[str, Fault]:
    """The catalogue: the entries above plus each suite family's part (vfio_mig_cts/faults/book/*.py)."""
    out: dict[str, Fault] = {}
    for f in (*_FAULTS, *(f for part in PARTS for f in part)):
        if f.name in out:
            raise RuntimeError(f"fault {f.name} defined twice")
        out[f.name] = f
    return out


CATALOGUE: dict[str, Fault] = _assemble()


USAGE = "python -m vfio_mig_cts.faults.catalogue [NAME...]   (no name: every entry)"


def main(argv: list[str]) -> int:
    """List the catalogue (or the entries named): each with its rule, force and quote; 4 for an unknown name."""
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {USAGE}")
        return 0
    unknown = [a for a in argv if a not in CATALOGUE]
    if unknown:
        what = "option" if unknown[0].startswith("-") else "fault"
        print(f"catalogue: unknown {what} {unknown[0]!r}: usage: {USAGE}", file=sys.stderr)
        return int(Exit.BAD_INPUT)
    for f in (CATALOGUE[a] for a in argv) if argv else CATALOGUE.values():
        r = RULES[f.rule]
        print(f"{f.name}\n  breaks {r.id} ({r.force.value}, {r.source}): \"{r.quote}\"\n  {f.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
