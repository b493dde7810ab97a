"""Rules of the DMA logging suite (features 6/7/8: DMA_LOGGING_START, _STOP, _REPORT).

START's argument checks are the core's (``vfio_ioctl_device_feature_logging_start()``): every driver
with log ops gets them, so a device that breaks one points at a core that differs from 6.12. The rest
is the header's comment above ``struct vfio_device_feature_dma_logging_control`` and ``_report``;
its sentences state what the interface does ("will be logged", "will only set bits", "is not
allowed"), which the registry reads as *must*, as it does for the FSM comment's statements.
"""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule

H = "include/uapi/linux/vfio.h"
K = "include/linux/vfio.h"
C = "drivers/vfio/vfio_main.c"
M = Force.MUST
D = Family.DMA_LOGGING

RULES_PART: tuple[Rule, ...] = (
    # --- START's arguments (the core checks them before the driver sees them) ---
    Rule("DMA.NO_RANGES", D, M, f"{C}:1083",
         "if (!nnodes)",
         "START with num_ranges 0 fails with EINVAL"),
    Rule("DMA.TOO_MANY_RANGES", D, M, f"{C}:1086",
         "if (nnodes > LOG_MAX_RANGES)",
         "START with more ranges than fit in one kernel page (PAGE_SIZE / 16) fails with E2BIG"),
    Rule("DMA.MIN_RANGES", D, M, f"{H}:1365",
         "The core kernel code guarantees to support by minimum num_ranges that fit into a single kernel "
         "page.",
         "START with exactly PAGE_SIZE / 16 disjoint, aligned ranges succeeds"),
    Rule("DMA.ALIGNED", D, M, f"{C}:1100",
         "if (!IS_ALIGNED(range.iova, control.page_size) ||",
         "START with a range whose iova or length is not a multiple of page_size fails with EINVAL"),
    Rule("DMA.OVERFLOW", D, M, f"{C}:1106",
         "if (check_add_overflow(range.iova, range.length, &iova_end) ||",
         "START with a range whose iova + length overflows 64 bits fails with EOVERFLOW"),
    Rule("DMA.OVERLAP", D, M, f"{C}:1116",
         "/* Range overlapping */",
         "START with two ranges that overlap fails with EINVAL"),
    Rule("DMA.PAGE_SIZE_OUT", D, M, f"{H}:1360",
         "On output the device will return the page size it selected.",
         "a successful START writes back a page_size that is a power of two (the hint, or the driver's "
         "choice)"),
    # --- the logging session ---
    Rule("DMA.START_ONCE", D, M, f"{H}:1370",
         "Another start is not allowed in the meantime.",
         "a second START before STOP fails (mlx5: EINVAL); after STOP a START succeeds again"),
    Rule("DMA.GRACEFUL", D, M, f"{K}:222",
         "the device implementation of vfio_log_ops must handle arbitrary user requests. This includes "
         "rejecting subsequent calls to log_start without an intervening log_stop, as well as graceful "
         "handling of log_stop and log_read_and_clear from invalid states.",
         "STOP and REPORT while logging is off return (success or an errno, not a hang) and leave logging "
         "usable: START, REPORT and STOP then succeed"),
    Rule("DMA.REPORT_NOT_STARTED", D, M, f"{H}:1415",
         "If DMA logging is not enabled, an error will be returned.",
         "REPORT before any START, and after STOP, fails"),
    Rule("DMA.REPORT_PAGE_CHECK", D, M, f"{C}:1190",
         "if (report.page_size < SZ_4K || !is_power_of_2(report.page_size))",
         "REPORT with a page_size below 4096 or not a power of two fails with EINVAL"),
    Rule("DMA.ONLY_SETS_BITS", D, M, f"{H}:1408",
         "The LOGGING_REPORT will only set bits in the bitmap and never clear or perform any "
         "initialization of the user provided bitmap.",
         "a bitmap pre-filled with ones comes back with every one still set"),
    Rule("DMA.REPORT_PAGE_SIZE", D, M, f"{H}:1403",
         "The input page_size can be any power of two value and does not have to match the value given "
         "to VFIO_DEVICE_FEATURE_DMA_LOGGING_START.",
         "REPORT succeeds with page sizes other than START's and, for pages the device wrote, sets the "
         "bits of that report's page size (one bit per page_size unit of IOVA)"),
    Rule("DMA.LOGGED", D, M, f"{H}:1354",
         "DMA that the device initiates inside the range will be logged by the device for later "
         "retrieval.",
         "every page the device wrote inside a tracked range, the first and the last page of a range "
         "included, has its bit set in the next REPORT, and no other page does"),
    Rule("DMA.READ_CLEARS", D, M, f"{H}:1396",
         "During querying the log is cleared for the IOVA range.",
         "a second REPORT of the same range, with no DMA in between, sets no bits"),
)
