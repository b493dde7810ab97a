"""mtty, the kernel's sample migration driver (samples/vfio-mdev/mtty.c, Linux 6.12), as a personality.

What it does, with its source lines:

- MIGRATION: STOP_COPY | P2P | PRE_COPY (mtty.c:1347-1349); DMA logging ops that do nothing and return 0
  (1287-1310): a second START and a REPORT while logging is off succeed, no bit is ever set.
- The stream is ``struct mtty_data`` (129-139): a 24-byte header (magic, major/minor version, nr_ports,
  flags) and one ``struct serial_port`` (36 bytes) per port; MIG_DATA_SIZE is its size in every state
  (777-781, 1271-1279).
- PRE_COPY streams the header only (1006); initial_bytes = filled - pos, dirty_bytes = 0 (874-875); at the
  end read() returns 0, not ENOMSG (909-917); there is no poll method. PRE_COPY_P2P -> STOP_COPY appends the
  ports (1013-1015, 932-946); STOP -> STOP_COPY opens a file with header and ports at once.
- Resuming: a write past the data size is ENOMEM (1037-1038); when the header completes it is checked
  (magic, flags, versions, nr_ports) and a bad one fails that write with EFAULT, but the bytes still count
  (1058-1073). The final load checks the size only (955) and copies the ports (963-965).
- Reset (1401-1415, 807-820) and close (1935-1943) end the sessions; neither touches the ports, and
  nothing resets the state on open (mtty has no open_device): the UART state survives both. Closing in
  RESUMING drops the resuming file but leaves the state RESUMING (``close_drops_resuming_file``), so the
  next SET out of RESUMING oopses in mtty_load_state() (950: ``migf`` is NULL).
"""

from __future__ import annotations

import errno
import struct

from vfio_mig_cts.backends.mock import resuming
from vfio_mig_cts.backends.mock.driver import MockDriver, ResumingFile, SavingFile
from vfio_mig_cts.backends.mock.personalities.base import Capability, Deviation, Personality
from vfio_mig_cts.backends.mock.personalities.files import (
    BufferResumeFile,
    BufferSaveFile,
    Overflow,
    PrecopyIoctl,
    err,
)
from vfio_mig_cts.backends.mock.quirks import Quirks
from vfio_mig_cts.uapi.vfio import MigFlag, State

SRC = "samples/vfio-mdev/mtty.c"
HEADER = struct.Struct("<QIIII")  # magic, major_ver, minor_ver, nr_ports, flags: offsetof(struct mtty_data, ports)
MAGIC = 0x7E9D09898C3E2C4E  # MTTY_MAGIC
MAJOR, MINOR = 1, 0
PORT_SIZE = 36  # sizeof(struct serial_port) on x86-64
PRECOPY_STATES = frozenset({State.PRE_COPY, State.PRE_COPY_P2P})  # mtty.c:854-858


class MttyDriver(MockDriver):
    """mtty's migration: ``memory`` is the ports' ``struct serial_port`` array."""

    @property
    def nr_ports(self) -> int:
        return len(self.memory) // PORT_SIZE

    def data_size(self) -> int:
        """mtty_data_size(): the header and the ports (mtty.c:777-781)."""
        return HEADER.size + len(self.memory)

    def stop_copy_length(self) -> int:
        return self.data_size()  # mtty_get_data_size(), mtty.c:1271-1279

    def _new_save(self, precopy: bool) -> SavingFile:
        """mtty_save_device_data() (mtty.c:971-1018): the header, and the ports at STOP_COPY."""
        buf = bytearray(HEADER.pack(MAGIC, MAJOR, MINOR, self.nr_ports, 0)) + bytearray(len(self.memory))
        f = BufferSaveFile(self.q, lambda: buf, HEADER.size, PrecopyIoctl(PRECOPY_STATES, lambda: self.state),
                           on_stop_copy=lambda f: self._save_state(buf, f))
        if not precopy:
            self._save_state(buf, f)
        return f

    def _save_state(self, buf: bytearray, f: BufferSaveFile) -> None:
        """mtty_save_state() (mtty.c:932-946): the ports, appended."""
        buf[HEADER.size:] = self.memory
        f.filled += len(self.memory)

    def _new_resume(self) -> ResumingFile:
        size = self.data_size()
        return BufferResumeFile(self.q, bytearray(size), size, Overflow.ENOMEM, check=self._check_header)

    def _check_header(self, f: BufferResumeFile, taken: int) -> int:
        """mtty_resume_write() (mtty.c:1058-1071): the header is checked once, by the write that completes it."""
        if not f.filled - taken < HEADER.size <= f.filled:
            return 0
        magic, major, minor, ports, flags = HEADER.unpack_from(f.buf)
        ok = magic == MAGIC and not flags and (major, minor) == (MAJOR, MINOR) and ports == self.nr_ports
        return 0 if ok else errno.EFAULT

    def _load(self) -> None:
        """mtty_load_state() (mtty.c:948-969): enough bytes is all it asks."""
        f = resuming.resume_file(self)
        assert isinstance(f, BufferResumeFile)
        if f.filled < self.data_size():
            raise err(errno.EINVAL)
        self.memory[:] = f.buf[HEADER.size:self.data_size()]

    def _reset_device(self) -> None:
        """mtty_reset() (mtty.c:1401-1415) ends the sessions only: the ports keep their state."""


