"""KTAP (``reports/results.ktap``), drawn from the result record, for KernelCI-style consumers.

The format is the kernel's KTAP version 1 (Documentation/dev-tools/ktap.rst), as kselftest and
KUnit print it; ``tests/test_ktap.py`` parses it with the kernel's own
``tools/testing/kunit/kunit_parser.py``.

Rules:

- The header's diagnostic lines state the run record (status, backend, kernel, devices).
- One subtest per suite file (``test_arcs``), in collection order; with several devices in the run,
  one per suite file and device (``test_arcs@0000:3b:00.1``). Subtests are indented four spaces.
- A test: ``ok N name`` (pass); ``ok N name # SKIP reason`` (skip, and hazard not run, whose reason
  starts with ``hazard not run``); ``ok N name # XFAIL reason`` (expected failure, from an expectation
  file); ``not ok N name`` (fail, error, unexpected pass). Warnings (a should/convention rule broken)
  are ``ok`` with their findings as ``# WARNING:`` diagnostic lines before the result line; a
  failure's first lines come the same way.
- A suite is ``not ok`` when one of its tests is, ``ok ... # SKIP`` when every test skipped.
- A run that did not complete ends with ``not ok N run_complete``, so no parser calls it a success.
- Names and directives are kept parseable: no ``#`` in a name, one line per reason, and no line
  that ``kunit_parser`` takes for the end of the kernel log.
"""

from __future__ import annotations

import re

from vfio_mig_cts.reports.record import Outcome, RunResults, RunStatus, TestRecord

INDENT = "    "
_END = re.compile(r"List of all partitions:|Kernel panic - not syncing: VFS:|reboot: System halted")
_HEAD = {Outcome.FAILED: "FAIL", Outcome.ERROR: "ERROR", Outcome.XPASSED: "XPASS"}


def _clean(text: str) -> str:
    return _END.sub("[...]", " ".join(text.split()))


def _name(text: str) -> str:
    return _clean(text).replace("#", "_") or "unnamed"


def _diag(text: str) -> str:
    line = _clean(text)
    if line.startswith("Subtest:"):
        line = "(" + line + ")"
    return f"# {line}" if line else "#"


def _lines(message: str, n: int = 6) -> list[str]:
    return [ln for ln in (x.strip() for x in message.splitlines()) if ln][:n]


def result_lines(n: int, t: TestRecord) -> list[str]:
    """The diagnostic lines and result line of one test."""
    name = _name(t.name)
    out: list[str] = []
    if t.outcome is Outcome.WARNING:
        out += [_diag(f"WARNING: {f.summary()}") for f in t.findings[:6]] or [_diag("WARNING: " + t.headline)]
    elif t.outcome.bad:
        out += [_diag(f"{_HEAD[t.outcome]}: {t.headline}")] + [_diag(d) for d in _lines(t.message)[1:]]
    if t.outcome is Outcome.HAZARD:
        reason = t.headline if t.headline.startswith("hazard not run") else f"hazard not run: {t.headline}"
        out.append(f"ok {n} {name} # SKIP {_clean(reason)}".rstrip())
    elif t.outcome is Outcome.SKIPPED:
        out.append(f"ok {n} {name} # SKIP {_clean(t.headline)}".rstrip())
    elif t.outcome is Outcome.XFAILED:
        out.append(f"ok {n} {name} # XFAIL {_clean(t.headline)}".rstrip())
    elif t.outcome.bad:
        out.append(f"not ok {n} {name}")
    else:
        out.append(f"ok {n} {name}")
    return out


def header(results: RunResults) -> list[str]:
    run = results.run
    lines = ["vfio-mig-cts conformance results",
             f"run {run.status.value}; exit status {run.exit_status}; {len(results.tests)} of {run.collected} "
             "tests reported"]
    if run.backend:
        lines.append(f"backend {run.backend}; kernel profile {run.kernel_profile}; kernel {run.kernel_release}")
    for device, driver in run.devices:
        lines.append(f"device {device}" + (f" driver {driver}" if driver else ""))
    return lines


def render(results: RunResults) -> str:
    """The whole KTAP document (see the module rules)."""
    tests = results.tests
    many = len({t.device for t in tests}) > 1
    suites: dict[str, list[TestRecord]] = {}
    for t in tests:
        key = f"{t.suite}@{t.device}" if many else t.suite
        suites.setdefault(_name(key), []).append(t)
    incomplete = results.run.status is not RunStatus.COMPLETE
    out = ["KTAP version 1", *(_diag(h) for h in header(results)), f"1..{len(suites) + int(incomplete)}"]
    for i, (suite, mine) in enumerate(suites.items(), 1):
        out += [f"{INDENT}KTAP version 1", f"{INDENT}# Subtest: {suite}", f"{INDENT}1..{len(mine)}"]
        for n, t in enumerate(mine, 1):
            out += [INDENT + line for line in result_lines(n, t)]
        bad = sum(1 for t in mine if t.outcome.bad)
        if bad:
            out += [f"# {suite}: {bad} of {len(mine)} not ok", f"not ok {i} {suite}"]
        elif all(not t.outcome.executed for t in mine):
            out.append(f"ok {i} {suite} # SKIP every test skipped")
        else:
            out.append(f"ok {i} {suite}")
    if incomplete:
        out += [_diag(f"the run was {results.run.status.value}: {len(tests)} of {results.run.collected} tests "
                      "reported"), f"not ok {len(suites) + 1} run_complete"]
    return "\n".join(out) + "\n"
