"""qat_vfio_pci (drivers/vfio/pci/qat/main.c, Linux 6.12) as a personality, with the QAT PF side it calls
(drivers/crypto/intel/qat/qat_common/adf_gen4_vf_mig.c, adf_mstate_mgr.c).

What it does, with its source lines (``main.c`` unless named; ``gen4`` is adf_gen4_vf_mig.c, ``mstate``
adf_mstate_mgr.c):

- MIGRATION: STOP_COPY | P2P | PRE_COPY (571-572); no DMA logging; MIG_DATA_SIZE is the device's state
  buffer size, 4096, in every state (533-544, gen4:19).
- One 4096-byte buffer per device (``mdev->state``, gen4:25-39) holds what is saved and what is resumed:
  a "setup" part (a preamble, a CONFIG section: the VF's capabilities and service map, gen4:925-953) and
  a "state" part after it (a preamble, sections with the VF's registers, gen4:821-871); each preamble
  is checked for magic, version and length and each section for its bounds (mstate:78-93, 225-283).
- PRE_COPY streams the setup part (238-249); initial_bytes = setup_size - pos, dirty_bytes 0, in PRE_COPY
  and PRE_COPY_P2P (116-164); at the end read() returns 0 (190-199); no poll method. PRE_COPY_P2P ->
  STOP_COPY saves the state part and the stream becomes the whole buffer (456-465, 225-236). The setup
  part is saved once per reset or open (gen4:936-937).
- Resuming writes into that same buffer: a write that would end past 4096 is ENOMEM (313-316); after
  each write the setup part is loaded once it is complete (331-339, gen4:955-999): a bad preamble or
  section is EINVAL, and so is a CONFIG that does not match this VF, but ``remote_setup_size`` is set
  before that comparison (gen4:989), so the next writes and the final load skip the setup. The final
  load (467-474, gen4:873-923) checks the state part's preamble and sections and loads the registers.
  Nothing clears the buffer between sessions: bytes a stream does not write are those of the last save
  or resume of the device.
- Reset (reset_done, 481-486) and open (58-80) forget setup_size and remote_setup_size (gen4:47-51, 71-72);
  reset and close (106-114) end the sessions. A reset is an FLR: the registers return to their reset
  values; the buffer keeps its bytes.
"""

from __future__ import annotations

import errno
import struct

from vfio_mig_cts.backends.mock import resuming
from vfio_mig_cts.backends.mock.driver import MockConfig, MockDriver, ResumingFile, SavingFile
from vfio_mig_cts.backends.mock.personalities.base import Capability, Deviation, Personality
from vfio_mig_cts.backends.mock.personalities.files import (
    BufferResumeFile,
    BufferSaveFile,
    Overflow,
    PrecopyIoctl,
    err,
)
from vfio_mig_cts.uapi.vfio import MigFlag, State

R = "suites/test_resume.py::test_invalid_stream_refused"
SRC = "drivers/vfio/pci/qat/main.c"
GEN4 = "drivers/crypto/intel/qat/qat_common/adf_gen4_vf_mig.c"
STATE_SIZE = 4096  # ADF_GEN4_VF_MSTATE_SIZE
PREH = struct.Struct("<IIHHI")  # struct adf_mstate_preh: magic, version, preh_len, n_sects, size
SECT = struct.Struct("<8sII")  # struct adf_mstate_sect_h: id[8], size, sub_sects
MAGIC, VERSION = 0xADF5CAEA, 1
CONFIG, GENERIC = b"CONFIG", b"GENER"
PRECOPY_STATES = frozenset({State.PRE_COPY, State.PRE_COPY_P2P})  # main.c:138-142
EAGAIN = -1  # load_setup's "not enough bytes yet": not an error for write()


def section(sid: bytes, payload: bytes) -> bytes:
    return SECT.pack(sid, len(payload), 0) + payload


def part(*sections: bytes) -> bytes:
    """A preamble and its sections (adf_mstate_preamble_add/_update, mstate:95-118)."""
    body = b"".join(sections)
    return PREH.pack(MAGIC, VERSION, PREH.size, len(sections), len(body)) + body