MTTY = Personality(
    name="mtty",
    driver="mtty",
    flags=int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY),
    summary="the sample driver, an emulated 16550 UART (samples/vfio-mdev/mtty.c), which the guest lane runs",
    driver_class=MttyDriver,
    state_size=2 * PORT_SIZE,  # mtty-2, the lane's device under test and peer
    incompatible_state_size=PORT_SIZE,  # mtty-1, the lane's incompatible device
    dma_logging=True,
    capabilities=frozenset({Capability.PROFILE}),  # as the vfio backend's mtty profile (vfio/profiles.py)
    quirks=Quirks(dma_restart_allowed=True, dma_report_without_start=True, reopen_keeps_state=True,
                  close_drops_resuming_file=True),
    deviations=(
        Deviation("EOS.PRECOPY_POLL", ("suites/test_precopy.py::test_poll_at_temporary_end[*]",),
                  "mtty_save_fops has no poll method, so poll() answers the VFS default mask "
                  "(readable) at PRE_COPY's temporary end of stream, where read() returns 0: userspace cannot wait "
                  "for more data with it",
                  f"{SRC}:924"),
        Deviation("EOS.PRECOPY_ENOMSG", ("suites/test_precopy.py::test_initial_bytes_drain[*]",
                                         "suites/test_stateful.py::test_random_sequences[*]"),
                  "mtty_save_read() returns 0, not -ENOMSG, at PRE_COPY's temporary end of stream: len is 0 "
                  "there and ret stays 0", f"{SRC}:909"),
        Deviation("RESUME.FINAL_LOAD", ("suites/test_resume.py::test_invalid_stream_refused[*-header-damaged-*]",),
                  "mtty_resume_write() fails a bad header with -EFAULT but still counts the bytes in filled_size, "
                  "and mtty_load_state() checks only the size, so leaving RESUMING loads the damaged stream",
                  f"{SRC}:1066"),
        Deviation("DMA.START_ONCE", ("suites/test_dma_logging.py::test_second_start_refused[*]",),
                  "mtty_log_start() does nothing and returns 0, so a second DMA_LOGGING_START before STOP succeeds",
                  f"{SRC}:1287"),
        Deviation("DMA.REPORT_NOT_STARTED", ("suites/test_dma_logging.py::test_report_requires_logging[*]",),
                  "mtty_log_read_and_clear() does nothing and returns 0, so DMA_LOGGING_REPORT succeeds while "
                  "logging is off", f"{SRC}:1299"),
        Deviation("RESUME.FINAL_LOAD", ("suites/test_reopen.py::test_reopen_device[*-RESUMING-*]",),
                  "KERNEL BUG: mtty_close() disables the resuming file (resuming_migf = NULL) but leaves the state "
                  "RESUMING; asked to leave RESUMING after the reopen, mtty_load_state() dereferences the NULL "
                  "file (oops), the task dies holding the state mutex and the device is lost until reboot",
                  f"{SRC}:1935", kernel_messages=True),
    ),
)
