"""Device locks, worker preference and quarantine records."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.vfio import locking
from vfio_mig_cts.backends.vfio.locking import DeviceLock, Quarantine, acquire, preference, worker_index

DEVS = ["0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3"]


def test_two_lockers_exclude_each_other(tmp_path: Path) -> None:
    a, b = DeviceLock(tmp_path, DEVS[0]), DeviceLock(tmp_path, DEVS[0])
    assert a.try_acquire("first")
    assert not b.try_acquire("second")
    assert "first" in b.holder()
    a.release()
    assert b.try_acquire("second")
    b.release()
    assert (tmp_path / "0000_3b_00.1.lock").exists()


def test_different_devices_do_not_conflict(tmp_path: Path) -> None:
    a, b = DeviceLock(tmp_path, DEVS[0]), DeviceLock(tmp_path, DEVS[1])
    assert a.try_acquire() and b.try_acquire()
    a.release()
    b.release()


@pytest.mark.parametrize(("env", "index"), [({}, 0), ({"PYTEST_XDIST_WORKER": "gw0"}, 0),
                                            ({"PYTEST_XDIST_WORKER": "gw5"}, 5), ({"PYTEST_XDIST_WORKER": "x"}, 0)])
def test_worker_index(env: dict[str, str], index: int) -> None:
    assert worker_index(env) == index


def test_preference_starts_at_k_mod_n() -> None:
    assert preference(DEVS, 0) == DEVS
    assert preference(DEVS, 4) == [DEVS[1], DEVS[2], DEVS[0]]
    assert preference([], 3) == []


def test_acquire_takes_the_workers_own_device_then_the_next_free(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, "run1")
    gw1 = acquire(DEVS, 1, tmp_path, q, grace=0)
    assert gw1.device == DEVS[1]
    replaced = acquire(DEVS, 1, tmp_path, q, grace=0)  # a second worker wanting the same one
    assert replaced.device == DEVS[2]
    third = acquire(DEVS, 1, tmp_path, q, grace=0)
    assert third.device == DEVS[0]
    start = time.monotonic()
    with pytest.raises(BackendError, match="no free device") as info:
        acquire(DEVS, 1, tmp_path, q, grace=0.3, poll=0.05)
    assert time.monotonic() - start >= 0.3
    assert "busy" in str(info.value) and "\n" not in str(info.value)
    for lock in (gw1, replaced, third):
        lock.release()


def test_acquire_waits_for_a_briefly_held_device(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, "run1")
    probe = DeviceLock(tmp_path, DEVS[0])
    assert probe.try_acquire("probing")
    import threading
    threading.Timer(0.2, probe.release).start()
    lock = acquire(DEVS[:1], 0, tmp_path, q, grace=3, poll=0.05)
    assert lock.device == DEVS[0]
    lock.release()


def test_quarantine_is_honoured_within_the_run_only(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, "run1")
    assert q.reason(DEVS[0]) is None
    q.add(DEVS[0], "VFIO_DEVICE_RESET hung")
    assert q.reason(DEVS[0]) == "VFIO_DEVICE_RESET hung"
    assert Quarantine(tmp_path, "run1").reason(DEVS[0]) == "VFIO_DEVICE_RESET hung"  # a replaced worker
    assert Quarantine(tmp_path, "run2").reason(DEVS[0]) is None  # the next run checks it again


def test_acquire_passes_over_quarantined_devices(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, "run1")
    q.add(DEVS[0], "health check failed")
    lock = acquire(DEVS, 0, tmp_path, q, grace=0)
    assert lock.device == DEVS[1]
    lock.release()
    for d in DEVS:
        q.add(d, "bad")
    start = time.monotonic()
    with pytest.raises(BackendError, match="quarantined"):
        acquire(DEVS, 0, tmp_path, q, grace=10)
    assert time.monotonic() - start < 1  # nothing to wait for


def test_lock_dir_takes_the_first_usable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert locking.lock_dir((blocker / "locks", tmp_path / "locks")) == tmp_path / "locks"
    with pytest.raises(BackendError, match="no directory for device locks"):
        locking.lock_dir((blocker / "locks",))


def test_run_id_is_xdists_when_there_is_one() -> None:
    assert locking.run_id({"PYTEST_XDIST_TESTRUNUID": "abc"}) == "abc"
    assert locking.run_id({}) == locking.run_id({})
