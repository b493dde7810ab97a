"""Benchmark: the mock run (``./cts -q``) against pytest's own floor, measured side by side (not a test).

    python benchmarks/bench_mock_suite.py [RUNS [PYTEST ARGS...]]     RUNS: 1 to 100 (default 5)

Each round runs, in child processes of the same interpreter under the same conditions, the
conformance suite on the mock as ``./cts -q`` runs it (every report format, into a temporary folder)
and the floor: as many trivial parametrized tests as the mock run collected, with pytest's own report
plugins for the same formats (``--junitxml``, allure-pytest's ``--alluredir``) and the same
``timeout`` setting. The two alternate which goes first. The figure is the ratio mock / floor per
round, its median over the rounds; absolute times on a shared machine drift from run to run, ratios
measured in the same round hold. Both the wall time and the CPU time (user + system of the child) are
given.

Where the mock run's time goes comes from ``benchmarks/timing.py`` (loaded into both runs): start-up
(interpreter, pytest, plugins, conftest), collection, the tests (per-test median and the slowest ten,
per suite file), the session's end (the reports, written once, and the terminal summary), and exit.
Each stage is given as the median over the rounds, next to the floor's.

Writes reports/benchmark.json. Speed is measured here, never asserted in a timed test. The PYTEST
ARGS go to the mock run only.

Exit codes: 0 measured; 1 the suite failed; 4 bad input (one line says what to do).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfio_mig_cts.errors import Exit
from vfio_mig_cts.numbers import NumberError, count

ROOT = Path(__file__).resolve().parent.parent
RUNS = count(1, 100)
FLOOR_TEST = '''import pytest


@pytest.mark.parametrize("i", range({count}))
def test_trivial(i):
    assert i >= 0
'''
FLOOR_INI = "[pytest]\ntimeout = 60\n"  # as pyproject.toml's: pytest-timeout arms its timer per test alike
COMMON = ("-q", "-p", "no:cacheprovider", "-p", "benchmarks.timing")
# What ./cts runs (its last line): the plugin loaded up front, this tree's pyproject.toml as the config.
CTS = ("-p", "fixtures.plugins", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"))
STAGES = (("start-up", "start", "configured"), ("collection", "collect_start", "collect_end"),
          ("tests", "tests_start", "tests_end"), ("session end (reports)", "finish_start", "finish_end"),
          ("terminal summary", "summary_start", "summary_end"), ("unconfigure", "summary_end", "unconfigured"),
          ("interpreter exit", "unconfigured", "exit"))


class SuiteFailed(Exception):
    """A run did not pass; ``code`` is its exit status, ``str()`` its last output."""

    def __init__(self, code: int, output: str) -> None:
        super().__init__(output)
        self.code = code


@dataclass
class Run:
    """One child pytest: its wall and CPU time, its stages and its tests' durations."""

    wall: float
    cpu: float
    marks: dict[str, tuple[float, float]]  # stage -> (wall-clock instant, the child's CPU time so far)
    durations: dict[str, float] = field(default_factory=dict)

    def stage(self, first: str, last: str) -> tuple[float, float]:
        """Wall and CPU seconds from ``first`` to ``last``."""
        (w0, c0), (w1, c1) = self.marks[first], self.marks[last]
        return w1 - w0, c1 - c0


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pytest(args: list[str], cwd: Path) -> Run:
    """``python -P -m pytest ARGS`` in ``cwd`` with the timing plugin; ``SuiteFailed`` when the run fails."""
    with tempfile.NamedTemporaryFile(suffix=".json") as timing:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "VFIO_CTS_TIMING": timing.name}
        cpu0, start = _child_cpu(), time.time()
        proc = subprocess.run([sys.executable, "-P", "-m", "pytest", *COMMON, *args], cwd=cwd, env=env,
                              capture_output=True, text=True, check=False)
        end, cpu1 = time.time(), _child_cpu()
        if proc.returncode != 0:
            raise SuiteFailed(proc.returncode, (proc.stdout + proc.stderr).strip())
        data = json.loads(Path(timing.name).read_text())
    marks = {name: (float(w), float(c)) for name, (w, c) in data["marks"].items()}
    marks.update(start=(start, 0.0), exit=(end, cpu1 - cpu0))
    return Run(end - start, cpu1 - cpu0, marks, data["durations"])


def mock_run(extra: list[str]) -> tuple[Run, int]:
    with tempfile.TemporaryDirectory() as reports:
        run = run_pytest([*CTS, "--reports", reports, *extra], ROOT)
        count = len(json.loads((Path(reports) / "results.json").read_text())["results"])
    return run, count


def floor_run(count: int) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text(FLOOR_INI)
        (folder / "test_floor.py").write_text(FLOOR_TEST.format(count=count))
        return run_pytest(["test_floor.py", "--junitxml", str(folder / "junit.xml"),
                           "--alluredir", str(folder / "allure-results")], folder)


def bytecode_condition() -> str:
    """Whether the children may cache compiled modules (PYTHONDONTWRITEBYTECODE makes every run compile)."""
    if sys.dont_write_bytecode:
        return "not written (PYTHONDONTWRITEBYTECODE): every module compiled (and assert-rewritten) in every run"
    return f"cached ({sys.pycache_prefix or '__pycache__'})"


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _stages(runs: list[Run]) -> dict[str, dict[str, float]]:
    return {name: {"wall_s": _median([r.stage(a, b)[0] for r in runs]),
                   "cpu_s": _median([r.stage(a, b)[1] for r in runs])} for name, a, b in STAGES}


