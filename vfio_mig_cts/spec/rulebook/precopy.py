"""Rules of the PRE_COPY and data-stream suites: precopy info, end of stream, fd lifecycle, data size,
stream integrity. Much of the precopy section says *should*: the forces below are the text's own.
"""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule

H = "include/uapi/linux/vfio.h"
MTTY = "samples/vfio-mdev/mtty.c"
M, SH, CV = Force.MUST, Force.SHOULD, Force.CONVENTION
PC, EOS, FD, SZ, IN = (Family.PRECOPY, Family.END_OF_STREAM, Family.FD_LIFECYCLE, Family.DATA_SIZE,
                       Family.INTEGRITY)

RULES_PART: tuple[Rule, ...] = (
    # --- VFIO_MIG_GET_PRECOPY_INFO ---
    Rule("PRECOPY.EINVAL_OUTSIDE", PC, SH, f"{H}:1233",
         "This ioctl is valid only in PRE_COPY states and kernel driver should return -EINVAL from any other "
         "migration state.",
         "GET_PRECOPY_INFO outside PRE_COPY/PRE_COPY_P2P gives EINVAL (also on the same fd after STOP_COPY)"),
    Rule("PRECOPY.INITIAL_BYTES", PC, SH, f"{H}:1242",
         "This field should have a non-zero initial value and decrease as migration data is read from the "
         "device.",
         "initial_bytes is non-zero on entering PRE_COPY and never grows as data is read"),
    Rule("PRECOPY.INITIAL_REACHES_ZERO", PC, CV, f"{H}:1244",
         "It is recommended to leave PRE_COPY for STOP_COPY only after this field reaches zero.",
         "initial_bytes reaches zero once the initial data has been read (QEMU's switchover-ack waits for it)"),
    Rule("PRECOPY.DIRTY_STARTS_ZERO", PC, SH, f"{H}:1248",
         "This field starts at zero and may increase as the internal device state is modified or decrease as "
         "that modified state is read from the device.",
         "dirty_bytes is zero in the first GET_PRECOPY_INFO after entering PRE_COPY, with nothing in between "
         "(a statement about counters the header calls estimates, vfio.h:1236-1237, with \"a lot of "
         "flexibility\" in how drivers report them, vfio.h:1258-1259: a should)"),
    Rule("PRECOPY.RETURNED", PC, M, f"{H}:1236",
         "The vfio_precopy_info data structure returned by this ioctl provides estimates of data available "
         "from the device during the PRE_COPY states.",
         "the counters are the driver's, not what the caller's buffer held (flags excepted until the "
         "MIG_PRECOPY_INFOv2 opt-in)"),
    Rule("PRECOPY.ARGSZ", PC, CV, f"{MTTY}:850",
         "if (info.argsz < minsz)",
         "an argsz below sizeof(struct vfio_precopy_info) gives EINVAL (every upstream driver checks it)"),
    Rule("PRECOPY.MANDATORY", PC, M, f"{H}:1271",
         "Support for this ioctl is mandatory if a driver claims to support VFIO_MIGRATION_PRE_COPY.",
         "GET_PRECOPY_INFO works in PRE_COPY on a device that advertises PRE_COPY"),
    # --- end of stream ---
    Rule("EOS.PRECOPY_ENOMSG", EOS, SH, f"{H}:1264",
         "When read() is done on this temporary end of stream the kernel driver should return ENOMSG from "
         "read().",
         "at PRE_COPY's temporary end of stream read() fails with ENOMSG, not 0"),
    Rule("EOS.PRECOPY_NOT_EARLY", EOS, SH, f"{H}:1261",
         "During pre-copy the migration data FD has a temporary \"end of stream\" that is reached when both "
         "initial_bytes and dirty_byte are zero.",
         "while the counters say data remains, read() returns data, not an end of stream: judged only after "
         "waiting (bounded) with poll() and reading again, and re-reading the counters (they are estimates, "
         "vfio.h:1236-1237; mlx5 counts a save it has only started); the sentence has no modal verb: a should"),
    Rule("EOS.PRECOPY_POLL", EOS, SH, f"{H}:1265",
         "Userspace can wait for more data (which may never come) by using poll.",
         "at PRE_COPY's temporary end of stream poll() does not report the fd ready while read() has nothing "
         "to give (else userspace cannot wait with it), and reports POLLIN once data the counters announce is "
         "there; \"can\" lays no must on the driver: a should (mtty and qat have no .poll: the default mask "
         "reports readable at once)"),
    Rule("EOS.STOPCOPY_ZERO", EOS, M, f"{H}:1268",
         "Once in STOP_COPY the migration data FD has a permanent end of stream signaled in the usual way by "
         "read() always returning 0 and poll always returning readable.",
         "in STOP_COPY, once the data is read, read() returns 0 and keeps returning 0"),
    Rule("EOS.STOPCOPY_POLL", EOS, M, f"{H}:1268",
         "Once in STOP_COPY the migration data FD has a permanent end of stream signaled in the usual way by "
         "read() always returning 0 and poll always returning readable.",
         "in STOP_COPY at the end of stream poll() reports POLLIN"),
    Rule("EOS.STOPCOPY_NO_ENOMSG", EOS, M, f"{H}:1270",
         "ENOMSG may not be returned in STOP_COPY.",
         "read() never fails with ENOMSG in STOP_COPY"),
    # --- data_fd lifecycle ---
    Rule("FD.SAVING_GROUP", FD, M, f"{H}:1124",
         "Moving between these states alters what is streamed in session, but does not terminate or otherwise "
         "affect the associated fd.",
         "PRE_COPY <-> PRE_COPY_P2P -> STOP_COPY keep one fd, which goes on streaming to a complete stream"),
    Rule("FD.ENDED", FD, M, f"{H}:1087",
         "The STOP_COPY arc will terminate a data transfer session.",
         "after its session ended (STOP_COPY -> STOP, PRE_COPY -> RUNNING, PRE_COPY_P2P -> RUNNING_P2P, "
         "RESUMING -> STOP), and after a new session replaced it, an old fd is at end of stream or error for "
         "every operation: read() gives no bytes, poll() reports an event, GET_PRECOPY_INFO fails or reports "
         "no data, write() on a resuming fd takes nothing"),
    Rule("FD.DIRECTION", FD, CV, f"{MTTY}:989",
         "migf, O_RDONLY);",
         "a saving fd cannot be written and a resuming fd cannot be read: EBADF (anon_inode_getfile with "
         "O_RDONLY / O_WRONLY in every upstream driver)"),
    Rule("FD.NO_SEEK", FD, CV, f"{MTTY}:997",
         "stream_open(migf->filp->f_inode, migf->filp);",
         "data fds are streams: lseek, pread and pwrite give ESPIPE (stream_open() in every upstream driver)"),
    # --- MIG_DATA_SIZE ---
    Rule("SIZE.ANY_STATE", SZ, M, f"{H}:1431",
         "Note: Can be called on each device state.",
         "GET MIG_DATA_SIZE succeeds in every reachable state"),
    Rule("SIZE.ESTIMATE", SZ, CV, f"{H}:1428",
         "Upon VFIO_DEVICE_FEATURE_GET read back the estimated data length that will be required to complete "
         "stop copy.",
         "the estimate is non-zero where STOP_COPY then produces data (every upstream driver reports its state "
         "size: mtty_data_size(), hisi_acc sizeof(struct acc_vf_data), pds 64 KiB, qat state_size, mlx5 a device "
         "query); the header bounds an estimate nowhere, so its distance from the stream is information only"),
    # --- stream integrity ---
    Rule("STREAM.READ_CHUNKING", IN, M, f"{H}:1148",
         "End of stream on the FD indicates the entire device state has been transferred.",
         "a session's stream read in small pieces (1 or 7 bytes, or sizes mixed) carries the entire device "
         "state as one read in 1 MiB pieces does: it loads on a compatible device and restores the source's "
         "state (where a device profile compares them); each session judged on its own, never by comparing "
         "two sessions' bytes (no driver promises to save the same bytes twice)"),
    Rule("STREAM.WRITE_SPLIT", IN, M, f"{H}:1041",
         "The user is not required to preserve buffer segmentation when writing the data stream during the "
         "RESUMING operation.",
         "a resume accepts the same stream written in any split"),
    Rule("STREAM.ROUND_TRIP", IN, M, f"{H}:1148",
         "End of stream on the FD indicates the entire device state has been transferred.",
         "a complete stream (read to its end) resumed on a compatible device restores the source's state "
         "(where a device profile compares them): a migration that corrupts the device state breaks the "
         "strongest text that covers it, this statement of the FSM comment (read as must, as FD.SAVING_GROUP "
         "and FD.ENDED read theirs), not the should of vfio.h:1092 (RESUME.FINAL_CHECK's)"),
)
