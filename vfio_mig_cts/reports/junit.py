"""JUnit XML (``reports/junit.xml``), drawn from the result record.

Rules:

- One ``<testsuite>`` per device (``vfio-mig-cts@<device>``); a test's name ends in `` @<device>``
  when the run covers several devices, so CI test views keep them apart.
- The run record is the suites' ``<properties>`` (``run.status``, ``run.exit_status``, backend,
  kernel profile and release, host, command, start and end, strictness).
- Each ``<testcase>`` has the properties ``outcome`` (the record's, so a warning, a known failure and an
  unexpected pass are told apart), ``device``, ``driver``, ``feature_set``, ``rules``, ``broken``,
  ``force`` and one ``finding.N`` per finding.
- A failure is ``<failure type="must">``, an unexpected pass ``<failure type="xpass">``, an error
  ``<error>``; a skip ``<skipped type="skip">``, a hazard not run ``<skipped type="hazard">``, a known
  failure ``<skipped type="xfail">``; a warning passes with its findings in ``<system-out>`` (JUnit has
  no warning status; the ``outcome`` property says it).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from vfio_mig_cts.reports.record import Outcome, RunRecord, RunResults, TestRecord

_FAILURE = {Outcome.FAILED: "must", Outcome.XPASSED: "xpass"}
_SKIPPED = {Outcome.SKIPPED: "skip", Outcome.HAZARD: "hazard", Outcome.XFAILED: "xfail"}


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters."""
    return "".join(ch if ch in "\t\n\r" or ord(ch) >= 0x20 else f"\\x{ord(ch):02x}" for ch in text)


def _props(parent: ET.Element, pairs: Iterable[tuple[str, str]]) -> None:
    props = ET.SubElement(parent, "properties")
    for name, value in pairs:
        ET.SubElement(props, "property", name=name, value=_clean(value))


def run_properties(run: RunRecord) -> list[tuple[str, str]]:
    def when(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds") if t else ""
    pairs = [("run.status", run.status.value), ("run.exit_status", str(run.exit_status)),
             ("run.command", " ".join(run.command)), ("run.start", when(run.start)), ("run.end", when(run.end)),
             ("backend", run.backend), ("kernel.profile", run.kernel_profile), ("kernel.release", run.kernel_release),
             ("host", run.host), ("strict_rules", str(run.strict_rules).lower()),
             ("collected", str(run.collected))]
    pairs += [("expectations", e) for e in run.expectations]
    return pairs


def _classname(t: TestRecord) -> str:
    path = t.nodeid.split("::", 1)[0]
    return path.removesuffix(".py").replace("/", ".")


def _testcase(suite: ET.Element, t: TestRecord, several: bool) -> None:
    name = t.name + (f" @{t.device}" if several and t.device else "")
    case = ET.SubElement(suite, "testcase", classname=_classname(t), name=_clean(name), time=f"{t.duration:.3f}")
    forces = sorted({f.force for f in t.findings})
    pairs = [("outcome", t.outcome.value), ("device", t.device), ("driver", t.driver),
             ("feature_set", t.feature_set), ("rules", ",".join(t.rules)), ("broken", ",".join(t.broken)),
             ("force", ",".join(forces))]
    pairs += [(f"finding.{i}", f.summary()) for i, f in enumerate(t.findings, 1)]
    pairs += [("expectation", f"{e.origin} {e.rule}: {e.reason}") for e in t.expectation]
    pairs += [(k, v) for k, v in t.properties if "\n" not in v]  # a reproducer script goes to stateful/
    _props(case, pairs)
    head = _clean(t.headline)
    body = _clean(t.message)
    if t.outcome in _FAILURE:
        ET.SubElement(case, "failure", message=head, type=_FAILURE[t.outcome]).text = body
    elif t.outcome is Outcome.ERROR:
        ET.SubElement(case, "error", message=head, type="error").text = body
    elif t.outcome in _SKIPPED:
        ET.SubElement(case, "skipped", message=head, type=_SKIPPED[t.outcome]).text = body
    elif t.outcome is Outcome.WARNING:
        ET.SubElement(case, "system-out").text = body


def render(results: RunResults) -> str:
    tests = results.tests
    devices = list(dict.fromkeys(t.device for t in tests)) or [results.run.backend]
    several = len(devices) > 1
    root = ET.Element("testsuites", name="vfio-mig-cts")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    seconds = 0.0
    for device in devices:
        mine = [t for t in tests if t.device == device]
        c = {"tests": len(mine),
             "failures": sum(1 for t in mine if t.outcome in _FAILURE),
             "errors": sum(1 for t in mine if t.outcome is Outcome.ERROR),
             "skipped": sum(1 for t in mine if t.outcome in _SKIPPED)}
        time = sum(t.duration for t in mine)
        attrib = {"name": f"vfio-mig-cts@{device}" if device else "vfio-mig-cts",
                  **{k: str(v) for k, v in c.items()}, "time": f"{time:.3f}", "hostname": results.run.host}
        suite = ET.SubElement(root, "testsuite", attrib)
        _props(suite, run_properties(results.run))
        for t in mine:
            _testcase(suite, t, several)
        for k in totals:
            totals[k] += c[k]
        seconds += time
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
