"""Fault catalogue entries that answer mutation-testing survivors (mutation/results.md, docs/mutation.md).

Each entry's quirk reproduces what a surviving mutant of the reference mock did; its kills name the
sharper test in suites/test_sharpened.py that now catches it.
"""

from __future__ import annotations

from vfio_mig_cts.faults.entry import Fault

SHARP = "suites/test_sharpened.py::"

FAULTS_PART: tuple[Fault, ...] = (
    Fault("reply-tail-shifted", "FEAT.COPY_BACK",
          "MIG_DEVICE_STATE / MIG_DATA_SIZE replies write the caller's bytes past the structure one byte late "
          "(mutants backend.NumberReplacer.19, .26, .27, .31, .34, .35)",
          {"reply_tail_shifted": True},
          (f"{SHARP}test_get_copies_back_its_struct_only[*-MIG_DEVICE_STATE]",
           f"{SHARP}test_get_copies_back_its_struct_only[*-MIG_DATA_SIZE]",
           f"{SHARP}test_set_without_session_reply[*]")),
    Fault("set-reply-fd-not-minus-one", "ARC.DATA_FD",
          "a SET that starts no session writes data_fd -2 instead of -1 (mutant backend.NumberReplacer.28)",
          {"set_reply_fd_not_minus_one": True}, (f"{SHARP}test_set_without_session_reply[*]",)),
    Fault("drift-armed-at-open", "ARC.NO_ASYNC",
          "the first GET after open moves the device to RUNNING by itself (mutant driver.ReplaceFalseWithTrue.1)",
          {"drift_armed_at_open": True}, (f"{SHARP}test_first_calls_on_a_fresh_device[*]",)),
    Fault("reply-overruns-buffer", "FEAT.COPY_BACK",
          "GET MIG_DEVICE_STATE with an 8-byte buffer writes a ninth byte (mutant backend.NumberReplacer.20)",
          {"reply_overruns_buffer": True}, (f"{SHARP}test_get_copies_back_its_struct_only[*-MIG_DEVICE_STATE]",)),
)
