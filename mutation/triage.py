"""Triage of surviving mutants: which are equivalent, and why (writes mutation/equivalent.md).

``python -m mutation.triage`` reads the session's survivors and classifies each by the rules below:
first an explicit entry in ``BY_ID``, then the first matching ``(module, function)`` rule. A survivor
no rule covers stays open (it counts against the score) until someone answers it with a sharper test
(suites/test_sharpened.py) or adds a reason here. Answered survivors (killed on re-check) are not listed.
"""

from __future__ import annotations

import json
import sys

from mutation import runner

# Reasons, one per class of equivalence. Each says why no uAPI-observable behaviour changes.
HARNESS = ("Test-harness scaffolding, not driver logic: it shapes the simulated guest, the device names, or "
           "which identity/size the fixture gives each role; the relation the suite relies on (DUT and PEER "
           "alike, INCOMPATIBLE different) is unchanged, and nothing reaches the device's uAPI.")
HANG = ("The simulated kernel hang (`_hang`) is reached only with the hang_on_blocked_arc quirk or a profile "
        "without the blocked-arc fix; the suite's run uses debian-6.12.117 (fix present), and a hang is "
        "observed only as 'the forked child was killed', whatever its length or loop.")
IMAGE = ("The device's internal state after reset (`initial_image`) is opaque data: the same function makes "
         "the image at open and at reset, so any deterministic pattern of the right size is equally correct; "
         "the uAPI only requires that what is saved is what is loaded.")
FORMAT = ("The migration stream's format is private to the driver (vfio.h: 'The user must consider the "
          "migration data stream carried over the FD to be opaque'). Saver and loader here are the same code, "
          "so a changed constant, record layout, chunk size or error message changes bytes on the wire that "
          "no user may interpret; round trips, validation of foreign streams and the counters are unaffected.")
DIRTY_GRAIN = ("Dirty tracking granularity: marking more chunks dirty (or re-queueing them sooner) re-sends "
               "valid data. vfio.h: 'Drivers have a lot of flexibility in when and what they transfer during "
               "the PRE_COPY phase, and how they report this'; the loaded state is the same.")
ESTIMATE = ("A PRE_COPY counter estimate: vfio.h calls initial_bytes/dirty_bytes 'estimates' and gives drivers "
            "'a lot of flexibility ... how they report this'; the rules the suite checks (dirty_bytes starts at "
            "0, initial_bytes decreases and reaches 0, ENOMSG only when both are 0) hold either way.")
QUIRK_STATE = ("Quirk-only state: the mutated value is read only inside branches guarded by a knob that is off "
               "in the correct mock (combination_short_after, reset_race_*, state_drifts, longer_path, "
               "saving_group_breaks_fd, stopcopy_poll_silent, poll_misses_wakeup, precopy_early_enomsg), "
               "or the mutated condition is a conjunction with such a knob; the filter in "
               "mutation/quirk_only.py could not see through the data flow, the reason is the same.")
REDUNDANT = ("A redundant check: the same request is refused (same errno) by a later check whatever this one "
             "decides, e.g. a state 'supported' without any arc reaching it still has no path (EINVAL), or an "
             "argsz below the header was already refused.")
PATHS_TABLE = ("Verified equivalent by exhaustion (`python -m mutation.verify_paths`): the next-state table "
               "(every feature set x every current state x every requested state) is identical with and "
               "without the mutation (or the mutation only removes a cache).")
VFS = ("Kernel (VFS/core) machinery that the mock simulates and no driver controls: how long poll() sleeps "
       "between wakeups and when it times out, whether a closed fd still works. Through the real uAPI these "
       "are the kernel's, identical for every driver, so the conformance suite does not test them.")
LIMIT = ("A resource limit of the mock (it refuses a resuming stream larger than 16x its state with ENOMEM): "
         "the uAPI sets no limit, so accepting more and refusing at a different length both conform.")
EARLY_HEADER = ("When an incompatible stream is refused: the mock checks the header as soon as it is complete; "
                "with the mutant the check moves to the final load (RESUMING -> STOP). vfio.h allows the "
                "refusal at either point (RESUME.COMPATIBLE accepts a failing write() or a failing SET).")
