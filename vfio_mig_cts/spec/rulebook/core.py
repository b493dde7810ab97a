"""Rules of the state arcs and the ``VFIO_DEVICE_FEATURE`` plumbing: the FSM comment and the core's checks."""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule

H = "include/uapi/linux/vfio.h"
C = "drivers/vfio/vfio_main.c"
K = "include/linux/vfio.h"
M, SH, CV = Force.MUST, Force.SHOULD, Force.CONVENTION
A, P = Family.ARCS, Family.PLUMBING

RULES_PART: tuple[Rule, ...] = (
    # --- state arcs -------------------------------------------------------------------------------
    Rule("ARC.TRANSITION", A, M, f"{H}:1024",
         "The kernel migration driver must fully transition the device to the new state value before "
         "the operation returns to the user.",
         "a legal SET succeeds and GET then reports the requested state"),
    Rule("ARC.DATA_FD", A, M, f"{H}:1037",
         "If the new_state starts a new data transfer session then the FD associated with that session "
         "is returned in data_fd.",
         "a data_fd exactly when the path ends with a session-starting arc, none otherwise"),
    Rule("ARC.GET_FD", A, M, f"{H}:1044",
         "Upon VFIO_DEVICE_FEATURE_GET, get the current migration state of the VFIO device, data_fd "
         "will be -1.",
         "GET returns data_fd -1"),
    Rule("ARC.BLOCKED", A, M, f"{H}:1165",
         "These arcs are not permitted and return error if requested.",
         "STOP_COPY -> PRE_COPY and STOP_COPY -> PRE_COPY_P2P fail (an errno; which one is "
         "ARC.REFUSAL_ERRNO's convention)"),
    Rule("ARC.ERROR_TARGET", A, M, f"{H}:1171",
         "ERROR cannot be specified as a device state",
         "SET(ERROR) fails, from every state, ERROR itself included (the drivers' while (cur != new) "
         "loops return success for ERROR -> ERROR without asking the core: not what the header says)"),
    Rule("ARC.UNSUPPORTED", A, M, f"{H}:1205",
         "The optional states cannot be used with SET_STATE if the device does not support them.",
         "SET to a state the flags do not support fails (an errno)"),
    Rule("ARC.OUT_OF_RANGE", A, M, f"{C}:843",
         "if (new_fsm >= ARRAY_SIZE(vfio_from_fsm_table) ||",
         "SET to a value outside enum vfio_device_mig_state fails with EINVAL"),
    Rule("ARC.FAILED_STATE", A, M, f"{H}:1031",
         "If this function fails then current device_state may be the original operating state or some "
         "other state along the combination transition path.",
         "after a refused request GET reports the original state (the path is empty) or ERROR (vfio.h:1171-1174: "
         "any transition request can be failed with an errno return and may then move the device into ERROR)"),
    Rule("ARC.ERROR_EXIT", A, M, f"{H}:1175",
         "To recover from ERROR VFIO_DEVICE_RESET must be used to return the device_state back to "
         "RUNNING.",
         "from ERROR, SET to any other state fails (any errno: the core's WARN path gives EINVAL, pds EIO) and "
         "the device stays in ERROR"),
    Rule("ARC.REFUSAL_ERRNO", A, CV, f"{C}:859",
         "return (*next_fsm != VFIO_DEVICE_STATE_ERROR) ? 0 : -EINVAL;",
         "a refused request from a state other than ERROR (a blocked arc, ERROR or an unsupported state as the "
         "target) fails with EINVAL, the errno of the core's vfio_mig_get_next_state() that every upstream "
         "driver returns; the header says only \"return error\""),
    Rule("ARC.RESET", Family.RESET, M, f"{H}:1175",
         "To recover from ERROR VFIO_DEVICE_RESET must be used to return the device_state back to "
         "RUNNING.",
         "VFIO_DEVICE_RESET returns the device to RUNNING"),
    Rule("ARC.SAME_STATE", A, CV, "samples/vfio-mdev/mtty.c:1234",
         "while (mdev_state->state != new_state) {",
         "SET to the current state succeeds with no data_fd (every upstream driver loops "
         "while (cur != new) around vfio_mig_get_next_state()); not ERROR, which ARC.ERROR_TARGET judges"),
    Rule("ARC.SHORTEST_PATH", A, SH, f"{H}:1193",
         "- Select the shortest path.",
         "a combination request walks the core's shortest path, one arc at a time"),
    Rule("ARC.NO_SAVING_INTERIOR", A, SH, f"{H}:1194",
         "- The path cannot have saving group states as interior arcs, only starting/end states.",
         "a combination request never passes through PRE_COPY, PRE_COPY_P2P or STOP_COPY"),
    Rule("ARC.NO_ASYNC", A, M, f"{H}:1027",
         "The kernel migration driver must not generate asynchronous device state transitions outside "
         "of manipulation by the user or the VFIO_DEVICE_RESET ioctl as described above.",
         "GET reports the same state on repeated calls with nothing in between"),
    # --- feature ioctl plumbing -------------------------------------------------------------------
    Rule("FEAT.ARGSZ", P, M, f"{C}:1219",
         "if (feature.argsz < minsz)",
         "VFIO_DEVICE_FEATURE with argsz below the 8-byte header fails with EINVAL"),
    Rule("FEAT.UNKNOWN_FLAGS", P, M, f"{C}:1222",
         "/* Check unknown flags */",
         "flag bits outside MASK|GET|SET|PROBE fail with EINVAL"),
    Rule("FEAT.GET_SET", P, M, f"{H}:887",
         "GET and SET are mutually exclusive, except for use with PROBE.",
         "GET|SET without PROBE fails with EINVAL"),
    Rule("FEAT.PROBE_NO_DATA", P, M, f"{H}:886",
         "The data portion is not required for probing.",
         "PROBE of a supported feature succeeds with argsz 8 (no payload)"),
    Rule("FEAT.PROBE_OPS", P, M, f"{H}:883",
         "Probing a feature will return success if the feature is supported and all of the optionally "
         "indicated GET/SET methods are supported.",
         "PROBE|GET / PROBE|SET succeed exactly for the methods the feature has"),
    Rule("FEAT.WRONG_OP", P, M, f"{K}:252",
         "if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)) &",
         "GET on a SET-only feature and SET on a GET-only one fail with EINVAL"),
    Rule("FEAT.NO_OP", P, M, f"{K}:257",
         "/* Without PROBE one of GET or SET must be requested */",
         "a feature call with neither GET, SET nor PROBE fails with EINVAL"),
    Rule("FEAT.SHORT_PAYLOAD", P, M, f"{K}:260",
         "if (argsz < minsz)",
         "a payload shorter than the feature's structure fails with EINVAL"),
    Rule("FEAT.UNKNOWN_ID", P, M, f"{C}:1261",
         "return -ENOTTY;",
         "an unknown feature id fails with ENOTTY (EINVAL before the 2025 core fix; judged by the "
         "kernel profile)"),
    Rule("MIG.STOP_COPY", P, M, f"{H}:993",
         "at least VFIO_MIGRATION_STOP_COPY must be set.",
         "the MIGRATION flags include VFIO_MIGRATION_STOP_COPY"),
    Rule("MIG.COMBINATIONS", P, CV, f"{H}:1009",
         "Other combinations of flags have behavior to be defined in the future.",
         "the MIGRATION flags are one of the four defined combinations"),
)
