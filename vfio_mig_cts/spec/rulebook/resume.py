"""Rules of the resume, reset and close/reopen suites (see spec/registry.py for the registry's conventions).

The resume rules come from the RESUMING arcs of the MIG_DEVICE_STATE comment. What a reset or a close
does to open data fds is include/linux/vfio.h's: "The driver is responsible to ensure that FD reaches end
of stream or error whenever the migration FSM leaves a data transfer state or before close_device()
returns" (a must, as for CONC.DEAD_SESSION). In which state a reopened device starts the header does not
say: that rule is a convention, quoted from the upstream drivers that set it.

Checked with rules registered elsewhere: ARC.FAILED_STATE (the state after a refused final load),
ARC.RESET (reset back to RUNNING), ARC.TRANSITION and ARC.DATA_FD (setup arcs) and STREAM.ROUND_TRIP
(the device state after a resume equals the source's).
"""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule

H = "include/uapi/linux/vfio.h"
K = "include/linux/vfio.h"
MLX5 = "drivers/vfio/pci/mlx5/main.c"
M, SH, CV = Force.MUST, Force.SHOULD, Force.CONVENTION

RULES_PART: tuple[Rule, ...] = (
    # --- the final load ---------------------------------------------------------------------------
    Rule("RESUME.FINAL_LOAD", Family.RESUME, M, f"{H}:1094",
         "If the user provided data is found to be incomplete, inconsistent, or otherwise invalid, the "
         "migration driver must fail the SET_STATE ioctl and optionally go to the ERROR state",
         "data the driver found invalid (it refused a write() of it) is not loaded: leaving RESUMING "
         "(RESUMING -> STOP, or a combination request through it) then fails; and a request to leave "
         "RESUMING returns (a request that never returns neither fails nor succeeds). Checked in every "
         "resume session of an open"),
    Rule("RESUME.FINAL_CHECK", Family.RESUME, SH, f"{H}:1092",
         "kernel migration driver should complete the incorporation of data written to the data transfer FD "
         "into the device internal state and perform final validity and consistency checking of the new "
         "device state.",
         "when the bytes write() took (none refused) are not one complete valid stream from a compatible "
         "device, the final check refuses them: leaving RESUMING fails (mlx5 does no final check, and a "
         "hisi_acc stream cut where PRE_COPY ended is a valid stream of a VF that was not ready, so this is "
         "the header's should)"),
    Rule("RESUME.COMPATIBLE", Family.RESUME, M, f"{H}:1156",
         "Entering the RESUMING state starts a process of restoring the device state",
         "a complete stream saved from a compatible device (with or without PRE_COPY) is taken by write() "
         "and loads: RESUMING -> STOP (or -> RUNNING) succeeds, in any resume session of an open"),
    # --- reset --------------------------------------------------------------------------------------
    Rule("RESET.ABORT_RESUMING", Family.RESET, M, f"{H}:1102",
         "To abort a RESUMING session the device must be reset.",
         "VFIO_DEVICE_RESET in RESUMING (mid-stream, or after a refused final load) returns GET to RUNNING"),
    Rule("RESET.DEAD_FDS", Family.FD_LIFECYCLE, M, f"{K}:192",
         "The driver is responsible to ensure that FD reaches end of stream or error whenever the migration "
         "FSM leaves a data transfer state or before close_device() returns.",
         "VFIO_DEVICE_RESET (which leaves any data transfer state for RUNNING) ends every open data session: "
         "an old saving fd yields no more data (read() an error or 0, poll() an event, GET_PRECOPY_INFO an "
         "error or no data) and an old resuming fd takes no more bytes"),
    # --- close and reopen ---------------------------------------------------------------------------
    Rule("REOPEN.DEAD_FDS", Family.FD_LIFECYCLE, M, f"{K}:192",
         "The driver is responsible to ensure that FD reaches end of stream or error whenever the migration "
         "FSM leaves a data transfer state or before close_device() returns.",
         "closing the device ends its data sessions: a data fd the user kept yields no more data and "
         "takes no more bytes after the device was closed and opened again (before close_device() returned)"),
    Rule("REOPEN.USABLE", Family.CLOSE_REOPEN, CV, f"{MLX5}:1325",
         "if (mvdev->migrate_cap) mvdev->mig_state = VFIO_DEVICE_STATE_RUNNING;",
         "a device closed in any state (its data fd closed first or not) and opened again answers GET "
         "with a state its flags support, can be asked to leave it without hanging or a kernel splat, and "
         "resets to RUNNING (upstream PCI drivers restart in RUNNING at open_device; mtty keeps the "
         "state, which the uAPI allows); closing only a data fd leaves the state as it was"),
)
