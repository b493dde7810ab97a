"""Benchmark: wall time of the whole conformance suite on the embedded mock (not a test).

Runs ``pytest suites`` in a child process N times and reports min/median/max; writes
reports/benchmark.json. Speed is measured here, never asserted in a timed test.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(extra: list[str]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as reports:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider",
                               "--reports", reports, *extra], cwd=ROOT, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        results = json.loads((Path(reports) / "results.json").read_text())["results"]
    if proc.returncode != 0:
        raise SystemExit(f"suite failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}")
    return elapsed, len(results)


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    extra = sys.argv[2:]
    times, count = [], 0
    for _ in range(runs):
        t, count = run_once(extra)
        times.append(t)
    summary = {"runs": runs, "tests": count, "min_s": round(min(times), 3),
               "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3), "args": extra}
    print(f"mock suite: {count} tests, median {summary['median_s']} s "
          f"(min {summary['min_s']}, max {summary['max_s']}) over {runs} runs, process start included")
    out = ROOT / "reports"
    out.mkdir(exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
