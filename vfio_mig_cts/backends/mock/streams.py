"""The mock driver's migration data: its stream format and its two kinds of data stream.

Stream: a 24-byte header (magic, device identity, state size, version), then records (12-byte
record header + data): DATA records carry a range of the device's internal state, one END record
closes the stream. PRE_COPY streams the header and a full image (the initial data) and then the
chunks the running device dirtied; STOP_COPY streams what is left, then END.
"""

from __future__ import annotations

import errno
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vfio_mig_cts.backends.mock.quirks import Quirks
from vfio_mig_cts.backends.protocol import POLLIN, POLLOUT, PrecopyInfo, pack_precopy_info
from vfio_mig_cts.uapi import vfio as uapi

MAGIC = b"VFMOCK01"
VERSION = 1
HEADER = struct.Struct("<8sQIHH")
RECORD = struct.Struct("<BxxxII")
REC_DATA, REC_END = 1, 2
CHUNK = 64


def _err(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)))


def header(identity: int, size: int) -> bytes:
    return HEADER.pack(MAGIC, identity, size, VERSION, 0)


def data_record(offset: int, data: bytes) -> bytes:
    return RECORD.pack(REC_DATA, offset, len(data)) + data


END_RECORD = RECORD.pack(REC_END, 0, 0)


@dataclass(frozen=True)
class LoadError:
    """Why a stream does not load: an errno and a reason."""

    errno: int
    reason: str


def check_header(data: bytes, identity: int, size: int) -> LoadError | None:
    magic, ident, length, version, flags = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or flags:
        return LoadError(errno.EINVAL, "bad stream header")
    if ident != identity or length != size:
        return LoadError(errno.EINVAL, f"stream from incompatible device (identity {ident:#x}, size {length})")
    return None


def parse(data: bytes, identity: int, size: int) -> tuple[list[tuple[int, bytes]], LoadError | None]:
    """The DATA records of a complete stream, or why it is not one."""
    if len(data) < HEADER.size:
        return [], LoadError(errno.EINVAL, f"stream of {len(data)} bytes has no complete header")
    bad = check_header(data, identity, size)
    if bad:
        return [], bad
    pos = HEADER.size
    records: list[tuple[int, bytes]] = []
    while True:
        if pos + RECORD.size > len(data):
            return [], LoadError(errno.EINVAL, f"stream ends inside a record header at byte {pos}")
        kind, off, length = RECORD.unpack_from(data, pos)
        pos += RECORD.size
        if kind == REC_END:
            if pos != len(data):
                return [], LoadError(errno.EINVAL, f"{len(data) - pos} bytes after the end record")
            return records, None
        if kind != REC_DATA or off + length > size:
            return [], LoadError(errno.EINVAL, f"bad record (type {kind}, offset {off}, length {length})")
        if pos + length > len(data):
            return [], LoadError(errno.EINVAL, "stream ends inside a data record")
        records.append((off, data[pos:pos + length]))
        pos += length


class _MockStream:
    """What both stream kinds share: no fd, no seeking, death when the session ends."""

    fd = -1

    def __init__(self, quirks: Quirks) -> None:
        self.q = quirks
        self.dead = False
        self.closed = False
        self.lock = threading.Lock()  # the migration file's mutex: read() holds it
        self.race_delay = 0.0  # seconds a read() sleeps holding it (MockConfig.race_delay)

    def _live(self) -> None:
        if self.closed:
            raise _err(errno.EBADF)
        if self.dead:
            raise _err(errno.ENODEV)

    def pread(self, size: int, offset: int) -> bytes:
        if self.q.fds_seekable:
            return b""
        raise _err(errno.ESPIPE)

    def pwrite(self, data: bytes, offset: int) -> int:
        if self.q.fds_seekable:
            return len(data)
        raise _err(errno.ESPIPE)

    def lseek(self, offset: int, whence: int) -> int:
        if self.q.fds_seekable:
            return 0
        raise _err(errno.ESPIPE)

    def close(self) -> None:
        self.closed = True