FLAGS_612 = ("vfio_precopy_info.flags in Linux 6.12: the 6.12 uAPI says nothing about the field (it becomes "
             "meaningful only with the MIG_PRECOPY_INFOv2 opt-in of later kernels), so echoing the caller's "
             "value and writing 0 both conform to the 6.12 text the registry cites.")
POLLERR = ("What poll() reports on an ended session's fd: 0x9 (POLLERR|POLLIN) and 0x7 still tell the user the "
           "fd is done (its read() then fails with ENODEV); vfio.h requires only that the fd 'reaches end of "
           "stream or error' (FD.ENDED), which the suite checks through read(), GET_PRECOPY_INFO and poll() "
           "(any of POLLIN, POLLERR, POLLHUP: end or error).")
RACE_DELAY = ("The race-window delay (MockConfig.race_delay / widen_race_window): test scaffolding that widens "
              "race windows for the concurrency suite; SaveStream's delay is always overwritten from the "
              "config when a session starts, and resuming streams never sleep.")
OPTIONAL = ("DMA logging is optional in the uAPI (a driver may lack the DMA_LOGGING features; PROBE says so); "
            "without it the DMA suite skips with its reason, and a device without the feature conforms.")
BUFFER = ("How the mock hands the caller's buffer to a feature handler (trimmed to argsz or whole): the handlers "
          "read only their structure's bytes, and through the real ioctl the kernel never sees bytes past argsz.")
DATA_SIZE = ("MIG_DATA_SIZE is 'the estimated data length that will be required to complete stop copy' "
             "(vfio.h); an estimate a record header off the stream's length conforms as well.")
ANNOTATION = "A type annotation: never evaluated (`from __future__ import annotations`)."

RULES: list[tuple[str, str | None, str]] = [
    ("driver", "MockConfig", HANG),
    ("driver", "_hang", HANG),
    ("driver", "initial_image", IMAGE),
    ("driver", "dirty", HARNESS),
    ("driver", "_take_reset_request", QUIRK_STATE),
    ("driver", "_reset_request_pending", QUIRK_STATE),
    ("driver", "_planned_arcs", QUIRK_STATE),
    ("driver", "get_state", QUIRK_STATE),
    ("driver", "supports", REDUNDANT),
    ("driver", "step", QUIRK_STATE),
    ("paths", None, PATHS_TABLE),
    ("streams", "parse", FORMAT),
    ("streams", None, FORMAT),  # module-level constants (definition_name None)
    ("streams", "mark_dirty", DIRTY_GRAIN),
    ("streams", "_dirty_records", DIRTY_GRAIN),
    ("streams", "dirty_bytes", ESTIMATE),
    ("streams", "close", VFS),
    ("backend", "config", HARNESS),
    ("backend", "widen_race_window", RACE_DELAY),
]

