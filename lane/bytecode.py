"""Bytecode for the guest, compiled once on the host.

The guest sees the host's tree through a copy-on-write snapshot that is thrown away at power-off, and
it runs Python with ``PYTHONDONTWRITEBYTECODE``: without ``.pyc`` files next to the sources, every
pytest process in the guest (one per open path, one per hazard round) compiles the project and its
dependencies again under TCG. ``compile_tree`` writes them on the host before the boot (only what is
out of date; the guest's Python is the host's, so they match) and says how long it took.
"""

from __future__ import annotations

import compileall
import sys
import sysconfig
import time
from pathlib import Path

PROJECT = ("conftest.py", "fixtures", "vfio_mig_cts", "suites", "lane")


def compile_tree(root: Path) -> float:
    """Compile the project's packages and the venv's site-packages; the seconds it took."""
    t0 = time.monotonic()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in PROJECT:
        path = root / name
        if path.is_file():
            compileall.compile_file(str(path), quiet=2)
        elif path.is_dir():
            compileall.compile_dir(str(path), quiet=2, workers=0)
    if site.is_dir() and sys.prefix != sys.base_prefix:  # a venv's own packages, never the system's
        compileall.compile_dir(str(site), quiet=2, workers=0)
    return time.monotonic() - t0
