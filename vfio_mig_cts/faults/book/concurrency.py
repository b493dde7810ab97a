"""Fault catalogue entries of the race suite (see vfio_mig_cts/faults/catalogue.py).

The knobs are in vfio_mig_cts/backends/mock/quirks.py ("dma logging / concurrency (issue 8)"): the mock's reset,
SET loop, reads, poll and second open bend them (vfio_mig_cts/backends/mock/driver.py, streams.py, backend.py).
"""

from __future__ import annotations

from vfio_mig_cts.faults.entry import Fault

RACE = "suites/test_races.py::"

FAULTS_PART: tuple[Fault, ...] = (
    Fault("race-reset-torn", "CONC.RESET_RACE",
          "a reset arriving while a SET walks its path stops the walk where it is and never sets RUNNING "
          "(a deferred reset handled half-way)",
          {"reset_race_torn": True},
          (f"{RACE}test_reset_races_state_change[stop_copy]", f"{RACE}test_reset_races_state_change[p2p]",
           f"{RACE}test_reset_races_state_change[p2p+pre_copy]")),
    Fault("race-reset-keeps-session", "CONC.DEAD_SESSION",
          "a reset deferred behind a SET sets RUNNING but leaves the session's fd working (mtty's deferred "
          "reset without mtty_disable_files())",
          {"reset_race_keeps_session": True}, (f"{RACE}test_reset_races_state_change[*]",)),
    Fault("race-reset-stalls", "CONC.NO_DEADLOCK",
          "a reset that finds a SET in progress waits 2 s before taking the state lock (a lock inversion a "
          "timeout breaks)",
          {"reset_race_stall_ms": 2000}, (f"{RACE}test_reset_races_state_change[*]",)),
    Fault("race-shared-reads-unlocked", "CONC.SHARED_READS",
          "read() on a saving fd does not hold the file's mutex: two readers get the same bytes and lose others",
          {"shared_reads_unlocked": True}, (f"{RACE}test_two_readers_one_fd[*]",)),
    Fault("race-poll-misses-wakeup", "CONC.POLL_WAKE",
          "poll() that is not ready when called sleeps its whole timeout: a state change does not wake it",
          {"poll_misses_wakeup": True}, (f"{RACE}test_poll_wakes_on_state_change[*pre_copy]",)),
    Fault("race-second-open-reinits", "CONC.SECOND_OPEN",
          "a second open of the device runs open_device again (RUNNING) and its close runs close_device "
          "(the first user's session ends)",
          {"second_open_reinits": True}, (f"{RACE}test_second_open_while_in_use[*]",)),
)