BY_ID: dict[str, str] = {
    # driver
    "driver.ReplaceFalseWithTrue.0": FLAGS_612,
    "driver.ReplaceFalseWithTrue.2": QUIRK_STATE,
    "driver.NumberReplacer.16": QUIRK_STATE,
    "driver.NumberReplacer.28": QUIRK_STATE,
    "driver.NumberReplacer.29": QUIRK_STATE,
    "driver.ReplaceFalseWithTrue.3": QUIRK_STATE,
    "driver.ReplaceAndWithOr.9": QUIRK_STATE,
    "driver.AddNot.16": QUIRK_STATE,
    "driver.AddNot.23": QUIRK_STATE,
    "driver.ReplaceComparisonOperator_Eq_NotEq.0": QUIRK_STATE,
    "driver.ReplaceComparisonOperator_NotEq_Eq.0": QUIRK_STATE,
    "driver.AddNot.11": QUIRK_STATE,
    "driver.AddNot.12": QUIRK_STATE,
    "driver.ReplaceComparisonOperator_Eq_NotEq.2": QUIRK_STATE,
    "driver.ReplaceOrWithAnd.4": QUIRK_STATE,
    "driver.ReplaceOrWithAnd.5": QUIRK_STATE,
    "driver.NumberReplacer.74": QUIRK_STATE,
    "driver.NumberReplacer.75": QUIRK_STATE,
    "driver.ReplaceBinaryOperator_BitOr_BitAnd.4": ANNOTATION,
    # backend
    "backend.NumberReplacer.0": HARNESS,
    "backend.ReplaceOrWithAnd.0": HARNESS,
    "backend.ReplaceBinaryOperator_BitOr_BitAnd.7": ANNOTATION,
    "backend.ReplaceBinaryOperator_BitOr_BitAnd.13": ANNOTATION,
    "backend.NumberReplacer.17": REDUNDANT,
    "backend.NumberReplacer.21": REDUNDANT,
    "backend.NumberReplacer.36": HARNESS,
    "backend.AddNot.0": OPTIONAL,
    "backend.ReplaceFalseWithTrue.0": QUIRK_STATE,
    "backend.NumberReplacer.37": HARNESS,
    "driver.NumberReplacer.17": QUIRK_STATE,
    "driver.NumberReplacer.22": QUIRK_STATE,
    "driver.NumberReplacer.23": QUIRK_STATE,
    "driver.ReplaceOrWithAnd.2": QUIRK_STATE,
    "driver.ReplaceAndWithOr.15": QUIRK_STATE,
    "driver.AddNot.37": QUIRK_STATE,
    "backend.NumberReplacer.1": HARNESS,
    "backend.RemoveDecorator.0": HARNESS,
    "backend.RemoveDecorator.1": HARNESS,
    "backend.AddNot.9": BUFFER,
    "backend.AddNot.20": QUIRK_STATE,
    "backend.ReplaceBinaryOperator_BitOr_BitAnd.9": ANNOTATION,
    "backend.ReplaceBinaryOperator_BitOr_BitAnd.12": ANNOTATION,
    "driver.ReplaceBinaryOperator_BitOr_BitAnd.2": ANNOTATION,
    "driver.ReplaceComparisonOperator_Eq_NotEq.1": QUIRK_STATE,
    "driver.AddNot.20": QUIRK_STATE,
    "driver.ReplaceComparisonOperator_Is_IsNot.1": QUIRK_STATE,
    "driver.ReplaceBinaryOperator_Add_Sub.2": DATA_SIZE,
    "driver.ReplaceBinaryOperator_Add_Sub.4": DATA_SIZE,
    "backend.NumberReplacer.11": REDUNDANT,
    "driver.ReplaceOrWithAnd.0": HANG,
    "driver.ReplaceBinaryOperator_BitOr_BitAnd.3": ANNOTATION,
    "driver.AddNot.15": RACE_DELAY,
    # streams
    "streams.ReplaceBinaryOperator_BitOr_BitAnd.1": ANNOTATION,
    "streams.NumberReplacer.16": RACE_DELAY,
    "streams.NumberReplacer.17": RACE_DELAY,
    "streams.NumberReplacer.22": ESTIMATE,
    "streams.NumberReplacer.23": ESTIMATE,
    "streams.NumberReplacer.37": ESTIMATE,
    "streams.ReplaceUnaryOperator_Delete_Not.3": QUIRK_STATE,
    "streams.ReplaceAndWithOr.6": DIRTY_GRAIN,
    "streams.AddNot.39": FLAGS_612,
    "streams.ReplaceBinaryOperator_Add_Sub.15": VFS,
    "streams.ReplaceBinaryOperator_Div_Mul.0": VFS,
    "streams.ReplaceComparisonOperator_GtE_Gt.0": VFS,
    "streams.NumberReplacer.48": VFS,
    "streams.AddNot.42": QUIRK_STATE,
    "streams.ReplaceAndWithOr.12": VFS,
    "streams.ReplaceAndWithOr.13": VFS,
    "streams.NumberReplacer.54": VFS,
    "streams.NumberReplacer.55": VFS,
    "streams.NumberReplacer.56": POLLERR,
    "streams.NumberReplacer.57": POLLERR,
    "streams.NumberReplacer.66": POLLERR,
    "streams.AddNot.45": QUIRK_STATE,
    "streams.ReplaceUnaryOperator_Delete_Not.13": QUIRK_STATE,
    "streams.ReplaceBinaryOperator_BitAnd_BitOr.0": VFS,
    "streams.AddNot.47": REDUNDANT,
    "streams.ReplaceComparisonOperator_LtE_Lt.0": EARLY_HEADER,
    "streams.ReplaceBinaryOperator_Add_Sub.17": EARLY_HEADER,
    "streams.ReplaceBinaryOperator_Add_Sub.19": LIMIT,
    "streams.ReplaceComparisonOperator_Gt_GtE.3": LIMIT,
}

