"""Running the conformance suite in a child pytest and reading its results.json.

Used by the suite's own tests (the fault catalogue, the kill matrix: one run per fault entry). Each
run is a fresh child forked from this process's fork server (vfio_mig_cts/faults/forkserver.py),
which imported everything once: runs are as independent as separate processes, without each paying
for Python, pytest, the plugins and Hypothesis again.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfio_mig_cts.faults.forkserver import ForkServer

ROOT = Path(__file__).resolve().parents[2]
SERVER = ForkServer()  # one per process that runs suites (each pytest-xdist worker has its own)
atexit.register(SERVER.close)


@dataclass(frozen=True)
class SuiteRun:
    returncode: int
    results: list[dict[str, Any]]
    output: str

    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["outcome"] in ("failed", "error", "xpassed")]

    def outcomes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in self.results:
            if r["outcome"] in ("failed", "error") or r["nodeid"] not in out:
                out[r["nodeid"]] = r["outcome"]
        return out


def run_suite(reports: Path, *args: str, paths: tuple[str, ...] = ("suites",), timeout: float = 900) -> SuiteRun:
    """``pytest PATHS -q ... --reports REPORTS ARGS`` in a fresh child (see the module rules); its results.

    Raises ``subprocess.TimeoutExpired`` (``RunTimeout``) when the run outlives ``timeout`` seconds.
    """
    fd, name = tempfile.mkstemp(prefix="vfio-cts-run-", suffix=".out")
    os.close(fd)
    output = Path(name)
    try:
        code = SERVER.run([*paths, "-q", "-p", "no:cacheprovider", "--reports", str(reports), *args], output, timeout)
        text = output.read_text(errors="replace")
    finally:
        output.unlink(missing_ok=True)
    results_file = reports / "results.json"
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    return SuiteRun(code, results, text)
