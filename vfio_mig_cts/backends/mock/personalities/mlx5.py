"""mlx5_vfio_pci (drivers/vfio/pci/mlx5/{main.c,cmd.c}, Linux 6.12) as a personality.

What it does, with its source lines (``main.c`` unless named):

- MIGRATION: STOP_COPY | P2P | PRE_COPY (cmd.c:267-270); DMA logging (cmd.c:274-275; a second START and a
  REPORT while off are EINVAL, cmd.c:1532-1533, 1750-1751: the mock's log). MIG_DATA_SIZE asks the
  firmware for the size of a full image in every state (1260-1276).
- The stream is a sequence of records, each a 16-byte header (record_size, flags, tag) and its data
  (cmd.h): first an optional STOP_COPY_SIZE record (363-406), then FW_DATA records, each one firmware
  image (cmd.c:582-609). Images come from SAVE_VHCA_STATE, an asynchronous firmware command: the data
  appears when its callback runs (cmd.c:611-681).
- PRE_COPY: entering it queues the size record and starts a full, tracking SAVE (626-700, 1180-1191).
  initial_bytes counts the size record, then the first image once saved (cmd.c:606-607, 654-657).
  The ioctl (483-581) copies the caller's whole struct in and writes back one counter only: initial_bytes
  while the initial data is not all read, else dirty_bytes, the other left as the caller wrote it
  (537-544). In PRE_COPY it first asks the firmware (waiting for a SAVE in flight, cmd.c:107-110) how
  much changed; if the stream is read to its end and something changed, it reports that size as
  dirty_bytes and starts an incremental SAVE (546-568). In PRE_COPY_P2P it asks nothing and waits for
  nothing (514-529).
- read() waits while nothing is queued and no image is expected soon (208-216); with nothing queued in
  PRE_COPY it returns ENOMSG (229-236), also while a SAVE it started is still in flight. poll() says
  readable when something is queued or the stream is complete (267-284). PRE_COPY_P2P -> STOP_COPY
  waits for the SAVE in flight and saves the final incremental image (1193-1200, 592-624); STOP ->
  STOP_COPY saves one full image (1123-1132). After the last image read() returns 0.
- Resuming (883-996) parses the records as they are written: a header whose record_size is over
  MAX_LOAD_SIZE is ENOMEM (847-851), an unknown mandatory tag EOPNOTSUPP (858-872); each complete image
  is loaded by the firmware inside that write() (973-984). A failed write puts the file in error:
  later writes are ENODEV (990-995). RESUMING -> STOP only closes the file: no final check at all
  (1175-1178).
- Reset (the PCI reset_done handler, 1290-1312 and 1213-1226) and close (1331-1338) end the sessions;
  reset goes to RUNNING, and is an FLR: the state is reset.

The firmware is not in the kernel source. The model assumes: an image is the mock's stream format
(header, records, end record) of the full state or of the chunks changed since the last image; LOAD
refuses an image it cannot parse or that comes from another device with BAD_PARAM (EINVAL, cmd_status_to_err
in mlx5/core/cmd.c); the "how much changed" query answers 0 when nothing changed; and a SAVE completes
only when something waits for it (the ioctl's query, a blocking read, poll, the next arc), so that the
window in which it is in flight is wider than any sequence of calls that does not wait.
"""

from __future__ import annotations

import enum
import errno
import math
import struct
import threading
import time
from collections.abc import Callable

from vfio_mig_cts.backends.mock.driver import MockDriver, ResumingFile, SavingFile
from vfio_mig_cts.backends.mock.personalities.base import Capability, Deviation, Personality
from vfio_mig_cts.backends.mock.personalities.files import (
    POLLNVAL,
    POLLRDNORM,
    WriteOnlyFile,
    err,
    precopy_arg,
)
from vfio_mig_cts.backends.mock.streams import CHUNK, END_RECORD, _MockStream, data_record, header, parse
from vfio_mig_cts.backends.protocol import POLLERR, POLLHUP, POLLIN, DataStream, pack_precopy_info
from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import MigFlag, State

SRC = "drivers/vfio/pci/mlx5/main.c"
R = "suites/test_resume.py::test_invalid_stream_refused"
RECORD = struct.Struct("<QII")  # struct mlx5_vf_migration_header: record_size, flags, tag
TAG_FW_DATA, TAG_STOP_COPY_SIZE = 0, 1
FLAG_MANDATORY, FLAG_OPTIONAL = 0, 1
MAX_LOAD_SIZE = (1 << 32) - 1  # BIT_ULL(__mlx5_bit_sz(load_vhca_state_in, size)) - 1
PAGE = 4096
POLLRDHUP = 0x2000
PRECOPY_STATES = frozenset({State.PRE_COPY, State.PRE_COPY_P2P})  # main.c:508-512


