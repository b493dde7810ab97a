"""Fault catalogue entries of what the arcs do to the device itself, and of the rules issue 13 added
(see vfio_mig_cts/faults/catalogue.py). Knobs: vfio_mig_cts/backends/mock/quirks.py ("the device's
operation and state (issue 13)")."""

from __future__ import annotations

from vfio_mig_cts.faults.entry import Fault

OP = "suites/test_operation.py::"

FAULTS_PART: tuple[Fault, ...] = (
    Fault("stop-changes-state", "STATE.STOP_UNCHANGED",
          "a stopped device's internal state moves on (each GET in STOP or STOP_COPY advances it)",
          {"stop_changes_state": True}, (f"{OP}test_stop_keeps_state[*]",)),
    Fault("precopy-freezes-device", "STATE.SAVING_KEEPS_OPERATION",
          "the arc into PRE_COPY stops the device: what a guest does no longer changes its state",
          {"precopy_freezes": True}, (f"{OP}test_saving_arcs_keep_operation[*pre_copy]",)),
    Fault("frozen-after-stop", "STATE.RUNNING_OPERATES",
          "once stopped, the device does not run again until a reset: STOP -> RUNNING leaves it inert",
          {"frozen_after_stop": True}, (f"{OP}test_running_operates[*]",)),
    Fault("refuses-running-from-stop-copy", "MIG.ALWAYS_SUPPORTED",
          "SET RUNNING from STOP_COPY fails: RUNNING is not a target from every state",
          {"refuse_running_from": 3}, (f"{OP}test_running_and_error_supported[*]",
                                       "suites/test_arcs.py::test_arc[stop_copy-STOP_COPY->RUNNING]")),
    Fault("precopy-poll-always-ready", "EOS.PRECOPY_POLL",
          "the saving fd has no .poll (mtty, qat): poll() reports it ready at PRE_COPY's temporary end, where "
          "read() has nothing to give, so userspace cannot wait with poll",
          {"precopy_poll_always_ready": True}, ("suites/test_precopy.py::test_poll_at_temporary_end[*]",)),
    Fault("dma-report-off-wedges", "DMA.GRACEFUL",
          "a DMA_LOGGING_REPORT while logging is off (refused, as it must be) wedges the driver's log: every "
          "later DMA_LOGGING_START fails with EBUSY",
          {"dma_report_off_wedges": True},
          ("suites/test_dma_logging.py::test_stop_and_report_while_off[dma]",
           "suites/test_dma_logging.py::test_report_requires_logging[dma]")),
)
