"""A pytest plugin for the benchmarks (``-p benchmarks.timing``): where one run's time goes.

It records, at the run's stages, the wall-clock instant (``time.time()``, comparable with the
parent's) and the process's CPU time so far (``time.process_time()``: on a shared machine the CPU
time of a stage holds where its wall time drifts with the load), and each test's duration (setup +
call + teardown, from its reports), and writes them as JSON to the file named by ``VFIO_CTS_TIMING``
when the run ends. Loaded the same way into the mock run and into the
floor run, so both are measured alike. It changes nothing in the run it times.

Stages: ``loaded`` (this module imported: interpreter and pytest started, plugins being loaded),
``configured`` (every plugin and conftest loaded and configured), collection start and end, the test
loop's start and end, the session's end (``pytest_sessionfinish``: the reports written once), the
terminal summary (every plugin's ``pytest_terminal_summary``) and ``unconfigured`` (the last hook
before the interpreter shuts down).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from typing import Any

import pytest

ENV = "VFIO_CTS_TIMING"
MARKS: dict[str, tuple[float, float]] = {"loaded": (time.time(), time.process_time())}
DURATIONS: dict[str, float] = {}


def _mark(name: str) -> None:
    MARKS[name] = (time.time(), time.process_time())


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _mark("configure")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _mark("configured")


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, Any, None]:
    _mark("collect_start")
    yield
    _mark("collect_end")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, Any, None]:
    _mark("tests_start")
    yield
    _mark("tests_end")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    DURATIONS[report.nodeid] = DURATIONS.get(report.nodeid, 0.0) + float(report.duration)


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, Any, None]:
    _mark("finish_start")
    yield
    _mark("finish_end")


@pytest.hookimpl(hookwrapper=True)
def pytest_terminal_summary(terminalreporter: Any) -> Generator[None, Any, None]:
    _mark("summary_start")
    yield
    _mark("summary_end")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    _mark("unconfigured")
    path = os.environ.get(ENV)
    if path and not hasattr(config, "workerinput"):
        with open(path, "w") as f:
            json.dump({"marks": MARKS, "durations": DURATIONS}, f)
