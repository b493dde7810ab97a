"""Fault catalogue entries for the resume, reset and close/reopen suites (see vfio_mig_cts/faults/catalogue.py).

The knobs are in vfio_mig_cts/backends/mock/quirks.py ("resume (issue 5)"); the final load, reset and
close/open they bend are in vfio_mig_cts/backends/mock/resuming.py.
"""

from __future__ import annotations

from vfio_mig_cts.faults.entry import Fault

RES = "suites/test_resume.py::"
INV = f"{RES}test_invalid_stream_refused"
RST = "suites/test_reset.py::test_reset_from"
ROP = "suites/test_reopen.py::test_reopen_device"

FAULTS_PART: tuple[Fault, ...] = (
    # --- the final load ---
    Fault("refused-header-still-loads", "RESUME.FINAL_LOAD",
          "mtty 6.12's header hole: write() refuses a bad header (EFAULT) but keeps its bytes, and the final "
          "load checks only the size, so the damaged stream loads",
          {"header_hole": True},
          (f"{INV}[*-saved_stop_copy-header-damaged-to-STOP]", f"{INV}[*-saved_pre_copy-header-damaged-to-STOP]",
           f"{INV}[*-header-damaged-to-STOP-session2]", f"{INV}[*-header-damaged-to-RUNNING]")),
    Fault("accepts-truncated-stream", "RESUME.FINAL_CHECK",
          "the final load takes a stream that stops early (after its header) and applies its complete records",
          {"load_accepts_truncated": True},
          (f"{INV}[*-cut-in-middle-to-STOP]", f"{INV}[*-one-byte-short-to-STOP]",
           f"{INV}[*-cut-at-precopy-end-to-STOP]", f"{INV}[*-cut-in-middle-to-RUNNING]")),
    Fault("accepts-empty-stream", "RESUME.FINAL_LOAD",
          "leaving RESUMING with nothing written succeeds (the device keeps its state)",
          {"load_accepts_empty": True},
          (f"{INV}[*-empty-to-STOP]", f"{INV}[*-saved_stop_copy-header-damaged-to-STOP]",
           f"{INV}[*-saved_stop_copy-incompatible-to-STOP]")),
    Fault("load-checks-header-only", "RESUME.FINAL_CHECK",
          "the final load checks the stream's header and nothing after it",
          {"load_checks_header_only": True},
          (f"{INV}[*-cut-in-middle-to-STOP]", f"{INV}[*-bytes-appended-to-STOP]",
           f"{INV}[*-second-copy-appended-to-STOP]", f"{INV}[*-second-copy-appended-to-RUNNING]")),
    Fault("accepts-trailing-bytes", "RESUME.FINAL_CHECK",
          "bytes written after the end of the stream are taken and ignored",
          {"load_ignores_trailing": True},
          (f"{INV}[*-bytes-appended-to-STOP]", f"{INV}[*-bytes-appended-careless-to-STOP]",
           f"{INV}[*-second-copy-appended-to-STOP]")),
    Fault("validates-first-load-only", "RESUME.FINAL_CHECK",
          "after one successful load, later resume sessions of the same open are not checked",
          {"load_validates_once": True},
          (f"{RES}test_second_session[*]", f"{INV}[*-cut-in-middle-to-STOP-session2]",
           f"{INV}[*-one-byte-short-to-STOP-session3]")),
    Fault("second-load-fails", "RESUME.COMPATIBLE",
          "a second resume without a reset in between fails (the loader is re-armed only by reset)",
          {"second_load_fails": True},
          (f"{RES}test_second_session[*]",)),
    Fault("resume-write-takes-nothing", "RESUME.COMPATIBLE",
          "a resuming write() past the header returns 0: it takes nothing and reports no error (a writer that "
          "asks again for ever would hang: a finding instead)",
          {"write_takes_nothing": True},
          (f"{RES}test_compatible_resume[*]", "suites/test_streams.py::test_resume_accepts_any_split[*]",
           "suites/test_streams.py::test_qemu_sequence[*]")),
    Fault("rejects-resent-chunks", "RESUME.COMPATIBLE",
          "a stream that carries a piece of state twice (PRE_COPY re-sending dirtied state) is refused",
          {"load_rejects_overlap": True},
          (f"{RES}test_compatible_resume[*-saved_pre_copy-to-STOP]",
           f"{RES}test_compatible_resume[*-saved_pre_copy-to-RUNNING]",
           f"{RES}test_compatible_resume_on_peer[*-saved_pre_copy-to-STOP]")),
    # --- reset ---
    Fault("reset-ignored-in-resuming", "RESET.ABORT_RESUMING",
          "VFIO_DEVICE_RESET does nothing in RESUMING: a RESUMING session cannot be aborted",
          {"reset_ignored_in_resuming": True},
          (f"{RST}[*-RESUMING]", f"{INV}[*-cut-in-middle-to-STOP]", f"{RES}test_second_session[*]",
           "suites/test_arcs.py::test_reset_returns_to_running[*]")),
    Fault("reset-keeps-fds", "RESET.DEAD_FDS",
          "VFIO_DEVICE_RESET leaves the open data fds working",
          {"reset_keeps_fds": True},
          (f"{RST}[*-STOP_COPY]", f"{RST}[*-RESUMING]", f"{RST}[*-PRE_COPY]", f"{RST}[*-ERROR]",
           f"{INV}[*-empty-to-STOP]")),
    # --- close and reopen ---
    Fault("close-keeps-fds", "REOPEN.DEAD_FDS",
          "closing the device leaves its data fds working",
          {"close_keeps_fds": True},
          (f"{ROP}[*-STOP_COPY-device]", f"{ROP}[*-RESUMING-device]", f"{ROP}[*-PRE_COPY_P2P-device]")),
    Fault("close-in-resuming-oops", "RESUME.FINAL_LOAD",
          "mtty 6.12.117: a close in RESUMING drops the resuming file but keeps the state; asked to leave "
          "RESUMING after the reopen, the driver dereferences it (oops; the ioctl never returns, so it does not "
          "fail as leaving RESUMING with no complete stream must)",
          {"close_drops_resuming_file": True},
          (f"{ROP}[*-RESUMING-data-fd+device]", f"{ROP}[*-RESUMING-device]")),
    Fault("reopen-saving-hangs", "REOPEN.USABLE",
          "a close in a saving state keeps the state (as mtty does) but not the session; asked to leave that "
          "state after the reopen, the driver never returns",
          {"reopen_saving_hangs": True},
          (f"{ROP}[*-STOP_COPY-device]", f"{ROP}[*-STOP_COPY-data-fd+device]", f"{ROP}[*-PRE_COPY-device]")),
)
