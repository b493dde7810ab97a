"""The deadline helper and the device watchdog, with functions that sleep."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from vfio_mig_cts.backends.vfio.timeouts import DeviceLost, IoctlHang, Watchdog, run_with_timeout


def test_a_fast_call_returns_its_value() -> None:
    assert run_with_timeout(lambda: 42, 1.0, "fast") == 42


def test_a_sleeping_call_times_out_as_etimedout() -> None:
    start = time.monotonic()
    with pytest.raises(IoctlHang) as info:
        run_with_timeout(lambda: time.sleep(2), 0.1, "VFIO_DEVICE_RESET")
    assert time.monotonic() - start < 1.0
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ETIMEDOUT
    assert info.value.call == "VFIO_DEVICE_RESET"
    assert "VFIO_DEVICE_RESET" in str(info.value) and "abandoned" in str(info.value)


def test_an_exception_propagates_with_its_errno() -> None:
    def fail() -> None:
        raise OSError(errno.EINVAL, "Invalid argument")
    with pytest.raises(OSError) as info:
        run_with_timeout(fail, 1.0, "fail")
    assert info.value.errno == errno.EINVAL
    assert not isinstance(info.value, IoctlHang)
    with pytest.raises(ValueError, match="boom"):
        run_with_timeout(lambda: int("boom"), 1.0, "bad")


def test_a_late_result_is_handed_to_on_late() -> None:
    got: list[int] = []
    done = threading.Event()

    def late(v: int) -> None:
        got.append(v)
        done.set()

    def slow() -> int:
        time.sleep(0.3)
        return 7

    with pytest.raises(IoctlHang):
        run_with_timeout(slow, 0.05, "slow", on_late=late)
    assert done.wait(2.0)
    assert got == [7]


def test_on_late_is_not_called_for_a_call_in_time() -> None:
    called: list[int] = []
    assert run_with_timeout(lambda: 1, 1.0, "x", on_late=called.append) == 1
    assert called == []


def test_no_deadline_runs_in_the_callers_thread() -> None:
    assert run_with_timeout(threading.get_ident, 0, "inline") == threading.get_ident()
    assert run_with_timeout(threading.get_ident, 1.0, "thread") != threading.get_ident()


def test_watchdog_loses_the_device_on_the_first_hang() -> None:
    reasons: list[str] = []
    dog = Watchdog(0.05, "0000:3b:00.1", on_lost=reasons.append)
    assert dog.call("GET", lambda: "ok") == "ok"
    with pytest.raises(IoctlHang):
        dog.call("VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE", lambda: time.sleep(1))
    assert dog.lost is not None and "hung" in dog.lost
    assert reasons == [dog.lost]
    start = time.monotonic()
    with pytest.raises(DeviceLost, match=r"device lost: VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE on 0000:3b:00.1 hung"):
        dog.call("GET", lambda: "never sent")
    assert time.monotonic() - start < 0.05
    assert not issubclass(DeviceLost, OSError)  # no test may mistake it for a kernel errno
    dog.mark_lost("again")
    assert len(reasons) == 1
