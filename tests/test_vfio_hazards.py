"""The forked-child wrapper for hazardous requests: hangs, errnos and values."""

from __future__ import annotations

import errno
import os
import signal
import time

from vfio_mig_cts.judging.containment import run_contained


def test_a_hanging_child_counts_as_hung() -> None:
    start = time.monotonic()
    res = run_contained(lambda: time.sleep(30), 0.3)
    assert res.hung
    assert 0.25 <= res.seconds < 5
    assert time.monotonic() - start < 5


def test_an_oserror_becomes_its_errno() -> None:
    def fail() -> None:
        raise OSError(errno.EINVAL, "Invalid argument")
    res = run_contained(fail, 5)
    assert (res.hung, res.errno, res.value) == (False, errno.EINVAL, None)


def test_the_value_is_returned() -> None:
    res = run_contained(lambda: (0, True, 2), 5)
    assert (res.hung, res.errno, res.value) == (False, 0, (0, True, 2))


def test_the_child_is_another_process() -> None:
    assert run_contained(os.getpid, 5).value != os.getpid()


def test_other_exceptions_are_reported_as_text() -> None:
    res = run_contained(lambda: int("x"), 5)
    assert not res.hung and res.error.startswith("ValueError")


def test_a_child_that_dies_without_answering_is_reported_as_died() -> None:
    """A kernel oops kills the task that made the request: no answer, but no hang either."""
    res = run_contained(lambda: os.kill(os.getpid(), signal.SIGKILL), 5)
    assert (res.hung, res.died, res.answered) == (False, "killed by signal 9", False)
    assert res.seconds < 4

