"""pds_vfio_pci (drivers/vfio/pci/pds/{lm.c,vfio_dev.c,dirty.c,pci_drv.c}, Linux 6.12) as a personality.

What it does, with its source lines:

- MIGRATION: STOP_COPY | P2P, no PRE_COPY (vfio_dev.c:136); DMA logging (vfio_dev.c:110-114): a second
  START while logging is on and a REPORT while it is off are EINVAL (dirty.c:262-263, 536-540), as the
  mock's log does. Leaving STOP_COPY turns logging off (lm.c:383-386).
- MIG_DATA_SIZE is PDS_LM_DEVICE_STATE_LENGTH, 64 KiB, in every state (vfio_dev.c:97-102), whatever the
  device's state takes.
- STOP -> STOP_COPY asks the firmware for the state's size and the state itself into a file of that size
  (lm.c:240-273, 369-381); read() copies up to the size and returns 0 there (lm.c:177-232). The data fds
  have no ioctl (VFIO_MIG_GET_PRECOPY_INFO: ENOTTY) and no poll method (lm.c:234-238, 332-336).
- RESUMING: a file of 64 KiB (lm.c:338-360); a write takes what fits, EINVAL when nothing does
  (lm.c:275-330); nothing is checked at write(). RESUMING -> STOP hands the whole 64 KiB buffer to the
  firmware (lm.c:397-404, cmds.c:319-356): the kernel never tells it how many bytes were written.
- ERROR: the device goes there on a firmware recovery event during a migration (pci_drv.c:22-45,
  vfio_dev.c:29-37: the sessions end, logging stops). There SET does not walk at all and answers EIO,
  whatever was asked (vfio_dev.c:48-80); GET works; VFIO_DEVICE_RESET (reset_done, pci_drv.c:165-171)
  returns to RUNNING.
- Reset and close (vfio_dev.c:177-189) end the sessions; a reset is an FLR: the state is reset.

The firmware is not in the kernel source. The model assumes it saves the mock's stream format and, on
restore, parses the buffer from its start: a bad header or a stream that ends before its end record and
trailer is refused (EINVAL, as pdsc_err_to_errno() maps PDS_RC_EINVAL), and bytes after them are never
looked at (the buffer is 64 KiB of zeros and written bytes; nothing says where the stream ended). The
trailer ends in a non-zero byte, so that a stream cut short never reads as the whole one: whether the real
firmware notices a cut stream is its own business; that it cannot see appended bytes is the kernel's.
"""

from __future__ import annotations

import errno

from vfio_mig_cts.backends.mock import resuming
from vfio_mig_cts.backends.mock.driver import MockDriver, ResumingFile, SavingFile
from vfio_mig_cts.backends.mock.personalities.base import Capability, Deviation, Personality
from vfio_mig_cts.backends.mock.personalities.files import BufferResumeFile, BufferSaveFile, Overflow, err
from vfio_mig_cts.backends.mock.streams import END_RECORD, HEADER, RECORD, check_header, data_record, header
from vfio_mig_cts.backends.protocol import DataStream
from vfio_mig_cts.uapi.vfio import MigFlag, State

LM = "drivers/vfio/pci/pds/lm.c"
DEV = "drivers/vfio/pci/pds/vfio_dev.c"
CMDS = "drivers/vfio/pci/pds/cmds.c"
STATE_LENGTH = 65536  # PDS_LM_DEVICE_STATE_LENGTH, sizeof(union pds_lm_dev_state)
TRAILER = b"PDS\x01"  # the model firmware's end of image


class PdsDriver(MockDriver):
    """pds's migration: ``memory`` is what the firmware saves and restores."""

    def stop_copy_length(self) -> int:
        return STATE_LENGTH  # pds_vfio_get_device_state_size(), vfio_dev.c:97-102

    def set_state(self, new: int) -> DataStream | None:
        """pds_vfio_set_device_state() (vfio_dev.c:39-82): no walk out of ERROR, and -EIO there."""
        with self.lock:
            if self.state == State.ERROR:
                raise err(errno.EIO)
        return super().set_state(new)

    def step(self, cur: State, nxt: State) -> DataStream | None:
        out = super().step(cur, nxt)
        if (cur, nxt) == (State.STOP_COPY, State.STOP):
            self.dma.stop()  # pds_vfio_dirty_disable(pds_vfio, true), lm.c:385
        return out

    def fail(self) -> None:
        """pds_vfio_recovery() -> pds_vfio_reset(ERROR) (pci_drv.c:22-45, vfio_dev.c:29-37)."""
        self._end_sessions()
        self.dma.stop()
        super().fail()

    def _new_save(self, precopy: bool) -> SavingFile:
        """pds_vfio_get_save_file() + pds_vfio_get_lm_state_cmd() (lm.c:240-273, 369-381)."""
        blob = header(self.cfg.identity, len(self.memory)) + data_record(0, bytes(self.memory)) + END_RECORD + TRAILER
        return BufferSaveFile(self.q, lambda: blob, len(blob), ioctl=None)

    def _new_resume(self) -> ResumingFile:
        """pds_vfio_get_restore_file() (lm.c:338-360): 64 KiB, page-aligned."""
        return BufferResumeFile(self.q, bytearray(STATE_LENGTH), STATE_LENGTH, Overflow.PARTIAL)

    def _load(self) -> None:
        """pds_vfio_set_lm_state_cmd() (lm.c:397-404): the firmware restores from the whole buffer."""
        f = resuming.resume_file(self)
        assert isinstance(f, BufferResumeFile)
        data = bytes(f.buf)
        if check_header(data[:HEADER.size], self.cfg.identity, len(self.memory)):
            raise err(errno.EINVAL)
        records, how = resuming.salvage(data)
        end = HEADER.size + sum(RECORD.size + len(chunk) for _, chunk in records) + len(END_RECORD)
        if how not in ("end", "trailing") or data[end:end + len(TRAILER)] != TRAILER \
                or any(off + len(chunk) > len(self.memory) for off, chunk in records):
            raise err(errno.EINVAL)
        for off, chunk in records:
            self.memory[off:off + len(chunk)] = chunk


PDS = Personality(
    name="pds",
    driver="pds_vfio_pci",
    flags=int(MigFlag.STOP_COPY | MigFlag.P2P),
    summary="AMD/Pensando DSC VFs (drivers/vfio/pci/pds/)",
    driver_class=PdsDriver,
    state_size=256,
    incompatible_state_size=512,
    dma_logging=True,
    capabilities=frozenset({Capability.PROFILE, Capability.ERROR, Capability.DMA_WRITES}),
    deviations=(
        Deviation("RESUME.FINAL_CHECK", ("suites/test_resume.py::test_invalid_stream_refused[*-appended-*]",),
                  "pds_vfio_set_lm_state_cmd() hands the firmware the whole 64 KiB restore file (its scatter "
                  "list), never the number of bytes written, so bytes after the stream cannot be refused: the "
                  "final load takes the stream and ignores them", f"{CMDS}:345"),
    ),
)