class SaveStream(_MockStream):
    """A saving data_fd: PRE_COPY (temporary end of stream) then STOP_COPY (permanent end)."""

    def __init__(self, identity: int, memory: bytearray, precopy: bool,
                 in_precopy_state: Callable[[], bool], v2: Callable[[], bool], quirks: Quirks) -> None:
        super().__init__(quirks)
        self._memory = memory
        self._in_precopy_state = in_precopy_state
        self._v2 = v2
        self.pending = bytearray(header(identity, len(memory)) + data_record(0, bytes(memory)))
        self.initial_left = len(self.pending) if precopy else 0
        self.dirty: set[int] = set()
        self.stop_copy = False
        self._eof_seen = False
        self._sent = bytearray()  # what was read, for a faulty driver that replays it
        self._announced: float | None = None  # (precopy_data_late_ms) when GET_PRECOPY_INFO started the save
        if not precopy:
            self.enter_stop_copy()

    # driver side
    def mark_dirty(self, offset: int, length: int) -> None:
        if not self.stop_copy:
            self.dirty.update(range(offset // CHUNK, (offset + length - 1) // CHUNK + 1))

    def _dirty_records(self) -> bytes:
        out = b"".join(data_record(i * CHUNK, bytes(self._memory[i * CHUNK:(i + 1) * CHUNK]))
                       for i in sorted(self.dirty))
        self.dirty.clear()
        return out

    def enter_stop_copy(self) -> None:
        self.pending += self._dirty_records() + END_RECORD
        self.stop_copy = True

    def _dirty_saved(self) -> bool:
        """Whether the dirty data is ready to read. At once on a plain driver; with ``precopy_data_late_ms``
        (mlx5: GET_PRECOPY_INFO at the end of the data starts an incremental save and counts it,
        mlx5/main.c:537-568; read() gives ENOMSG until it completes) only that long after an ioctl announced it."""
        late = self.q.precopy_data_late_ms
        return not late or (self._announced is not None and time.monotonic() - self._announced >= late / 1000)

    def dirty_bytes(self) -> int:
        queued = max(0, len(self.pending) - self.initial_left)
        return queued + sum(RECORD.size + len(self._memory[i * CHUNK:(i + 1) * CHUNK]) for i in self.dirty)

    def initial_bytes(self) -> int:
        if self.q.initial_bytes_zero:
            return 0
        return max(self.initial_left, self.q.initial_bytes_floor)

    # user side
    def read(self, size: int) -> bytes:
        if self.q.shared_reads_unlocked:
            return self._read(size)
        with self.lock:
            return self._read(size)

    def _read(self, size: int) -> bytes:
        if self.dead and self.q.ended_fd_still_reads and not self.closed:
            return bytes(self._sent[:size]) or b"\0" * size
        self._live()
        q = self.q
        if not self.stop_copy and q.precopy_early_enomsg and self.initial_left and self._sent:
            raise _err(errno.ENOMSG)
        if not self.pending and not self.stop_copy and self.dirty and self._dirty_saved():
            self.pending += self._dirty_records()
            self._announced = None
        if not self.pending:
            if self.stop_copy:
                if q.stopcopy_endless:
                    return b"\0" * size  # (fault) no end of stream, ever
                if q.stopcopy_enomsg:
                    raise _err(errno.ENOMSG)
                if q.stopcopy_eof_once and self._eof_seen:
                    raise _err(errno.EIO)
                self._eof_seen = True
                return b""
            if q.precopy_eos_returns_zero:
                return b""
            raise _err(errno.ENOMSG)
        out = bytes(self.pending[:size])
        if self.race_delay:
            time.sleep(self.race_delay)
        del self.pending[:size]
        if not q.initial_bytes_stuck:
            self.initial_left = max(0, self.initial_left - len(out))
        self._sent += out
        if q.small_reads_garbled and size < 16:
            out = bytes(b ^ 0x5A for b in out)
        return out

    def write(self, data: bytes) -> int:
        if self.closed:
            raise _err(errno.EBADF)
        if self.q.fds_bidirectional:
            return len(data)
        raise _err(errno.EBADF)

    def precopy_info(self, arg: bytes) -> bytes:
        q = self.q
        if self.closed:
            raise _err(errno.EBADF)
        if q.precopy_ioctl_missing:
            raise _err(errno.ENOTTY)
        if len(arg) < uapi.PRECOPY_INFO_SIZE:
            raise _err(errno.EFAULT)
        info = PrecopyInfo.unpack(arg)
        argsz, flags, in_initial, in_dirty = info.argsz, info.flags, info.initial_bytes, info.dirty_bytes
        if argsz < uapi.PRECOPY_INFO_SIZE and not q.precopy_ignores_argsz:
            raise _err(errno.EINVAL)
        if not self._in_precopy_state() and not q.precopy_info_any_state:
            raise _err(errno.EINVAL)
        if self.dead and not q.ended_fd_answers_info:
            raise _err(errno.ENODEV)
        if q.precopy_data_late_ms and self.dirty and not self.pending and self._announced is None:
            self._announced = time.monotonic()  # the save of the dirty data starts now
        out_flags = 0 if self._v2() else flags  # reserved: echoed back until the v2 opt-in
        initial, dirty = self.initial_bytes(), self.dirty_bytes() + q.dirty_bytes_start
        if q.precopy_echoes_counters:
            initial, dirty = in_initial or initial, in_dirty
        return pack_precopy_info(argsz, out_flags, initial, dirty) + arg[uapi.PRECOPY_INFO_SIZE:]

    def poll(self, events: int, timeout_ms: int) -> int:
        """Waits up to ``timeout_ms`` (negative: for ever) for the fd to become ready, as poll(2) does."""
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms >= 0 else float("inf")
        revents = self._revents(events)
        if not revents and timeout_ms and self.q.poll_misses_wakeup:
            time.sleep(max(0.0, min(deadline - time.monotonic(), 3600.0)))  # (fault) never woken
            return self._revents(events)
        while not revents and time.monotonic() < deadline:
            time.sleep(0.001)
            revents = self._revents(events)
        return revents

    def _revents(self, events: int) -> int:
        if self.q.precopy_poll_always_ready and not self.dead:
            return events & (POLLIN | POLLOUT)  # (fault) DEFAULT_POLLMASK: a file without .poll
        if self.dead:
            return 0 if self.q.ended_fd_poll_silent else 0x008  # POLLERR
        if self.stop_copy and not self.pending and self.q.stopcopy_poll_silent:
            return 0
        readable = bool(self.pending) or self.stop_copy or (bool(self.dirty) and self._dirty_saved())
        return events & POLLIN if readable else 0


class ResumeStream(_MockStream):
    """A resuming data_fd: takes bytes, checks the header as soon as it is complete."""

    def __init__(self, identity: int, size: int, quirks: Quirks) -> None:
        super().__init__(quirks)
        self._identity = identity
        self._size = size
        self.data = bytearray()

    def read(self, size: int) -> bytes:
        if self.closed:
            raise _err(errno.EBADF)
        if self.q.fds_bidirectional:
            return b""
        raise _err(errno.EBADF)

    def write(self, data: bytes) -> int:
        if self.dead and self.q.ended_resume_fd_writes and not self.closed:
            return len(data)  # (fault) the ended session's fd takes bytes it will never load
        self._live()
        if self.q.split_header_refused and len(self.data) < HEADER.size and len(self.data) + len(data) < HEADER.size:
            raise _err(errno.EINVAL)
        if len(self.data) < HEADER.size <= len(self.data) + len(data):
            bad = check_header(bytes(self.data + data)[:HEADER.size], self._identity, self._size)
            if bad and self.q.header_hole:  # (fault) mtty_resume_write(): -EFAULT, yet filled_size += len
                self.data += data
                raise _err(errno.EFAULT)
            if bad:
                raise _err(bad.errno)
        if self.q.write_takes_nothing:  # (fault) the header, then neither an error nor a byte taken
            data = data[:max(0, HEADER.size - len(self.data))]
            if not data:
                return 0
        if len(self.data) + len(data) > 16 * (self._size + 4096):
            raise _err(errno.ENOMEM)
        self.data += data
        return len(data)

    def precopy_info(self, arg: bytes) -> bytes:
        raise _err(errno.ENOTTY)

    def poll(self, events: int, timeout_ms: int) -> int:
        return 0x008 if self.dead else events & POLLOUT
