"""Running calls against one device from several threads at once, with deadlines.

``race()`` starts one thread per call, releases them together (a barrier) and waits for all of them
until a deadline; a call still running then is reported as stuck (its thread is left behind: a call
stuck in the kernel cannot be taken back). The mock widens the windows these races aim at when asked
(``RaceWindow``); a backend that can open a device a second time says so (``OpenAgain``).
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Ran:
    """One racing call: its value or errno, when it started and ended (None: still running)."""

    name: str
    value: Any = None
    err: int = 0
    error: BaseException | None = None
    started: float = 0.0
    ended: float | None = None

    @property
    def done(self) -> bool:
        return self.ended is not None

    def describe(self) -> str:
        if not self.done:
            return f"{self.name}: still running"
        if self.error is not None:
            return f"{self.name}: raised {type(self.error).__name__}: {self.error}"
        return f"{self.name}: {errno.errorcode.get(self.err, self.err) if self.err else 'ok'}"


def race(calls: dict[str, Callable[[], Any]], timeout: float) -> dict[str, Ran]:
    """Run the calls together; each result once it returned, or not done past ``timeout`` seconds."""
    ran = {name: Ran(name) for name in calls}
    barrier = threading.Barrier(len(calls))

    def runner(name: str, fn: Callable[[], Any]) -> None:
        r = ran[name]
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError:
            pass
        r.started = time.monotonic()
        try:
            r.value = fn()
        except OSError as exc:
            r.err = exc.errno or errno.EIO
        except BaseException as exc:
            r.error = exc
        r.ended = time.monotonic()

    threads = [threading.Thread(target=runner, args=(n, f), name=f"vfio-cts-race:{n}", daemon=True)
               for n, f in calls.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return ran


def wait_done(ran: dict[str, Ran], seconds: float) -> bool:
    """Give stuck calls ``seconds`` more; whether they all returned."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(r.done for r in ran.values()):
            return True
        time.sleep(0.01)
    return all(r.done for r in ran.values())


def reraise(ran: dict[str, Ran]) -> None:
    """A racing call that failed otherwise than with an errno is the test's own error."""
    for r in ran.values():
        if r.error is not None:
            raise r.error
