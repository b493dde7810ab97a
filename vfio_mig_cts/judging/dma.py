"""DMA logging calls (VFIO_DEVICE_FEATURE 6/7/8) with the user pointers they carry.

START's ``struct vfio_device_feature_dma_logging_control`` points at an array of ranges; REPORT's
``struct vfio_device_feature_dma_logging_report`` at the caller's bitmap. The backend protocol's raw
``feature()`` takes bytes, so the pointers inside them must be real addresses: the ranges and the
bitmap live in ctypes buffers that this module keeps alive for the call (and for ever, should the
call hang and be abandoned in the kernel), and the payload carries their addresses. The mock reads
and writes through the same addresses (vfio_mig_cts/backends/mock/dma.py), so one suite runs on both.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from vfio_mig_cts.backends.protocol import MigrationDevice
from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import Feature

CONTROL = struct.Struct("<QIIQ")  # page_size, num_ranges, __reserved, ranges
RANGE = struct.Struct("<QQ")  # iova, length
REPORT = struct.Struct("<QQQQ")  # iova, length, page_size, bitmap
PAGE_SIZE = mmap.PAGESIZE
LOG_MAX_RANGES = PAGE_SIZE // RANGE.size  # drivers/vfio/vfio_main.c: PAGE_SIZE / sizeof(range)
U64_MAX = (1 << 64) - 1

_ABANDONED: list[object] = []  # buffers of calls that timed out: the kernel may still write them


def _keep_if_hung(exc: OSError, *buffers: object) -> None:
    if exc.errno == errno.ETIMEDOUT:
        _ABANDONED.extend(buffers)


def probe(dev: MigrationDevice, feature: Feature, op: int) -> int:
    """PROBE|op of a logging feature: 0 when supported, else the errno (ENOTTY: no log ops)."""
    try:
        dev.feature(uapi.VFIO_DEVICE_FEATURE_PROBE | op | feature)
        return 0
    except OSError as exc:
        return exc.errno or errno.EIO


def supported(dev: MigrationDevice) -> bool:
    """The device has DMA logging: START and STOP probe as SET, REPORT as GET."""
    set_, get = uapi.VFIO_DEVICE_FEATURE_SET, uapi.VFIO_DEVICE_FEATURE_GET
    return not (probe(dev, Feature.DMA_LOGGING_START, set_) or probe(dev, Feature.DMA_LOGGING_STOP, set_)
                or probe(dev, Feature.DMA_LOGGING_REPORT, get))


@dataclass(frozen=True)
class Started:
    """A successful START: the page size the device chose (written back into the control struct)."""

    page_size: int


def start(dev: MigrationDevice, page_size: int, ranges: Sequence[tuple[int, int]],
          num_ranges: int | None = None) -> Started:
    """DMA_LOGGING_START over ``ranges`` ((iova, length) pairs); ``num_ranges`` may claim another count
    (the buffer always holds at least that many entries, zero-filled, so a device that reads them
    reads this process's memory, not past it)."""
    count = len(ranges) if num_ranges is None else num_ranges
    slots = max(len(ranges), count, 1)
    buf = (ctypes.c_uint64 * (2 * slots))()
    for i, (iova, length) in enumerate(ranges):
        buf[2 * i], buf[2 * i + 1] = iova & U64_MAX, length & U64_MAX
    payload = CONTROL.pack(page_size & U64_MAX, count & 0xFFFFFFFF, 0, ctypes.addressof(buf))
    try:
        reply = dev.feature(uapi.VFIO_DEVICE_FEATURE_SET | Feature.DMA_LOGGING_START, payload)
    except OSError as exc:
        _keep_if_hung(exc, buf)
        raise
    (chosen,) = struct.unpack_from("<Q", reply.payload.ljust(8, b"\0"))
    return Started(int(chosen))


def stop(dev: MigrationDevice) -> None:
    """DMA_LOGGING_STOP."""
    dev.feature(uapi.VFIO_DEVICE_FEATURE_SET | Feature.DMA_LOGGING_STOP)


def stop_quietly(dev: MigrationDevice) -> int:
    """STOP, for setup and teardown: 0 or the errno (a device that is not logging may refuse)."""
    try:
        stop(dev)
        return 0
    except OSError as exc:
        return exc.errno or errno.EIO


def bitmap_words(length: int, page_size: int) -> int:
    """The u64s the kernel may touch for a report of ``length`` bytes at ``page_size`` (iova_bitmap)."""
    return ((max(length, 1) - 1) // page_size) // 64 + 1


@dataclass(frozen=True)
class Report:
    """What REPORT left in the caller's bitmap: one bit per ``page_size`` unit from ``iova``."""

    iova: int
    length: int
    page_size: int
    words: tuple[int, ...]

    def bit(self, index: int) -> bool:
        return bool(self.words[index // 64] >> (index % 64) & 1)

    @property
    def nbits(self) -> int:
        return -(-self.length // self.page_size)

    def set_bits(self) -> list[int]:
        return [i for i in range(self.nbits) if self.bit(i)]

    def pages(self) -> list[int]:
        """The IOVAs of the pages whose bits are set."""
        return [self.iova + i * self.page_size for i in self.set_bits()]


def report(dev: MigrationDevice, iova: int, length: int, page_size: int, prefill: int = 0) -> Report:
    """DMA_LOGGING_REPORT of [iova, iova + length) at ``page_size`` into a bitmap whose every u64 holds
    ``prefill`` before the call (REPORT must only set bits). A page_size the kernel refuses still gets a
    bitmap of one bit per byte of the range, so a device that takes it writes inside the buffer."""
    unit = page_size if page_size >= 4096 and page_size & (page_size - 1) == 0 else 1
    words = bitmap_words(length, unit)
    buf = (ctypes.c_uint64 * words)(*([prefill & U64_MAX] * words))
    payload = REPORT.pack(iova & U64_MAX, length & U64_MAX, page_size & U64_MAX, ctypes.addressof(buf))
    try:
        dev.feature(uapi.VFIO_DEVICE_FEATURE_GET | Feature.DMA_LOGGING_REPORT, payload)
    except OSError as exc:
        _keep_if_hung(exc, buf)
        raise
    return Report(iova, length, page_size, tuple(int(w) for w in buf))


def expected_bits(dirty: Sequence[tuple[int, int]], iova: int, length: int, page_size: int,
                  log_page: int) -> list[int]:
    """The bits a report at ``page_size`` must set for DMA writes ``dirty`` ((iova, length) pairs)
    logged at the device's ``log_page`` granularity: every report page that overlaps a logged page."""
    bits: set[int] = set()
    last = iova + length - 1
    for wiova, wlen in dirty:
        for page in range(wiova // log_page, (wiova + wlen - 1) // log_page + 1):
            lo, hi = page * log_page, (page + 1) * log_page - 1
            if hi < iova or lo > last:
                continue
            bits.update(range((max(lo, iova) - iova) // page_size, (min(hi, last) - iova) // page_size + 1))
    return sorted(bits)