class MigfState(enum.Enum):
    """enum mlx5_vf_migf_state (cmd.h), and 0 before the first SAVE completes."""

    NEW = 0
    PRE_COPY = 3
    SAVE_STOP_COPY_CHUNK = 4
    COMPLETE = 5


def record(tag: int, flags: int, data: bytes) -> bytes:
    return RECORD.pack(len(data), flags, tag) + data


class Mlx5SaveFile(_MockStream):
    """mlx5vf_save_fops over the model's firmware: the queued records, the file position, one SAVE in flight."""

    def __init__(self, drv: Mlx5Driver, track: bool) -> None:
        super().__init__(drv.q)
        self.drv = drv
        self.queue = bytearray()  # migf->buf_list, as the bytes from position ``pos`` on
        self.pos = 0  # f_pos
        self.state = MigfState.NEW
        self.initial_bytes = 0  # migf->pre_copy_initial_bytes
        self.changed: set[int] = set()  # chunks the device changed since the last image (tracking)
        self.tracking = track
        self.job: Callable[[], None] | None = None  # the SAVE in flight: its callback
        self._job_lock = threading.Lock()  # save_comp: one SAVE at a time, its callback run once
        # mlx5vf_prep_stop_copy() + mlx5vf_add_stop_copy_header() (408-481, 363-406)
        size = len(drv.image(full=True))
        prep = math.ceil((size + size // 10 if track else size) / PAGE) * PAGE
        self.queue += record(TAG_STOP_COPY_SIZE, FLAG_OPTIONAL, struct.pack("<Q", prep))
        if track:
            self.initial_bytes = len(self.queue)
        self._save(full=True, final=not track)

    # --- the firmware's SAVE_VHCA_STATE ------------------------------------------------------------
    def _save(self, full: bool, final: bool) -> None:
        """mlx5vf_cmd_save_vhca_state() (cmd.c:683-772): the image is taken now, queued by the callback."""
        image = self.drv.image(full=full, chunks=self.changed)
        self.changed = set()
        initial = self.state is not MigfState.PRE_COPY and not final  # cmd.c:623-624
        if final:
            self.state = MigfState.SAVE_STOP_COPY_CHUNK  # cmd.c:749-750

        def done() -> None:  # mlx5vf_save_callback() (cmd.c:611-668)
            self.queue += record(TAG_FW_DATA, FLAG_MANDATORY, image)
            if initial:
                self.initial_bytes += RECORD.size + len(image)
                self.state = MigfState.PRE_COPY
            if final:
                self.state = MigfState.COMPLETE

        with self._job_lock:
            self.job = done

    def wait(self) -> None:
        """Anything that waits for save_comp (the query, suspend) or on poll_wait: the SAVE completes."""
        with self._job_lock:
            job, self.job = self.job, None
            if job is not None:
                job()

    def changed_size(self) -> int:
        """QUERY_VHCA_MIGRATION_STATE with the incremental bit: the next image's size, 0 if nothing changed."""
        return len(self.drv.image(full=False, chunks=self.changed)) if self.changed else 0

    # --- driver side ---------------------------------------------------------------------------------
    def mark_dirty(self, offset: int, length: int) -> None:
        if self.tracking:
            self.changed.update(range(offset // CHUNK, (offset + length - 1) // CHUNK + 1))

    def enter_stop_copy(self) -> None:
        """PRE_COPY_P2P -> STOP_COPY: suspend (waits for the SAVE in flight, cmd.c:55-59), then the final
        incremental image (mlx5vf_pci_save_device_inc_data(), 592-624)."""
        self.wait()
        self.tracking = False
        self._save(full=False, final=True)

    # --- user side -----------------------------------------------------------------------------------
    def read(self, size: int) -> bytes:
        """mlx5vf_save_read() (195-265)."""
        if self.closed:
            raise err(errno.EBADF)
        if not (self.queue or self.dead or self.state in (MigfState.PRE_COPY, MigfState.COMPLETE)):
            self.wait()  # wait_event_interruptible(): a blocking read sleeps until the image is queued
        with self.lock:
            if self.dead:
                raise err(errno.ENODEV)  # MLX5_MIGF_STATE_ERROR
            if not self.queue:
                if self.state is MigfState.PRE_COPY:
                    raise err(errno.ENOMSG)  # the temporary end of stream (231-236)
                return b""
            out = bytes(self.queue[:size])
            del self.queue[:len(out)]
            self.pos += len(out)
            return out

    def write(self, data: bytes) -> int:
        raise err(errno.EBADF)  # opened O_RDONLY

    def precopy_info(self, arg: bytes) -> bytes:
        """mlx5vf_precopy_ioctl() (483-581)."""
        argsz, flags, initial, dirty = precopy_arg(self.closed, arg, self.drv.state, PRECOPY_STATES)
        inc_length = 0
        if self.drv.state == State.PRE_COPY:
            self.wait()  # mlx5vf_cmd_query_vhca_migration_state(MLX5VF_QUERY_INC)
            if self.dead:
                raise err(errno.ENODEV)
            inc_length = self.changed_size()
        if self.dead:
            raise err(errno.ENODEV)
        end_of_data = False
        if self.initial_bytes > self.pos:
            initial = self.initial_bytes - self.pos  # dirty_bytes: what the caller wrote
        else:
            dirty = len(self.queue)  # migf->max_pos - *pos; initial_bytes: what the caller wrote
            end_of_data = not dirty
            dirty += inc_length
        if end_of_data and inc_length:
            self._save(full=False, final=False)  # "save a new state to be ready for" (552-568)
        return pack_precopy_info(argsz, flags, initial, dirty) + arg[uapi.PRECOPY_INFO_SIZE:]

    def poll(self, events: int, timeout_ms: int) -> int:
        """mlx5vf_save_poll() (267-284): poll(2) sleeps on poll_wait until a SAVE callback or the end of the
        session wakes it (cmd.c:660, main.c:1075), or the timeout."""
        if self.closed:
            return POLLNVAL
        deadline = time.monotonic() + (timeout_ms / 1000 if timeout_ms >= 0 else 3600.0)
        while True:
            if timeout_ms:
                self.wait()
            revents = self._revents(events)
            if revents or time.monotonic() >= deadline:
                return revents
            time.sleep(0.001)

    def _revents(self, events: int) -> int:
        wanted = events | POLLERR | POLLHUP
        if self.dead:
            return (POLLIN | POLLRDNORM | POLLRDHUP) & wanted
        if self.queue or self.state is MigfState.COMPLETE:
            return (POLLIN | POLLRDNORM) & wanted
        return 0


class Mlx5ResumeFile(WriteOnlyFile):
    """mlx5vf_resume_write() (883-996): records parsed as written, each image loaded by the firmware."""

    def __init__(self, drv: Mlx5Driver) -> None:
        super().__init__(drv.q)
        self.drv = drv
        self.header = bytearray()
        self.record_size = self.tag = 0
        self.body: bytearray | None = None  # the record's data being collected (None: reading a header)

    def write(self, data: bytes) -> int:
        if self.closed:
            raise err(errno.EBADF)
        with self.lock:
            if self.dead:
                raise err(errno.ENODEV)  # MLX5_MIGF_STATE_ERROR
            try:
                self._take(data)
            except OSError:
                self.dead = True  # "if (ret) migf->state = MLX5_MIGF_STATE_ERROR" (990-992)
                raise
            return len(data)

    def _take(self, data: bytes) -> None:
        pos = 0
        while pos < len(data) or (self.body is not None and len(self.body) == self.record_size):
            if self.body is None:  # MLX5_VF_LOAD_STATE_READ_HEADER (815-881)
                n = min(RECORD.size - len(self.header), len(data) - pos)
                self.header += data[pos:pos + n]
                pos += n
                if len(self.header) < RECORD.size:
                    continue
                self.record_size, flags, self.tag = RECORD.unpack(self.header)
                self.header = bytearray()
                if self.record_size > MAX_LOAD_SIZE:
                    raise err(errno.ENOMEM)
                if self.tag not in (TAG_FW_DATA, TAG_STOP_COPY_SIZE) and not flags & FLAG_OPTIONAL:
                    raise err(errno.EOPNOTSUPP)
                self.body = bytearray()
                continue
            n = min(self.record_size - len(self.body), len(data) - pos)
            self.body += data[pos:pos + n]
            pos += n
            if len(self.body) < self.record_size:
                continue
            body, self.body = bytes(self.body), None
            if self.tag == TAG_FW_DATA:
                self.drv.load_image(body)  # MLX5_VF_LOAD_STATE_LOAD_IMAGE: mlx5vf_cmd_load_vhca_state()



class Mlx5Driver(MockDriver):
    """mlx5's migration: ``memory`` is the VF's state the firmware saves and loads."""

    def image(self, full: bool, chunks: set[int] | None = None) -> bytes:
        """The model firmware's image: the whole state, or the chunks changed since the last image."""
        records = [data_record(0, bytes(self.memory))] if full else [
            data_record(i * CHUNK, bytes(self.memory[i * CHUNK:(i + 1) * CHUNK])) for i in sorted(chunks or ())]
        return header(self.cfg.identity, len(self.memory)) + b"".join(records) + END_RECORD

    def load_image(self, image: bytes) -> None:
        """LOAD_VHCA_STATE: an image it cannot parse, or another device's, is BAD_PARAM (EINVAL)."""
        records, bad = parse(image, self.cfg.identity, len(self.memory))
        if bad is not None:
            raise err(errno.EINVAL)
        for off, chunk in records:
            self.memory[off:off + len(chunk)] = chunk

    def stop_copy_length(self) -> int:
        return len(self.image(full=True))  # mlx5vf_pci_get_data_size(): the full image, 1260-1276

    def step(self, cur: State, nxt: State) -> DataStream | None:
        if isinstance(self.save, Mlx5SaveFile) and (cur, nxt) != (State.PRE_COPY_P2P, State.PRE_COPY):
            self.save.wait()  # suspend and the queries wait for the SAVE in flight (cmd.c:55-59, 107-110)
        return super().step(cur, nxt)

    def _new_save(self, precopy: bool) -> SavingFile:
        return Mlx5SaveFile(self, track=precopy)

    def _new_resume(self) -> ResumingFile:
        return Mlx5ResumeFile(self)

    def _load(self) -> None:
        """RESUMING -> STOP: mlx5vf_disable_fds() only (1175-1178); every image was loaded at write()."""


MLX5 = Personality(
    name="mlx5",
    driver="mlx5_vfio_pci",
    flags=int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY),
    summary="NVIDIA ConnectX VFs, firmware with migration, tracking and multi-load (drivers/vfio/pci/mlx5/)",
    driver_class=Mlx5Driver,
    state_size=256,
    incompatible_state_size=512,
    dma_logging=True,
    capabilities=frozenset({Capability.PROFILE, Capability.DMA_WRITES}),
    deviations=(
        Deviation("PRECOPY.RETURNED", ("suites/test_precopy.py::test_counters_ignore_callers_buffer[*]",),
                  "mlx5vf_precopy_ioctl() copies the caller's whole struct in and assigns one counter only: "
                  "initial_bytes while initial data is left (then dirty_bytes is what the caller wrote), else "
                  "dirty_bytes (then initial_bytes is the caller's)", f"{SRC}:537"),
        Deviation("PRECOPY.INITIAL_BYTES", ("suites/test_precopy.py::test_initial_bytes_drain[*-PRE_COPY_P2P]",),
                  "in PRE_COPY_P2P the ioctl asks the firmware nothing and so does not wait for the initial SAVE: "
                  "initial_bytes first counts the 24-byte size record alone and grows by the whole image when "
                  "the SAVE completes (mlx5vf_save_callback(), cmd.c:654-657; a read waits for it). Timing: a "
                  "SAVE that completes before the first query hides it", f"{SRC}:519"),
        Deviation("RESUME.FINAL_LOAD", (f"{R}[*-incompatible-*]", f"{R}[*-header-damaged-*]",
                                        f"{R}[*-bytes-appended-careless-*]"),
                  "a write() that failed (the firmware refused the image: EINVAL; a record size over "
                  "MAX_LOAD_SIZE, as appended bytes read as a header: ENOMEM) puts the file in error, but "
                  "RESUMING -> STOP only closes the file "
                  "(mlx5vf_disable_fds()), so leaving RESUMING succeeds", f"{SRC}:1176"),
        Deviation("RESUME.FINAL_CHECK", (f"{R}[*-cut-*]", f"{R}[*-one-byte-short-*]", f"{R}[*-empty-*]",
                                        f"{R}[*-appended-*]", "suites/test_resume.py::test_second_session[*]"),
                  "RESUMING -> STOP does no final check (mlx5vf_disable_fds() only): a stream cut short or empty "
                  "(its last image never complete, so never loaded) or with more images after it (each loaded "
                  "by the firmware inside write()) leaves RESUMING with success", f"{SRC}:1176"),
    ),
)
