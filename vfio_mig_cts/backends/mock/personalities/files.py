"""Migration files over a buffer: the shape hisi_acc, qat, mtty and pds give their data fds.

Each of those drivers keeps, per file, a buffer, a count of the bytes it holds (``total_length``,
``filled_size``, ``size``), the file position and a ``disabled`` bit; read() copies from the position to
the count and returns 0 there (in PRE_COPY too: none returns ENOMSG), a disabled file fails with ENODEV,
none has a poll method, so poll() answers the VFS default mask (``DEFAULT_POLLMASK``, fs/select.c), and
the files are opened O_RDONLY (saving) or O_WRONLY (resuming), so the other direction is EBADF.

What differs is passed in: where the bytes live (the drivers' own buffer, or qat's device-wide one),
in which states VFIO_MIG_GET_PRECOPY_INFO answers (pds has no ioctl: ENOTTY), what happens at
PRE_COPY -> STOP_COPY, how a write beyond the buffer fails, and what a write checks once it took bytes.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Callable
from dataclasses import dataclass

from vfio_mig_cts.backends.mock.quirks import Quirks
from vfio_mig_cts.backends.mock.streams import _MockStream
from vfio_mig_cts.backends.protocol import POLLIN, POLLOUT, PrecopyInfo, pack_precopy_info
from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import State

POLLRDNORM, POLLWRNORM, POLLNVAL = 0x040, 0x100, 0x020
DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM  # include/linux/poll.h


def err(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)))


def default_poll(closed: bool, events: int) -> int:
    """poll() on a file without a poll method: the VFS default mask, filtered by the events asked for."""
    return POLLNVAL if closed else events & DEFAULT_POLLMASK


def precopy_arg(closed: bool, arg: bytes, state: State, states: frozenset[State]) -> tuple[int, int, int, int]:
    """The checks every 6.12 driver's VFIO_MIG_GET_PRECOPY_INFO makes first: copy_from_user of the whole
    struct (EFAULT), argsz (EINVAL), the device state (EINVAL outside ``states``); the struct as the
    caller wrote it."""
    if closed:
        raise err(errno.EBADF)
    if len(arg) < uapi.PRECOPY_INFO_SIZE:
        raise err(errno.EFAULT)
    info = PrecopyInfo.unpack(arg)
    argsz, flags, initial, dirty = info.argsz, info.flags, info.initial_bytes, info.dirty_bytes
    if argsz < uapi.PRECOPY_INFO_SIZE or state not in states:
        raise err(errno.EINVAL)
    return argsz, flags, initial, dirty


class WriteOnlyFile(_MockStream):
    """A resuming file: opened O_WRONLY (read() is EBADF), no ioctl (ENOTTY), no poll method."""

    def read(self, size: int) -> bytes:
        raise err(errno.EBADF)

    def precopy_info(self, arg: bytes) -> bytes:
        raise err(errno.EBADF if self.closed else errno.ENOTTY)

    def poll(self, events: int, timeout_ms: int) -> int:
        return default_poll(self.closed, events)


@dataclass(frozen=True)
class PrecopyIoctl:
    """A driver's VFIO_MIG_GET_PRECOPY_INFO over a buffer file: it answers in ``states`` (EINVAL
    elsewhere); initial_bytes is what is left up to ``initial_end()`` (the count by default), dirty_bytes 0.
    The argument's flags come back as the caller wrote them (every 6.12 driver copies the whole struct
    in and out)."""

    states: frozenset[State]
    device_state: Callable[[], State]


class BufferSaveFile(_MockStream):
    """A saving file: ``data()`` is the buffer, ``filled`` the bytes it holds, read at ``pos``."""

    def __init__(self, quirks: Quirks, data: Callable[[], bytes | bytearray], filled: int,
                 ioctl: PrecopyIoctl | None, on_stop_copy: Callable[[BufferSaveFile], None] | None = None,
                 initial_end: Callable[[BufferSaveFile], int] | None = None) -> None:
        super().__init__(quirks)
        self._data = data
        self.filled = filled
        self.pos = 0
        self._ioctl = ioctl
        self._on_stop_copy = on_stop_copy
        self._initial_end = initial_end or (lambda f: f.filled)

    # driver side
    def mark_dirty(self, offset: int, length: int) -> None:
        """These drivers track no dirty state: PRE_COPY streams only what the session started with."""

    def enter_stop_copy(self) -> None:
        if self._on_stop_copy is not None:
            self._on_stop_copy(self)

    # user side
    def read(self, size: int) -> bytes:
        with self.lock:
            self._live()
            if self.pos > self.filled:
                raise err(errno.EINVAL)
            n = min(self.filled - self.pos, size)
            out = bytes(self._data()[self.pos:self.pos + n])
            self.pos += n
            return out

    def write(self, data: bytes) -> int:
        raise err(errno.EBADF)  # opened O_RDONLY

    def precopy_info(self, arg: bytes) -> bytes:
        if self._ioctl is None:
            raise err(errno.EBADF if self.closed else errno.ENOTTY)  # no unlocked_ioctl: the VFS says ENOTTY
        argsz, flags, _initial, _dirty = precopy_arg(self.closed, arg, self._ioctl.device_state(), self._ioctl.states)
        if self.dead:
            raise err(errno.ENODEV)
        end = self._initial_end(self)
        if self.pos > end:
            raise err(errno.EINVAL)
        return pack_precopy_info(argsz, flags, end - self.pos, 0) + arg[uapi.PRECOPY_INFO_SIZE:]

    def poll(self, events: int, timeout_ms: int) -> int:
        return default_poll(self.closed, events)


class Overflow(enum.Enum):
    """How a resuming write past the buffer fails."""

    ENOMEM = "enomem"  # the whole write is refused with ENOMEM, before anything else is checked
    PARTIAL = "partial"  # pds: what fits is taken (a short count); nothing fits: EINVAL


class BufferResumeFile(WriteOnlyFile):
    """A resuming file: writes go into ``buf`` at ``pos``; ``check(file, taken)`` runs after the bytes are
    counted and returns an errno for the write (0: fine), as the drivers check after copying."""

    def __init__(self, quirks: Quirks, buf: bytearray, capacity: int, overflow: Overflow,
                 check: Callable[[BufferResumeFile, int], int] | None = None) -> None:
        super().__init__(quirks)
        self.buf = buf
        self.capacity = capacity
        self.overflow = overflow
        self.pos = 0
        self.filled = 0
        self._check = check

    def write(self, data: bytes) -> int:
        if self.closed:
            raise err(errno.EBADF)
        with self.lock:
            n = len(data)
            if self.overflow is Overflow.ENOMEM and self.pos + n > self.capacity:
                raise err(errno.ENOMEM)
            self._live()
            if self.overflow is Overflow.PARTIAL:
                n = min(n, self.capacity - self.pos)
                if n <= 0:
                    raise err(errno.EINVAL)
            self.buf[self.pos:self.pos + n] = data[:n]
            self.pos += n
            self.filled += n
            code = self._check(self, n) if self._check is not None else 0
            if code:
                raise err(code)
            return n
