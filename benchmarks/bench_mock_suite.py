"""Benchmark: wall time of the whole conformance suite on the embedded mock (not a test).

Runs ``pytest suites`` in a child process N times and reports min/median/max; writes
reports/benchmark.json. Speed is measured here, never asserted in a timed test.

    python benchmarks/bench_mock_suite.py [RUNS [PYTEST ARGS...]]     RUNS: 1 to 100 (default 5)

Exit codes: 0 measured; 1 the suite failed; 4 bad input (one line says what to do).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vfio_mig_cts.errors import Exit
from vfio_mig_cts.numbers import NumberError, count

ROOT = Path(__file__).resolve().parent.parent
RUNS = count(1, 100)


class SuiteFailed(Exception):
    """The suite did not pass; ``code`` is its exit status, ``str()`` its last output."""

    def __init__(self, code: int, output: str) -> None:
        super().__init__(output)
        self.code = code


def run_once(extra: list[str]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as reports:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider",
                               "--reports", reports, *extra], cwd=ROOT, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SuiteFailed(proc.returncode, (proc.stdout + proc.stderr).strip())
        results = json.loads((Path(reports) / "results.json").read_text())["results"]
    return elapsed, len(results)


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        runs = int(RUNS.parse("RUNS", argv[0])) if argv else 5
    except NumberError as exc:
        print(f"bench_mock_suite: {exc}", file=sys.stderr)
        return int(Exit.BAD_INPUT)
    extra = argv[1:]
    times, n = [], 0
    for _ in range(runs):
        try:
            t, n = run_once(extra)
        except SuiteFailed as exc:
            if exc.code == Exit.BAD_INPUT:  # the suite's own one line, about the extra arguments
                print(str(exc).splitlines()[-1], file=sys.stderr)
                return int(Exit.BAD_INPUT)
            print(f"bench_mock_suite: the suite failed (exit {exc.code}); its output ends:\n{str(exc)[-2000:]}",
                  file=sys.stderr)
            return int(Exit.TESTS_FAILED)
        times.append(t)
    summary = {"runs": runs, "tests": n, "min_s": round(min(times), 3),
               "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3), "args": extra}
    print(f"mock suite: {n} tests, median {summary['median_s']} s "
          f"(min {summary['min_s']}, max {summary['max_s']}) over {runs} runs, process start included")
    out = ROOT / "reports"
    out.mkdir(exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
