"""The mock's DMA logging: the core's checks of START and REPORT, and a driver that logs DMA writes.

As on the kernel, the control and report structures carry user pointers: START's ``ranges`` points at
an array of ``struct vfio_device_feature_dma_logging_range``, REPORT's ``bitmap`` at the caller's u64
array. The mock reads and writes through those addresses with ctypes, as ``copy_from_user`` and the
iova_bitmap code do, so the suite passes the same ctypes buffers to the mock and to a real device
(vfio_mig_cts/judging/dma.py). A pointer the caller did not make valid crashes the process here where the kernel
would return EFAULT: the suite only passes its own buffers.

Source: ``vfio_ioctl_device_feature_logging_start/_stop/_report()`` (drivers/vfio/vfio_main.c),
``iova_bitmap_set()`` (drivers/iommu/iommufd/iova_bitmap.c); the driver side is mlx5's (a second
START and a REPORT while logging is off fail with EINVAL).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct

from vfio_mig_cts.backends.mock.quirks import Quirks

CONTROL = struct.Struct("<QIIQ")  # page_size, num_ranges, __reserved, ranges
RANGE = struct.Struct("<QQ")  # iova, length
REPORT = struct.Struct("<QQQQ")  # iova, length, page_size, bitmap
PAGE_SIZE = mmap.PAGESIZE
LOG_MAX_RANGES = PAGE_SIZE // RANGE.size
U64_MAX = (1 << 64) - 1
MIN_REPORT_PAGE = 4096


def _err(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)))


def _aligned(value: int, align: int) -> bool:
    """The kernel's IS_ALIGNED(x, a): ((x) & ((a) - 1)) == 0, in 64-bit arithmetic."""
    return value & ((align - 1) & U64_MAX) == 0


def _pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class DmaLog:
    """One device's DMA log: off, or on over some IOVA ranges at a page size."""

    def __init__(self, quirks: Quirks) -> None:
        self.q = quirks
        self.on = False
        self.page_size = 0
        self.ranges: list[tuple[int, int]] = []  # (first, last) IOVA, inclusive
        self.dirty: set[int] = set()  # logged page numbers (iova // page_size)
        self.wedged = False  # (dma_report_off_wedges) a REPORT while off broke the driver's log state

    # --- VFIO_DEVICE_FEATURE_DMA_LOGGING_START -------------------------------------------------------
    def start(self, payload: bytes) -> bytes:
        q = self.q
        page_size, nnodes, _reserved, ranges_ptr = CONTROL.unpack_from(payload)
        if not nnodes and not q.dma_accepts_no_ranges:
            raise _err(errno.EINVAL)
        if nnodes > LOG_MAX_RANGES and not q.dma_no_range_limit:
            raise _err(errno.E2BIG)
        raw = ctypes.string_at(ranges_ptr, nnodes * RANGE.size) if nnodes else b""
        ranges: list[tuple[int, int]] = []
        for i in range(nnodes):
            iova, length = RANGE.unpack_from(raw, i * RANGE.size)
            if not (_aligned(iova, page_size) and _aligned(length, page_size)) and not q.dma_ignores_alignment:
                raise _err(errno.EINVAL)
            end = iova + length
            if end > U64_MAX:
                if not q.dma_ignores_overflow:
                    raise _err(errno.EOVERFLOW)
                end &= U64_MAX
            first, last = iova, end - 1
            if any(a <= last and first <= b for a, b in ranges) and not q.dma_accepts_overlap:
                raise _err(errno.EINVAL)
            ranges.append((first, last))
        # the driver's log_start
        if self.wedged:
            raise _err(errno.EBUSY)
        if self.on and not q.dma_restart_allowed:
            raise _err(errno.EINVAL)
        if q.dma_range_limit and nnodes > q.dma_range_limit:
            raise _err(errno.E2BIG)
        chosen = page_size if _pow2(page_size) and page_size >= MIN_REPORT_PAGE else MIN_REPORT_PAGE
        self.on, self.page_size, self.ranges, self.dirty = True, chosen, ranges, set()
        out = 0 if q.dma_page_size_zero else chosen
        return CONTROL.pack(out, nnodes, _reserved, ranges_ptr) + payload[CONTROL.size:]

    # --- VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP --------------------------------------------------------
    def stop(self) -> None:
        self.on = False
        self.ranges, self.dirty = [], set()

    # --- VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT ------------------------------------------------------
    def report(self, payload: bytes) -> bytes:
        q = self.q
        iova, length, page_size, bitmap_ptr = REPORT.unpack_from(payload)
        if (page_size < MIN_REPORT_PAGE or not _pow2(page_size)) and not q.dma_report_any_page_size:
            raise _err(errno.EINVAL)
        if iova + length > U64_MAX:
            raise _err(errno.EOVERFLOW)
        if not self.on and not q.dma_report_without_start:
            self.wedged = self.wedged or q.dma_report_off_wedges
            raise _err(errno.EINVAL)
        if not length or not self.on:
            return payload
        bitmap_unit = page_size if _pow2(page_size) else MIN_REPORT_PAGE
        words = ((length - 1) // bitmap_unit) // 64 + 1  # iova_bitmap: the kernel never writes past these
        size = words * 8
        unit = self.page_size if q.dma_report_start_page_size else bitmap_unit
        bitmap = bytearray(size) if q.dma_report_clears_bitmap else bytearray(ctypes.string_at(bitmap_ptr, size))
        last = iova + length - 1
        reported = set()
        for page in sorted(self.dirty):
            lo, hi = page * self.page_size, (page + 1) * self.page_size - 1
            if hi < iova or lo > last:
                continue
            reported.add(page)
            first_bit = (max(lo, iova) - iova) // unit
            last_bit = (min(hi, last) - iova) // unit
            for bit in range(first_bit, min(last_bit + 1, words * 64)):
                bitmap[bit // 8] |= 1 << (bit % 8)
        ctypes.memmove(bitmap_ptr, bytes(bitmap), size)
        if not q.dma_report_keeps_log:
            self.dirty -= reported
        return payload

    # --- the device writing to memory ---------------------------------------------------------------
    def device_wrote(self, iova: int, length: int) -> None:
        """A DMA write by the device: log the pages it touched inside the tracked ranges."""
        if not self.on or length <= 0:
            return
        ps = self.page_size
        for first, last in self.ranges:
            lo, hi = max(first, iova), min(last, iova + length - 1)
            if lo > hi:
                continue
            pages = range(lo // ps, hi // ps + 1)
            if self.q.dma_drops_last_page:
                pages = range(lo // ps, min(hi // ps, last // ps - 1) + 1)
            self.dirty.update(pages)
