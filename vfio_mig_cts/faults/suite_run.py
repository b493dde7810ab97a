"""Running the conformance suite in a child pytest and reading its results.json.

Used by the suite's own tests (the fault catalogue) and the kill matrix: one run per fault entry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


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
    """``pytest suites ARGS`` in a child process with its reports in ``reports``."""
    cmd = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider",
           "--reports", str(reports), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    results_file = reports / "results.json"
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    return SuiteRun(proc.returncode, results, proc.stdout + proc.stderr)
