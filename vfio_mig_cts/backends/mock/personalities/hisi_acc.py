"""hisi_acc_vfio_pci (drivers/vfio/pci/hisilicon/hisi_acc_vfio_pci.c, Linux 6.12) as a personality.

What it does, with its source lines (``hisi_acc_vfio_pci.c`` unless named):

- MIGRATION: STOP_COPY | PRE_COPY, no P2P (1385: the platform cannot do P2P, 1172-1176); no DMA logging
  (no log_ops); MIG_DATA_SIZE is ``sizeof(struct acc_vf_data)`` in every state (1117-1123).
- The stream is ``struct acc_vf_data`` (hisi_acc_vfio_pci.h): the match data (magic, qp_num, dev_id,
  que_iso_cfg, ..., versions: ``QM_MATCH_SIZE`` = 40 bytes), the queue manager's registers, four DMA
  addresses. PRE_COPY streams the match data only (927-938); initial_bytes = total - pos, dirty_bytes 0,
  and the ioctl answers in PRE_COPY only (819); at the end read() returns 0 (870-881); no poll method.
  PRE_COPY -> STOP_COPY stops the VF and saves the registers into the same file (1010-1022, 538-587);
  STOP -> STOP_COPY opens a file with both (1031-1040).
- Resuming: a write that would end past the struct is ENOMEM (742-743); once 40 bytes are in, the match
  data is checked (magic and version, dev_id, qp_num, isolation: 379-431) and a mismatch fails that write
  with EFAULT after the bytes were counted (756-762). The check runs once per device: ``match_done`` is set
  on success and never cleared (389, 429), so later sessions of the device are not matched at all.
- The final load (699-713, 479-536) takes a stream of exactly 40 bytes as a VF that was not ready and
  loads nothing (488-489); fewer than the struct otherwise is EINVAL (491-492); null DMA addresses mark the
  VF not ready and load nothing (494-499); otherwise the registers are written. It does not look at
  whether the match check passed.
- Reset (the PCI reset_done handler, 1138-1148, 679-684) and close (1355-1364) end the sessions; reset
  goes to RUNNING. A reset is an FLR: the registers return to their reset values.

Not modelled: the VF being not ready when saved (546-552: the stream is then the match data alone), and
qm_dev_cmd_init()'s writes to the interrupt communication registers after a load or on STOP -> RUNNING
(316-323): status registers, not the state the model's digest stands for.
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
SRC = "drivers/vfio/pci/hisilicon/hisi_acc_vfio_pci.c"
# acc_magic, qp_num, dev_id, que_iso_cfg, qp_base, vf_qm_state, major_ver, minor_ver, qm_rsv_state[2]
MATCH = struct.Struct("<QIIIIIHHII")
QM_MATCH_SIZE = MATCH.size  # 40
REGS_SIZE = 104  # the RW registers, EQC/AEQC words, reserved words, padding
DMA = struct.Struct("<QQQQ")  # eqe_dma, aeqe_dma, sqc_dma, cqc_dma
ACC_VF_DATA = QM_MATCH_SIZE + REGS_SIZE + DMA.size  # sizeof(struct acc_vf_data): 176
ACC_DEV_MAGIC_V1, ACC_DEV_MAGIC_V2 = 0xCDCDCDCDFEEDAACC, 0xAACCFEEDDECADEDE
MAJOR, MINOR = 1, 0
QP_NUM, QP_BASE, ISO_CFG, QM_READY = 64, 0, 1, 0
DMA_ADDRESSES = (0x1000, 0x2000, 0x3000, 0x4000)  # the VF's queue memory, non-null while it runs


class HisiAccDriver(MockDriver):
    """hisi_acc's migration: ``memory`` is the queue manager's registers; ``identity`` its VF device id."""

    def __init__(self, cfg: MockConfig) -> None:
        super().__init__(cfg)
        self.match_done = False  # hisi_acc_vf_core_device.match_done: set once, never cleared

    def stop_copy_length(self) -> int:
        return ACC_VF_DATA  # hisi_acc_vfio_pci_get_data_size(), 1117-1123

    def _match_data(self) -> bytes:
        """vf_qm_get_match_data() (433-464)."""
        return MATCH.pack(ACC_DEV_MAGIC_V2, QP_NUM, self.cfg.identity & 0xFFFFFFFF, ISO_CFG, QP_BASE, QM_READY,
                          MAJOR, MINOR, 0, 0)

    def _new_save(self, precopy: bool) -> SavingFile:
        buf = bytearray(self._match_data()) + bytearray(REGS_SIZE + DMA.size)
        f = BufferSaveFile(self.q, lambda: buf, QM_MATCH_SIZE,
                           PrecopyIoctl(frozenset({State.PRE_COPY}), lambda: self.state),
                           on_stop_copy=lambda f: self._state_save(buf, f))
        if not precopy:
            self._state_save(buf, f)  # hisi_acc_vf_stop_copy(open=true), 940-963
        return f

    def _state_save(self, buf: bytearray, f: BufferSaveFile) -> None:
        """vf_qm_state_save() (538-587): the registers and DMA addresses; total_length = the struct."""
        buf[QM_MATCH_SIZE:] = bytes(self.memory) + DMA.pack(*DMA_ADDRESSES)
        f.filled = ACC_VF_DATA

    def _new_resume(self) -> ResumingFile:
        return BufferResumeFile(self.q, bytearray(ACC_VF_DATA), ACC_VF_DATA, Overflow.ENOMEM, check=self._check_match)

    def _check_match(self, f: BufferResumeFile, taken: int) -> int:
        """vf_qm_check_match() (379-431) as hisi_acc_vf_resume_write() calls it (760-762): EFAULT on a mismatch."""
        if f.filled < QM_MATCH_SIZE or self.match_done:
            return 0
        magic, qp_num, dev_id, iso, _base, _state, major, *_ = MATCH.unpack_from(f.buf)
        version_ok = magic == ACC_DEV_MAGIC_V1 or (magic == ACC_DEV_MAGIC_V2 and major == MAJOR)  # 353-377
        if not version_ok or dev_id != self.cfg.identity & 0xFFFFFFFF or qp_num != QP_NUM or iso != ISO_CFG:
            return errno.EFAULT
        self.match_done = True
        return 0

    def _load(self) -> None:
        """hisi_acc_vf_load_state() -> vf_qm_load_data() (479-536)."""
        f = resuming.resume_file(self)
        assert isinstance(f, BufferResumeFile)
        if f.filled == QM_MATCH_SIZE:
            return  # match data only: a VF that was not ready, nothing to load (488-489)
        if f.filled < ACC_VF_DATA:
            raise err(errno.EINVAL)
        if 0 in DMA.unpack_from(f.buf, QM_MATCH_SIZE + REGS_SIZE):
            return  # "resume dma addr is NULL!": marked not ready, nothing loaded (494-499)
        self.memory[:] = f.buf[QM_MATCH_SIZE:QM_MATCH_SIZE + REGS_SIZE]


HISI_ACC = Personality(
    name="hisi_acc",
    driver="hisi_acc_vfio_pci",
    flags=int(MigFlag.STOP_COPY | MigFlag.PRE_COPY),
    summary="HiSilicon SEC/HPRE/ZIP accelerator VFs (drivers/vfio/pci/hisilicon/hisi_acc_vfio_pci.c)",
    driver_class=HisiAccDriver,
    state_size=REGS_SIZE,
    incompatible_state_size=REGS_SIZE,  # another VF type: the same struct, another dev_id
    dma_logging=False,
    capabilities=frozenset({Capability.PROFILE}),
    deviations=(
        Deviation("EOS.PRECOPY_POLL", ("suites/test_precopy.py::test_poll_at_temporary_end[*]",),
                  "hisi_acc_vf_save_fops has no poll method, so poll() answers the VFS default mask "
                  "(readable) at PRE_COPY's temporary end of stream, where read() returns 0: userspace cannot wait "
                  "for more data with it",
                  f"{SRC}:887"),
        Deviation("EOS.PRECOPY_ENOMSG", ("suites/test_precopy.py::test_initial_bytes_drain[*]",
                                         "suites/test_stateful.py::test_random_sequences[*]"),
                  "hisi_acc_vf_save_read() returns 0, not -ENOMSG, once PRE_COPY's match data is read: len is "
                  "clamped to total_length - pos = 0 and done stays 0", f"{SRC}:870"),
        Deviation("RESUME.FINAL_LOAD", ("suites/test_resume.py::test_invalid_stream_refused[*-incompatible-*]",
                                        "suites/test_resume.py::test_invalid_stream_refused[*-header-damaged-*]"),
                  "hisi_acc_vf_resume_write() fails a write whose match data does not match (magic, dev_id, "
                  "qp_num, isolation) with -EFAULT but has already counted its bytes in total_length, and "
                  "vf_qm_load_data() never looks at the match result: leaving RESUMING loads the stream",
                  f"{SRC}:762"),
        Deviation("RESUME.FINAL_CHECK", ("suites/test_resume.py::test_invalid_stream_refused[*-cut-at-precopy-end-*]",),
                  "vf_qm_load_data() returns 0 for a stream of exactly QM_MATCH_SIZE bytes (what a VF that was "
                  "not ready saves, vf_qm_state_save():546-552) and loads nothing: the PRE_COPY part of a stream "
                  "loads as if it were complete", f"{SRC}:488"),
        Deviation("RESUME.FINAL_CHECK", (f"{R}[*-incompatible-*-session*]", f"{R}[*-header-damaged-*-session*]"),
                  "vf_qm_check_match() runs once per device: match_done, set by the first matching resume, is never "
                  "cleared, so a later session's write() takes foreign or damaged match data without a check, and "
                  "vf_qm_load_data() loads it", f"{SRC}:389"),
    ),
)
