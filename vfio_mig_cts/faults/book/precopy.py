"""Fault catalogue entries for the PRE_COPY and data-stream suites (see vfio_mig_cts/faults/catalogue.py)."""

from __future__ import annotations

from vfio_mig_cts.faults.entry import Fault
from vfio_mig_cts.uapi.vfio import State

PRE = "suites/test_precopy.py::"
STR = "suites/test_streams.py::"

FAULTS_PART: tuple[Fault, ...] = (
    # --- precopy info ---
    Fault("precopy-info-in-any-state", "PRECOPY.EINVAL_OUTSIDE",
          "GET_PRECOPY_INFO answers in STOP_COPY instead of EINVAL",
          {"precopy_info_any_state": True}, (f"{PRE}test_precopy_info_outside_precopy[*pre_copy]",)),
    Fault("initial-bytes-zero", "PRECOPY.INITIAL_BYTES", "initial_bytes is 0 although initial data is there",
          {"initial_bytes_zero": True}, (f"{PRE}test_counters_on_entry[*]",)),
    Fault("initial-bytes-stuck", "PRECOPY.INITIAL_BYTES", "initial_bytes does not decrease as data is read",
          {"initial_bytes_stuck": True}, (f"{PRE}test_initial_bytes_drain[*]",),
          also=("EOS.PRECOPY_NOT_EARLY",)),
    Fault("initial-bytes-never-zero", "PRECOPY.INITIAL_REACHES_ZERO",
          "initial_bytes stops at 100 bytes however much is read",
          {"initial_bytes_floor": 100}, (f"{PRE}test_initial_bytes_drain[*]",),
          also=("EOS.PRECOPY_NOT_EARLY",)),
    Fault("dirty-bytes-start-nonzero", "PRECOPY.DIRTY_STARTS_ZERO", "dirty_bytes starts at 64",
          {"dirty_bytes_start": 64}, (f"{PRE}test_counters_on_entry[*]",),
          also=("EOS.PRECOPY_NOT_EARLY",)),
    Fault("precopy-echoes-counters", "PRECOPY.RETURNED",
          "the counters come back as the caller's buffer held them",
          {"precopy_echoes_counters": True}, (f"{PRE}test_counters_ignore_callers_buffer[*]",)),
    Fault("precopy-ignores-argsz", "PRECOPY.ARGSZ", "an argsz below 24 is accepted",
          {"precopy_ignores_argsz": True}, (f"{PRE}test_short_argsz[*]",)),
    Fault("precopy-ioctl-missing", "PRECOPY.MANDATORY",
          "a PRE_COPY driver without VFIO_MIG_GET_PRECOPY_INFO (ENOTTY)",
          {"precopy_ioctl_missing": True}, (f"{PRE}test_counters_on_entry[*]", f"{PRE}test_initial_bytes_drain[*]")),
    # --- end of stream ---
    Fault("precopy-end-returns-zero", "EOS.PRECOPY_ENOMSG",
          "read() returns 0 at PRE_COPY's temporary end of stream (what mtty 6.12 does)",
          {"precopy_eos_returns_zero": True}, (f"{PRE}test_initial_bytes_drain[*]",)),
    Fault("precopy-early-enomsg", "EOS.PRECOPY_NOT_EARLY",
          "ENOMSG after the first read while initial data remains",
          {"precopy_early_enomsg": True}, (f"{PRE}test_initial_bytes_drain[*]",),
          also=("PRECOPY.INITIAL_REACHES_ZERO",)),
    Fault("stopcopy-enomsg", "EOS.STOPCOPY_NO_ENOMSG", "ENOMSG at STOP_COPY's end instead of 0",
          {"stopcopy_enomsg": True}, (f"{STR}test_stopcopy_end_of_stream[*]", f"{STR}test_qemu_sequence[*]")),
    Fault("stopcopy-eof-once", "EOS.STOPCOPY_ZERO", "after the first 0, read() fails with EIO",
          {"stopcopy_eof_once": True}, (f"{STR}test_stopcopy_end_of_stream[*]",)),
    Fault("stopcopy-endless", "EOS.STOPCOPY_ZERO",
          "STOP_COPY's stream never ends: after the data, read() returns zeros for ever (bounded by MIG_DATA_SIZE "
          "x 4 + 64 MiB: a finding, not a hang)",
          {"stopcopy_endless": True}, (f"{STR}test_stopcopy_end_of_stream[*]", f"{STR}test_qemu_sequence[*]")),
    Fault("stopcopy-poll-silent", "EOS.STOPCOPY_POLL", "poll() reports nothing at STOP_COPY's end",
          {"stopcopy_poll_silent": True}, (f"{STR}test_stopcopy_end_of_stream[*]",)),
    # --- fd lifecycle ---
    Fault("saving-group-breaks-fd", "FD.SAVING_GROUP", "PRE_COPY -> PRE_COPY_P2P ends the session's fd",
          {"saving_group_breaks_fd": True},
          (f"{STR}test_saving_group_keeps_one_fd[p2p+pre_copy]", f"{STR}test_qemu_sequence[p2p+pre_copy]")),
    Fault("ended-fd-still-reads", "FD.ENDED", "an ended session's fd still yields bytes",
          {"ended_fd_still_reads": True},
          (f"{STR}test_ended_session_fd_yields_nothing[*-STOP_COPY->STOP]",
           f"{STR}test_ended_session_fd_yields_nothing[p2p+pre_copy-PRE_COPY_P2P->RUNNING_P2P]",
           f"{STR}test_precopy_is_optional[pre_copy]")),
    Fault("ended-fd-polls-silent", "FD.ENDED",
          "poll() on an ended saving fd reports no event: a user waiting on it for the end waits for ever",
          {"ended_fd_poll_silent": True},
          (f"{STR}test_ended_session_fd_yields_nothing[*-STOP_COPY->STOP]",
           f"{STR}test_ended_session_fd_yields_nothing[*pre_copy-PRE_COPY->RUNNING]",
           f"{STR}test_precopy_is_optional[*pre_copy]")),
    Fault("ended-fd-answers-precopy-info", "FD.ENDED",
          "GET_PRECOPY_INFO on an ended PRE_COPY fd answers with its stale counters once a new precopy is open",
          {"ended_fd_answers_info": True},
          (f"{STR}test_ended_session_fd_yields_nothing[pre_copy-PRE_COPY->RUNNING]",
           f"{STR}test_ended_session_fd_yields_nothing[p2p+pre_copy-PRE_COPY_P2P->RUNNING_P2P]")),
    Fault("ended-resume-fd-writes", "FD.ENDED",
          "the resuming fd still takes bytes after RESUMING -> STOP ended its session",
          {"ended_resume_fd_writes": True},
          (f"{STR}test_ended_session_fd_yields_nothing[*-RESUMING->STOP]",)),
    Fault("fds-bidirectional", "FD.DIRECTION", "a saving fd takes writes and a resuming fd reads",
          {"fds_bidirectional": True}, (f"{STR}test_fd_direction[*]",)),
    Fault("fds-seekable", "FD.NO_SEEK", "lseek/pread/pwrite work on data fds",
          {"fds_seekable": True}, (f"{STR}test_fd_not_seekable[*]",)),
    # --- MIG_DATA_SIZE ---
    Fault("data-size-fails-resuming", "SIZE.ANY_STATE", "MIG_DATA_SIZE fails with EINVAL in RESUMING",
          {"data_size_fails_in": int(State.RESUMING)}, (f"{STR}test_data_size_in_every_state[*]",)),
    Fault("data-size-zero", "SIZE.ESTIMATE", "MIG_DATA_SIZE reports 0",
          {"data_size_zero": True}, (f"{STR}test_data_size_estimate[*]",)),
    # --- integrity ---
    Fault("small-reads-garbled", "STREAM.READ_CHUNKING", "reads shorter than 16 bytes return garbled bytes",
          {"small_reads_garbled": True}, (f"{STR}test_read_sizes_do_not_change_the_stream[*]",),
          also=("RESUME.COMPATIBLE",)),  # test_round_trip's PRE_COPY route reads in 7-byte pieces too
    Fault("split-header-refused", "STREAM.WRITE_SPLIT", "a header split across write() calls is refused",
          {"split_header_refused": True}, (f"{STR}test_resume_accepts_any_split[*]",)),
    Fault("load-not-applied", "STREAM.ROUND_TRIP", "a load succeeds but the device state is not restored",
          {"load_not_applied": True}, (f"{STR}test_round_trip[*-stop_copy]", f"{STR}test_qemu_sequence[*]")),
)