def parse(buf: bytes | bytearray, size: int) -> dict[bytes, bytes] | None:
    """adf_mstate_mgr_init_from_remote() over ``buf[:size]``: the sections by id, None if the preamble is
    bad (mstate:78-93) or a section runs past the end (mstate:225-250)."""
    if size < PREH.size:
        return None
    magic, version, preh_len, n_sects, _ = PREH.unpack_from(buf)
    if magic != MAGIC or version > VERSION or preh_len > size:
        return None
    pos, found = preh_len, {}
    for _ in range(n_sects):
        if pos + SECT.size > size:
            return None
        sid, length, _subs = SECT.unpack_from(buf, pos)
        start = pos + SECT.size
        if start + length > size:
            return None
        found[sid.rstrip(b"\0")] = bytes(buf[start:start + length])
        pos = start + length
    return found


class QatDriver(MockDriver):
    """qat's migration: ``memory`` is the VF's registers, ``identity`` its service map."""

    def __init__(self, cfg: MockConfig) -> None:
        super().__init__(cfg)
        self.buffer = bytearray(STATE_SIZE)  # mdev->state
        self.setup_size = 0
        self.remote_setup_size = 0

    def stop_copy_length(self) -> int:
        return STATE_SIZE  # qat_vf_pci_get_data_size(), 533-544

    def _config(self) -> bytes:
        return section(CONFIG, self.cfg.identity.to_bytes(8, "little"))

    # --- saving ---------------------------------------------------------------------------------------
    def _save_setup(self) -> None:
        """adf_gen4_vfmig_save_setup() (gen4:925-953): once until the next reset or open."""
        if self.setup_size:
            return
        self.buffer[:] = bytes(STATE_SIZE)
        setup = part(self._config())
        self.buffer[:len(setup)] = setup
        self.setup_size = len(setup)

    def _save_state(self, f: BufferSaveFile) -> None:
        """adf_gen4_vfmig_save_state() (gen4:821-871): the state part after the setup; the whole buffer."""
        self._save_setup()
        state = part(section(GENERIC, bytes(self.memory)))
        self.buffer[self.setup_size:] = state + bytes(STATE_SIZE - self.setup_size - len(state))
        f.filled = STATE_SIZE

    def _new_save(self, precopy: bool) -> SavingFile:
        f = BufferSaveFile(self.q, lambda: self.buffer, 0, PrecopyIoctl(PRECOPY_STATES, lambda: self.state),
                           on_stop_copy=self._save_state, initial_end=lambda f: self.setup_size)
        if precopy:
            self._save_setup()
            f.filled = self.setup_size  # qat_vf_save_setup(), 238-249
        else:
            self._save_state(f)
        return f

    # --- resuming -------------------------------------------------------------------------------------
    def _new_resume(self) -> ResumingFile:
        return BufferResumeFile(self.q, self.buffer, STATE_SIZE, Overflow.ENOMEM,
                                check=lambda f, taken: max(0, self._load_setup(f.filled)))

    def _load_setup(self, length: int) -> int:
        """adf_gen4_vfmig_load_setup() (gen4:955-999): 0, EAGAIN (-1) or an errno."""
        if self.remote_setup_size:
            return 0
        if length < PREH.size:
            return EAGAIN
        _, _, preh_len, _, size = PREH.unpack_from(self.buffer)
        setup = preh_len + size
        if setup > STATE_SIZE:
            return errno.EINVAL
        if length < setup:
            return EAGAIN
        sections = parse(self.buffer, setup)
        if sections is None:
            return errno.EINVAL
        self.remote_setup_size = setup  # gen4:989, before the configuration is compared
        if sections.get(CONFIG) != self._config()[SECT.size:]:
            return errno.EINVAL  # adf_gen4_vfmig_load_config(): capmask_equal, gen4:532-572
        return 0

    def _load(self) -> None:
        """qat_vf_load_device_data() -> adf_gen4_vfmig_load_state() (gen4:873-923)."""
        resuming.resume_file(self)
        code = self._load_setup(STATE_SIZE)
        if code:
            raise err(errno.EINVAL if code == EAGAIN else code)
        sections = parse(self.buffer[self.remote_setup_size:], STATE_SIZE - self.remote_setup_size)
        regs = sections.get(GENERIC) if sections is not None else None
        if regs is None or len(regs) != len(self.memory):
            raise err(errno.EINVAL)  # "Invalid state", a missing section or a size that does not fit
        self.memory[:] = regs

    # --- reset and open -------------------------------------------------------------------------------
    def _reset_device(self) -> None:
        """qat_vf_reset_done() -> qat_vfmig_reset() (481-486, gen4:47-51); the FLR resets the registers."""
        super()._reset_device()
        self.setup_size = self.remote_setup_size = 0

    def opened(self) -> None:
        """qat_vf_pci_open_device() -> qat_vfmig_open() (58-80, gen4:53-75)."""
        self.setup_size = self.remote_setup_size = 0