def _tests(runs: list[Run]) -> dict[str, Any]:
    """Per-test figures of the last round (the rounds run the same tests), and per suite file."""
    durations = runs[-1].durations
    per_file: dict[str, float] = {}
    for nodeid, d in durations.items():
        per_file[nodeid.split("::")[0]] = per_file.get(nodeid.split("::")[0], 0.0) + d
    slowest = sorted(durations.items(), key=lambda kv: -kv[1])[:10]
    return {"count": len(durations), "sum_s": round(sum(durations.values()), 3),
            "median_ms": round(statistics.median(durations.values()) * 1000, 3) if durations else 0.0,
            "slowest": [[n, round(d, 3)] for n, d in slowest],
            "per_file_s": {f: round(d, 3) for f, d in sorted(per_file.items(), key=lambda kv: -kv[1])}}


def measure(rounds: int, extra: list[str]) -> dict[str, Any]:
    mocks: list[Run] = []
    floors: list[Run] = []
    count = 0
    for i in range(rounds):
        if i % 2 == 0:  # alternate which goes first, so a drift in load weighs on both alike
            mock, count = mock_run(extra)
            floor = floor_run(count)
        else:
            floor = floor_run(count or 657)
            mock, count = mock_run(extra)
        mocks.append(mock)
        floors.append(floor)
        print(f"round {i + 1}/{rounds}: mock {mock.wall:.2f} s ({mock.cpu:.2f} s CPU), floor {floor.wall:.2f} s "
              f"({floor.cpu:.2f} s CPU): ratio {mock.wall / floor.wall:.2f} wall, {mock.cpu / floor.cpu:.2f} CPU",
              flush=True)
    return {
        "rounds": rounds, "tests": count, "args": extra, "load_average": [round(x, 2) for x in os.getloadavg()],
        "bytecode": bytecode_condition(),
        "ratio_wall": _median([m.wall / f.wall for m, f in zip(mocks, floors, strict=True)]),
        "ratio_cpu": _median([m.cpu / f.cpu for m, f in zip(mocks, floors, strict=True)]),
        "mock": {"wall_s": _median([m.wall for m in mocks]), "cpu_s": _median([m.cpu for m in mocks]),
                 "stages_s": _stages(mocks), "tests": _tests(mocks)},
        "floor": {"wall_s": _median([f.wall for f in floors]), "cpu_s": _median([f.cpu for f in floors]),
                  "stages_s": _stages(floors), "tests": {k: v for k, v in _tests(floors).items()
                                                          if k in ("count", "sum_s", "median_ms")}},
    }


def report(summary: dict[str, Any]) -> str:
    mock, floor = summary["mock"], summary["floor"]
    lines = [f"mock run ({summary['tests']} tests) vs pytest's floor, median of {summary['rounds']} rounds "
             f"(load average {summary['load_average'][0]}; bytecode {summary['bytecode']}):",
             f"  ratio {summary['ratio_wall']:.2f}x wall, {summary['ratio_cpu']:.2f}x CPU "
             f"(mock {mock['wall_s']} s / {mock['cpu_s']} s CPU; floor {floor['wall_s']} s / {floor['cpu_s']} s CPU)",
             f"  {'stage (median s)':<26}{'mock wall':>10}{'mock CPU':>10}{'floor wall':>11}{'floor CPU':>10}"]
    for name, *_ in STAGES:
        m, f = mock["stages_s"][name], floor["stages_s"][name]
        lines.append(f"  {name:<26}{m['wall_s']:>10.3f}{m['cpu_s']:>10.3f}{f['wall_s']:>11.3f}{f['cpu_s']:>10.3f}")
    t = mock["tests"]
    lines.append(f"  per test: median {t['median_ms']} ms (floor {floor['tests']['median_ms']} ms); "
                 f"sum {t['sum_s']} s (floor {floor['tests']['sum_s']} s)")
    files = t["per_file_s"].items()
    lines.append("  per suite file (s): " + ", ".join(f"{f.removeprefix('suites/')} {d}" for f, d in files))
    lines.append("  slowest ten:")
    lines += [f"    {d:7.3f} s  {n}" for n, d in t["slowest"]]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        rounds = int(RUNS.parse("RUNS", argv[0])) if argv else 5
    except NumberError as exc:
        print(f"bench_mock_suite: {exc}", file=sys.stderr)
        return int(Exit.BAD_INPUT)
    try:
        summary = measure(rounds, argv[1:])
    except SuiteFailed as exc:
        if exc.code == Exit.BAD_INPUT:  # the suite's own one line, about the extra arguments
            print(str(exc).splitlines()[-1], file=sys.stderr)
            return int(Exit.BAD_INPUT)
        print(f"bench_mock_suite: a run failed (exit {exc.code}); its output ends:\n{str(exc)[-2000:]}",
              file=sys.stderr)
        return int(Exit.TESTS_FAILED)
    print(report(summary))
    out = ROOT / "reports"
    out.mkdir(exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
