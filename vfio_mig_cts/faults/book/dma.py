"""Fault catalogue entries of the DMA logging suite (see vfio_mig_cts/faults/catalogue.py).

The knobs are in vfio_mig_cts/backends/mock/quirks.py ("dma logging / concurrency (issue 8)"); the logging they
bend is vfio_mig_cts/backends/mock/dma.py.
"""

from __future__ import annotations

from vfio_mig_cts.faults.entry import Fault

DMA = "suites/test_dma_logging.py::"

FAULTS_PART: tuple[Fault, ...] = (
    # --- START's arguments ---
    Fault("dma-start-no-ranges", "DMA.NO_RANGES", "START with num_ranges 0 succeeds",
          {"dma_accepts_no_ranges": True}, (f"{DMA}test_start_without_ranges[dma]",)),
    Fault("dma-start-no-range-limit", "DMA.TOO_MANY_RANGES", "START takes more ranges than fit in a page",
          {"dma_no_range_limit": True}, (f"{DMA}test_range_count_limit[dma]",)),
    Fault("dma-start-few-ranges", "DMA.MIN_RANGES", "the driver refuses START with more than 8 ranges (E2BIG)",
          {"dma_range_limit": 8}, (f"{DMA}test_range_count_limit[dma]",)),
    Fault("dma-start-unaligned", "DMA.ALIGNED", "START takes ranges not aligned to page_size",
          {"dma_ignores_alignment": True}, (f"{DMA}test_unaligned_range[dma-*]",)),
    Fault("dma-start-overflow", "DMA.OVERFLOW", "START takes a range whose end wraps past 2**64",
          {"dma_ignores_overflow": True}, (f"{DMA}test_overflowing_range[dma]",)),
    Fault("dma-start-overlap", "DMA.OVERLAP", "START takes overlapping ranges",
          {"dma_accepts_overlap": True}, (f"{DMA}test_overlapping_ranges[dma]",)),
    Fault("dma-page-size-zero", "DMA.PAGE_SIZE_OUT", "START writes back page_size 0",
          {"dma_page_size_zero": True}, (f"{DMA}test_page_size_written_back[dma]",)),
    # --- the logging session ---
    Fault("dma-restart-allowed", "DMA.START_ONCE",
          "a second START before STOP succeeds (what mtty's no-op log ops do)",
          {"dma_restart_allowed": True}, (f"{DMA}test_second_start_refused[dma]",)),
    Fault("dma-report-without-start", "DMA.REPORT_NOT_STARTED",
          "REPORT succeeds while logging is off (what mtty's no-op log ops do)",
          {"dma_report_without_start": True}, (f"{DMA}test_report_requires_logging[dma]",)),
    Fault("dma-report-any-page-size", "DMA.REPORT_PAGE_CHECK", "REPORT takes page sizes below 4K or not powers of two",
          {"dma_report_any_page_size": True}, (f"{DMA}test_report_page_size_checked[dma]",)),
    Fault("dma-report-clears-bitmap", "DMA.ONLY_SETS_BITS", "REPORT zeroes the caller's bitmap before setting bits",
          {"dma_report_clears_bitmap": True}, (f"{DMA}test_report_only_sets_bits[dma-*]",)),
    Fault("dma-report-start-page-size", "DMA.REPORT_PAGE_SIZE",
          "REPORT lays the bits out in START's page size, whatever page size the report asked for",
          {"dma_report_start_page_size": True},
          (f"{DMA}test_report_page_size[dma-4K-8K]", f"{DMA}test_report_page_size[dma-8K-4K]")),
    Fault("dma-drops-last-page", "DMA.LOGGED", "a DMA write to the last page of a range is not logged",
          {"dma_drops_last_page": True}, (f"{DMA}test_dirty_pages_reported[dma]",),
          also=("DMA.REPORT_PAGE_SIZE",)),
    Fault("dma-report-keeps-log", "DMA.READ_CLEARS", "REPORT does not clear what it reported",
          {"dma_report_keeps_log": True}, (f"{DMA}test_dirty_pages_reported[dma]",)),
)
