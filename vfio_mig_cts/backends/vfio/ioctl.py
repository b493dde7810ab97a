"""Raw ioctls through libc, with buffers the kernel cannot overrun.

Rules:

- Every ioctl goes through ``libc.ioctl`` (ctypes releases the GIL for the call, so a call that
  blocks in the kernel does not stop the watchdog thread) and fails as ``OSError`` carrying the
  kernel's errno; the message names the ioctl.
- An in/out argument lives in a ``GuardedBuffer``: its bytes end exactly where an inaccessible page
  begins, so a kernel access past what the caller provided faults (EFAULT) instead of reading or
  writing this process's memory. That is what a test with a too-large ``argsz`` must see.
- ``VFIO_DEVICE_FEATURE`` arguments are the 8-byte header (argsz, flags) followed by the payload;
  ``argsz`` is passed as given (masked to 32 bits), even when it disagrees with the buffer.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import mmap
import os
import struct
from dataclasses import dataclass
from types import TracebackType

from vfio_mig_cts.uapi import vfio as uapi

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munmap.restype = ctypes.c_int
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mprotect.restype = ctypes.c_int

PAGE = mmap.PAGESIZE
PROT_NONE = 0  # <sys/mman.h>; the mmap module does not export it
_MAP_FAILED = ctypes.c_void_p(-1).value


def os_error(code: int, what: str) -> OSError:
    """``OSError(code)`` whose message names the call: ``[Errno 22] VFIO_DEVICE_FEATURE: Invalid argument``."""
    return OSError(code, f"{what}: {os.strerror(code)}")


def ioctl(fd: int, request: int, arg: int = 0, name: str = "ioctl") -> int:
    """``ioctl(fd, request, arg)``: ``arg`` is an address or a plain value; returns the result (>= 0)."""
    ret = int(_libc.ioctl(fd, request, arg))
    if ret < 0:
        raise os_error(ctypes.get_errno() or errno_mod.EIO, name)
    return ret


class GuardedBuffer:
    """``len(data)`` writable bytes ending at an inaccessible (PROT_NONE) page.

    Use as a context manager. Never free a buffer a call may still be using: a thread abandoned in
    an ioctl keeps its buffer (the owner frees it only after the call returns).
    """

    def __init__(self, data: bytes) -> None:
        self.size = len(data)
        pages = max(1, -(-self.size // PAGE))
        self._length = (pages + 1) * PAGE
        base = _libc.mmap(None, self._length, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base is None or base == _MAP_FAILED:
            raise os_error(ctypes.get_errno() or errno_mod.ENOMEM, "mmap")
        self._base: int | None = int(base)
        guard = self._base + pages * PAGE
        if _libc.mprotect(guard, PAGE, PROT_NONE) != 0:
            code = ctypes.get_errno() or errno_mod.ENOMEM
            self.free()
            raise os_error(code, "mprotect")
        self.address = guard - self.size
        ctypes.memmove(self.address, data, self.size)

    def read(self) -> bytes:
        """The buffer's bytes now (after the call)."""
        return ctypes.string_at(self.address, self.size)

    def free(self) -> None:
        if self._base is not None:
            _libc.munmap(self._base, self._length)
            self._base = None

    def __enter__(self) -> GuardedBuffer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.free()


def call_with_buffer(fd: int, request: int, data: bytes, name: str) -> bytes:
    """An ioctl whose argument points at a guarded copy of ``data``; returns the bytes after the call."""
    with GuardedBuffer(data) as buf:
        ioctl(fd, request, buf.address, name)
        return buf.read()


# --- VFIO_DEVICE_FEATURE --------------------------------------------------------------------------

def feature_arg(flags: int, payload: bytes = b"", argsz: int | None = None) -> bytes:
    """The ``struct vfio_device_feature`` argument: header (argsz, flags) + payload.

    ``argsz`` defaults to the header plus the payload; any value is packed as given (mod 2**32).
    """
    if argsz is None:
        argsz = uapi.FEATURE_HEADER_SIZE + len(payload)
    return struct.pack("<II", argsz & 0xFFFFFFFF, flags & 0xFFFFFFFF) + bytes(payload)


def feature_payload(arg_after: bytes) -> bytes:
    """The data part of a feature argument after the call."""
    return arg_after[uapi.FEATURE_HEADER_SIZE:]


def returned_data_fd(flags: int, payload_after: bytes) -> int | None:
    """The data_fd a successful SET of MIG_DEVICE_STATE returned, or None (GET, PROBE, other features)."""
    if flags & uapi.VFIO_DEVICE_FEATURE_PROBE or not flags & uapi.VFIO_DEVICE_FEATURE_SET:
        return None
    if flags & uapi.VFIO_DEVICE_FEATURE_MASK != uapi.Feature.MIG_DEVICE_STATE or len(payload_after) < 8:
        return None
    (fd,) = struct.unpack_from("<i", payload_after, 4)
    return int(fd) if fd >= 0 else None


def device_feature(fd: int, flags: int, payload: bytes = b"", argsz: int | None = None) -> bytes:
    """``VFIO_DEVICE_FEATURE`` on a device fd; returns the payload part after the call."""
    arg = feature_arg(flags, payload, argsz)
    return feature_payload(call_with_buffer(fd, uapi.VFIO_DEVICE_FEATURE, arg, "VFIO_DEVICE_FEATURE"))


# --- other device ioctls ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RegionInfo:
    """``struct vfio_region_info`` as returned."""

    index: int
    flags: int
    size: int
    offset: int


def region_info_arg(index: int) -> bytes:
    info = uapi.vfio_region_info(argsz=ctypes.sizeof(uapi.vfio_region_info), index=index)
    return bytes(info)


def parse_region_info(raw: bytes) -> RegionInfo:
    info = uapi.vfio_region_info.from_buffer_copy(raw.ljust(ctypes.sizeof(uapi.vfio_region_info), b"\0"))
    return RegionInfo(index=int(info.index), flags=int(info.flags), size=int(info.size), offset=int(info.offset))


def get_region_info(fd: int, index: int) -> RegionInfo:
    raw = call_with_buffer(fd, uapi.VFIO_DEVICE_GET_REGION_INFO, region_info_arg(index),
                           "VFIO_DEVICE_GET_REGION_INFO")
    return parse_region_info(raw)


def device_reset(fd: int) -> None:
    ioctl(fd, uapi.VFIO_DEVICE_RESET, 0, "VFIO_DEVICE_RESET")


def precopy_info(fd: int, arg: bytes) -> bytes:
    """``VFIO_MIG_GET_PRECOPY_INFO`` on a data fd: ``arg`` (padded to the struct) in, its first bytes out."""
    raw = call_with_buffer(fd, uapi.VFIO_MIG_GET_PRECOPY_INFO, bytes(arg).ljust(uapi.PRECOPY_INFO_SIZE, b"\0"),
                           "VFIO_MIG_GET_PRECOPY_INFO")
    return raw[: len(arg)]
