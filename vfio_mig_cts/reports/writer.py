"""Writing a run's reports: every format from one record, into a staging folder, swapped in at the end.

Rules:

- Every file of a run is written into ``<reports>/.staging-<pid>/`` first; when all are written, the
  previous run's files are moved aside and the new ones moved in (renames in one folder), then the old
  ones deleted. ``results.json`` is the anchor: it leaves first and arrives last, so a folder with a
  ``results.json`` holds one run's complete set. A run killed before the swap (SIGKILL) leaves the
  previous complete set; staging
  folders of dead runs are removed by the next run.
- The files: ``results.json`` (the record itself), ``junit.xml``, ``results.ktap``, ``kcidb.json``,
  ``allure-results/``, ``matrix-<device>-<feature set>.svg`` and ``matrix-<device>-families.svg``, and
  ``stateful/`` with the reproducer script of each stateful test that found something (so an old
  reproducer never ships with a green run).
  Nothing else in the folder is touched (a lab's own files, other tools' outputs).
- One run at a time per reports folder: ``ReportsLock`` holds ``<reports>/.lock`` (``flock``) for the
  whole run; a second run is refused with the holder's pid and command. On a filesystem that has no
  locks (a guest's 9p share) the run goes on without one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from pathlib import Path

from vfio_mig_cts.reports import allure, junit, kcidb, ktap, matrix
from vfio_mig_cts.reports.record import RunResults, to_json

OWNED = ("results.json", "junit.xml", "results.ktap", "kcidb.json", "allure-results", "stateful")
REPRODUCER = "reproducer"  # a test's property holding a stateful reproducer script
OWNED_GLOBS = ("matrix-*.svg",)
STAGING_PREFIX = ".staging-"


class ReportsBusy(RuntimeError):
    """Another run holds the reports folder."""


class ReportsLock:
    """``<reports>/.lock``, held (``flock``) from the start of a run to its end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / ".lock"
        self._fd: int | None = None

    def acquire(self, command: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another run"
            os.close(fd)
            raise ReportsBusy(f"{self.folder} is in use by {holder}: wait for it, or give this run "
                              "--reports DIR of its own") from None
        except OSError:  # a filesystem without locks (a guest's 9p share): the run goes on unguarded
            os.close(fd)
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({command})".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(folder: Path) -> None:
    """Staging folders left by runs that died before their swap."""
    for stale in folder.glob(STAGING_PREFIX + "*"):
        pid = stale.name.removeprefix(STAGING_PREFIX)
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)


FORMATS = ("json", "junit", "ktap", "kcidb", "matrix", "allure")


def render_all(results: RunResults, folder: Path, formats: tuple[str, ...] = FORMATS) -> list[str]:
    """The formats asked for (``results.json`` always) into ``folder``; the names written, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ["results.json"]
    (folder / "results.json").write_text(json.dumps(to_json(results), indent=1) + "\n")
    if "junit" in formats:
        (folder / "junit.xml").write_text(junit.render(results))
        names.append("junit.xml")
    if "ktap" in formats:
        (folder / "results.ktap").write_text(ktap.render(results))
        names.append("results.ktap")
    if "kcidb" in formats:
        (folder / "kcidb.json").write_text(json.dumps(kcidb.render(results), indent=1) + "\n")
        names.append("kcidb.json")
    scripts = [(reproducer_name(t.nodeid), text) for t in results.tests for key, text in t.properties
               if key == REPRODUCER]
    if scripts:
        (folder / "stateful").mkdir()
        for name, text in scripts:
            (folder / "stateful" / name).write_text(text)
            (folder / "stateful" / name).chmod(0o755)
        names.append("stateful")
    images = matrix.write_svgs(results.tests, folder) if "matrix" in formats else []
    names += [p.name for p in images]
    if "allure" in formats:
        allure.write(results, folder / "allure-results", images)
        names.append("allure-results")
    return names


def reproducer_name(nodeid: str) -> str:
    """``stateful/<this>``: the file name of a test's reproducer script."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", nodeid.split("::")[-1]).strip("-") + ".py"


def _owned(folder: Path) -> list[Path]:
    found = [folder / name for name in OWNED if (folder / name).exists()]
    for pattern in OWNED_GLOBS:
        found += sorted(folder.glob(pattern))
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(results: RunResults, folder: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Render into staging, then replace the previous run's files with them (see the module rules)."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f"{STAGING_PREFIX}{os.getpid()}"
    _remove(staging)
    names = render_all(results, staging, formats)
    old = staging / ".previous"
    old.mkdir()
    for path in _owned(folder):
        path.rename(old / path.name)
    for name in sorted(names, key=lambda n: n == "results.json"):  # results.json, the anchor, comes in last
        (staging / name).rename(folder / name)
    _remove(staging)
    return [folder / n for n in names]