QAT = Personality(
    name="qat",
    driver="qat_vfio_pci",
    flags=int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY),
    summary="Intel QAT GEN4 VFs (drivers/vfio/pci/qat/main.c)",
    driver_class=QatDriver,
    state_size=256,
    incompatible_state_size=256,  # a VF with another service map: the same layout
    dma_logging=False,
    capabilities=frozenset({Capability.PROFILE}),
    deviations=(
        Deviation("EOS.PRECOPY_POLL", ("suites/test_precopy.py::test_poll_at_temporary_end[*]",),
                  "qat_vf_save_fops has no poll method, so poll() answers the VFS default mask "
                  "(readable) at PRE_COPY's temporary end of stream, where read() returns 0: userspace cannot wait "
                  "for more data with it",
                  f"{SRC}:217"),
        Deviation("EOS.PRECOPY_ENOMSG", ("suites/test_precopy.py::test_initial_bytes_drain[*]",
                                         "suites/test_stateful.py::test_random_sequences[*]"),
                  "qat_vf_save_read() returns 0, not -ENOMSG, once PRE_COPY's setup data is read: len is clamped "
                  "to filled_size - pos = 0 and done stays 0", f"{SRC}:190"),
        Deviation("RESUME.FINAL_LOAD", ("suites/test_resume.py::test_invalid_stream_refused[*-incompatible-*]",),
                  "adf_gen4_vfmig_load_setup() sets remote_setup_size before it compares the CONFIG section with "
                  "the VF's, so after the write that failed with -EINVAL the setup counts as loaded: the final "
                  "load skips it and loads the incompatible device's state part", f"{GEN4}:989"),
        Deviation("RESUME.FINAL_CHECK", ("suites/test_resume.py::test_invalid_stream_refused[*-cut-in-middle-*]",
                                        "suites/test_resume.py::test_invalid_stream_refused[*-one-byte-short-*]",
                                        "suites/test_resume.py::test_invalid_stream_refused[*-empty-*]",
                                        "suites/test_resume.py::test_invalid_stream_refused[*-cut-at-precopy-end-*]",
                                        "suites/test_resume.py::test_second_session[*]"),
                  "qat_vf_resume_write() writes into the device's one state buffer, which the last save or resume "
                  "filled, and the final load (adf_gen4_vfmig_load_state()) checks that buffer, never how many "
                  "bytes this session wrote: a short or empty stream resumed on the device that saved it loads "
                  "the rest from the earlier copy", f"{SRC}:323"),
        Deviation("RESUME.FINAL_CHECK", (f"{R}[*-incompatible-*-session*]", f"{R}[*-header-damaged-*-session*]"),
                  "adf_gen4_vfmig_load_setup() returns at once while remote_setup_size is set, and only a reset or "
                  "an open clears it: after one load, later sessions' setup part (a foreign CONFIG, a damaged "
                  "preamble) is never checked, and the final load takes their state part", f"{GEN4}:967"),
    ),
)
