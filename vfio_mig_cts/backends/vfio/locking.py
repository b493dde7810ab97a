"""One device per pytest-xdist worker: exclusive locks and quarantine records.

Rules:

- Locks live in the first usable directory of ``/run/lock/vfio-mig-cts``, then
  ``$TMPDIR/vfio-mig-cts-locks``; one file per device, named after it (``0000_3b_00.1.lock``).
  A lock is ``flock(LOCK_EX | LOCK_NB)`` on that file: the kernel drops it when its holder dies,
  so a crashed run never leaves a device locked. The file records the holder's pid and worker.
- Worker ``gwK`` (``PYTEST_XDIST_WORKER``) of a run with N devices tries devices[K % N] first,
  then the others in order; a process outside xdist counts as worker 0. A device that is locked or
  quarantined is passed over. If none is free after a grace period (workers of the same run may
  briefly hold a device to probe it) the answer is a ``BackendError`` saying all are busy.
- A quarantine record is a file ``<device>.quarantine`` next to the locks, holding the reason and
  the run id (``PYTEST_XDIST_TESTRUNUID``, shared by the workers of one run). Records of the same
  run are honoured, so a replaced worker picks a healthy device; records of other runs are ignored
  (the device is checked again: a reboot or a new mdev may have healed it).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from vfio_mig_cts.backends.loader import BackendError

DEFAULT_DIRS = (Path("/run/lock/vfio-mig-cts"), Path(tempfile.gettempdir()) / "vfio-mig-cts-locks")
_RUN_ID = f"local-{uuid.uuid4().hex[:12]}"


def run_id(env: Mapping[str, str] = os.environ) -> str:
    """The id of this test run: xdist's run uid, else one made up for this process."""
    return env.get("PYTEST_XDIST_TESTRUNUID") or _RUN_ID


def worker_index(env: Mapping[str, str] = os.environ) -> int:
    """K of worker ``gwK``; 0 outside xdist."""
    m = re.fullmatch(r"gw(\d+)", env.get("PYTEST_XDIST_WORKER", ""))
    return int(m[1]) if m else 0


def is_worker(env: Mapping[str, str] = os.environ) -> bool:
    return bool(env.get("PYTEST_XDIST_WORKER"))


def preference(devices: Sequence[str], index: int) -> list[str]:
    """The order a worker tries devices in: its own (index mod N) first, then the following ones."""
    n = len(devices)
    return [devices[(index + i) % n] for i in range(n)] if n else []


def safe_name(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", device)


def lock_dir(candidates: Sequence[Path] = DEFAULT_DIRS) -> Path:
    """The first candidate directory that exists or can be made, and is writable."""
    problems = []
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"{d}: {exc.strerror}")
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
        problems.append(f"{d}: not writable")
    raise BackendError(f"no directory for device locks ({'; '.join(problems)}): make one of them writable")


class DeviceLock:
    """An exclusive, non-blocking ``flock`` on one device's lock file."""

    def __init__(self, directory: Path, device: str) -> None:
        self.device = device
        self.path = directory / f"{safe_name(device)}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, note: str = "") -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} {note}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Quarantine:
    """Quarantine records next to the locks (see the module rules)."""

    def __init__(self, directory: Path, run: str) -> None:
        self.directory = directory
        self.run = run

    def _path(self, device: str) -> Path:
        return self.directory / f"{safe_name(device)}.quarantine"

    def add(self, device: str, reason: str) -> None:
        record = {"device": device, "reason": reason, "run": self.run, "pid": os.getpid(), "time": time.time()}
        tmp = self._path(device).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self._path(device))

    def reason(self, device: str) -> str | None:
        """Why ``device`` is quarantined in this run, or None."""
        try:
            record = json.loads(self._path(device).read_text())
        except (OSError, ValueError):
            return None
        if record.get("run") != self.run:
            return None
        return str(record.get("reason", "quarantined"))


def acquire(devices: Sequence[str], index: int, directory: Path, quarantine: Quarantine,
            grace: float = 5.0, note: str = "", poll: float = 0.2) -> DeviceLock:
    """Lock the first free, healthy device in this worker's preference order (see the module rules)."""
    order = preference(devices, index)
    deadline = time.monotonic() + grace
    while True:
        skipped: list[str] = []
        for name in order:
            why = quarantine.reason(name)
            if why:
                skipped.append(f"{name} quarantined ({why})")
                continue
            lock = DeviceLock(directory, name)
            if lock.try_acquire(note):
                return lock
            skipped.append(f"{name} busy ({lock.holder() or 'locked'})")
        if time.monotonic() >= deadline or all("quarantined" in s for s in skipped):
            raise BackendError(f"no free device: {'; '.join(skipped)}; locks in {directory} (another run, or "
                               "fewer devices than -n workers?)")
        time.sleep(poll)