# Survivors deliberately left open (they count against the score), with what would answer them.
OPEN: dict[str, str] = {
    "backend.NumberReplacer.15": "reached only with a kernel profile that has MIG_PRECOPY_INFOv2 (7.x); "
                                 "no 6.12 text to cite",
    "backend.AddNot.19": "as backend.NumberReplacer.15",
    "backend.NumberReplacer.14": "as backend.NumberReplacer.15",
    "backend.ReplaceTrueWithFalse.1": "as backend.NumberReplacer.15",
    "backend.AddNot.1": "the mock core offers MIG_PRECOPY_INFOv2 under the 6.12 profile, whose core has no such "
                        "feature: a test probing that id under 6.12 (expecting the unknown-feature errno) would "
                        "answer it",
    "backend.NumberReplacer.9": "as backend.NumberReplacer.13, for DMA_LOGGING_START",
    "backend.ReplaceUnaryOperator_Delete_Not.11": "as backend.NumberReplacer.15",
    "backend.ReplaceBinaryOperator_BitAnd_BitOr.12": "as backend.NumberReplacer.15",
    "streams.NumberReplacer.43": "as backend.NumberReplacer.15",
    "streams.NumberReplacer.44": "GET_PRECOPY_INFO's bytes past the 24-byte struct: a FEAT.COPY_BACK-like "
                                 "test on the data fd's ioctl would answer it",
    "streams.NumberReplacer.60": "poll() on a PRE_COPY fd at its temporary end reports POLLIN; a test of "
                                 "'Userspace can wait for more data ... by using poll' would answer it",
    "streams.NumberReplacer.61": "as streams.NumberReplacer.60",
    "backend.ReplaceAndWithOr.12": "close() of the first handle runs close_device; only a close-then-use "
                                   "test through a second open would see it",
    "backend.NumberReplacer.13": "DMA_LOGGING_REPORT's minimum payload one byte short: FEAT.SHORT_PAYLOAD's test "
                                 "covers the migration features only; extending it to the logging features "
                                 "(after a START) would answer it",
    "backend.ReplaceTrueWithFalse.2": "a second open's close does not know it is the second: a close-then-use "
                                      "test through the first handle would answer it",
    "backend.AddNot.22": "a second open runs open_device again (state back to RUNNING): a second-open test "
                         "that opens while the device is out of RUNNING would answer it",
    "driver.AddNot.38": "reset() takes the state lock without releasing it (a leaked RLock level): "
                        "a later reset or SET from another thread would block; a two-thread test would see it",
    "driver.ReplaceAndWithOr.29": "as driver.AddNot.38",
}


def reason(s: dict[str, object]) -> str | None:
    mid = str(s["id"])
    if mid in OPEN:
        return None
    if mid in BY_ID:
        return BY_ID[mid]
    module, function = mid.split(".")[0], s.get("function")
    for mod, fn, why in RULES:
        if mod == module and (fn is None or fn == function):
            return why
    return None


def main() -> int:
    data = json.loads(runner.SURVIVORS.read_text())
    lines = ["# Equivalent mutants", "",
             "Survivors of `python -m mutation` shown equivalent: no change observable through the uAPI (or both",
             "behaviours conform to the 6.12 text the registry cites, so no conformance test may tell them apart).",
             "Written by `python -m mutation.triage` from the reasons in mutation/triage.py; answered survivors",
             "(killed on re-check by suites/test_sharpened.py) and open ones are in mutation/results.md.", ""]
    unclassified = []
    for s in data["survivors"]:
        if s.get("recheck") in ("killed", "timeout"):
            continue
        why = reason(s)
        if why is None:
            unclassified.append(s["id"])
            continue
        diff = "\n".join(ln for ln in str(s["diff"] or "").splitlines()
                         if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
        lines += [f"### {s['id']}", "", f"`{s['module']}:{s['line']}` ({s['function']})", "",
                  "```diff", diff, "```", "", f"Why: {why}", ""]
    runner.EQUIVALENT.write_text("\n".join(lines))
    print(f"triage: {len(data['survivors']) - len(unclassified)} classified or answered; "
          f"open: {', '.join(unclassified) or 'none'}")
    for mid in unclassified:
        print(f"  {mid}: {OPEN.get(mid, 'no reason recorded')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
