"""Rules of what the FSM arcs do to the device itself: its internal state and its operation.

The arc descriptions of the MIG_DEVICE_STATE comment (include/uapi/linux/vfio.h) say what the device does
in each state: STOP "must not change its internal state", RUNNING is "fully operational", the saving arcs
do "not change the device operation". These are observable only where a device profile can change the
device as a guest would and compare its state (``DeviceProfile``: the mock, mtty). The statements without
a modal verb are read as *must*, as the registry reads the FSM comment's statements elsewhere
(FD.SAVING_GROUP, FD.ENDED).
"""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule

H = "include/uapi/linux/vfio.h"
M = Force.MUST

RULES_PART: tuple[Rule, ...] = (
    Rule("STATE.STOP_UNCHANGED", Family.INTEGRITY, M, f"{H}:1081",
         "It must not change its internal state.",
         "in STOP (and STOP_COPY, which \"has the same behavior as STOP\", vfio.h:1146) the device's internal "
         "state does not change: the state digest stays the same across GETs, MIG_DATA_SIZE, time, and a "
         "STOP -> STOP_COPY -> STOP save"),
    Rule("STATE.RUNNING_OPERATES", Family.INTEGRITY, M, f"{H}:1106",
         "While in RUNNING the device is fully operational, the device may generate interrupts, DMA, respond "
         "to MMIO, all vfio device regions are functional, and the device may advance its internal state.",
         "a device in RUNNING operates, however it got there (open, STOP -> RUNNING, PRE_COPY -> RUNNING, "
         "RUNNING_P2P -> RUNNING, after a resume): what a guest does changes its state"),
    Rule("STATE.SAVING_KEEPS_OPERATION", Family.INTEGRITY, M, f"{H}:1132",
         "Each arc does not change the device operation, the device remains RUNNING, P2P quiesced or in STOP.",
         "RUNNING -> PRE_COPY and RUNNING_P2P -> PRE_COPY_P2P leave the device operating as before the arc "
         "(what a guest does still changes its state); STOP -> STOP_COPY leaves it stopped (its state does "
         "not change)"),
    Rule("MIG.ALWAYS_SUPPORTED", Family.ARCS, M, f"{H}:991",
         "If this GET succeeds, the RUNNING and ERROR states are always supported.",
         "whatever the MIGRATION flags, SET RUNNING succeeds from every supported state (by the core's path), "
         "and a device in ERROR reports ERROR and leaves it by VFIO_DEVICE_RESET (where the backend can put "
         "it there)"),
)
