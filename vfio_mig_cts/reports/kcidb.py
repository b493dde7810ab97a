"""KCIDB (``reports/kcidb.json``): KernelCI's result schema (v5), drawn from the result record.

A lab submits this file with ``kcidb-submit`` so the run reaches KernelCI's dashboard;
``tests/test_reports_agree.py`` validates it against ``kcidb_io``'s own schema.

Rules:

- Origin ``vfio_mig_cts``. One checkout and one build stand for the kernel under test (its release
  and the kernel profile); their ids are derived from the host, the kernel release and the run's
  start time, so two runs never share ids.
- One test per record: path ``vfio_mig_cts.<suite file>.<test name>`` (characters KCIDB paths do
  not allow become ``_``), status PASS (passed, warning), FAIL (failed, xfailed, xpassed), ERROR
  (error), SKIP (skipped, hazard), the record's outcome, findings and node id in ``misc``, the first
  line of its message as ``comment``.
- Each expectation-file entry that matched is an issue (its reason, its link); each known failure an
  incident tying that issue to the test.
- A run that did not complete adds a test at path ``vfio_mig_cts`` with status ERROR saying so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import asdict
from typing import Any

from vfio_mig_cts.reports.record import Outcome, RunResults, RunStatus, TestRecord

ORIGIN = "vfio_mig_cts"
VERSION = {"major": 5, "minor": 3}
STATUS = {Outcome.PASSED: "PASS", Outcome.WARNING: "PASS", Outcome.FAILED: "FAIL", Outcome.XFAILED: "FAIL",
          Outcome.XPASSED: "FAIL", Outcome.ERROR: "ERROR", Outcome.SKIPPED: "SKIP", Outcome.HAZARD: "SKIP"}
_PATH_CHAR = re.compile(r"[^a-zA-Z0-9_-]+")


def _id(*parts: str) -> str:
    return f"{ORIGIN}:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _path_part(text: str) -> str:
    return _PATH_CHAR.sub("_", text).strip("_") or "_"


def test_path(t: TestRecord) -> str:
    return f"{ORIGIN}.{_path_part(t.suite)}.{_path_part(t.name)}"


def _time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def render(results: RunResults) -> dict[str, Any]:
    run = results.run
    run_key = (run.host, run.kernel_release, repr(run.start))
    checkout_id = _id("checkout", *run_key)
    build_id = _id("build", *run_key)
    checkout = {"id": checkout_id, "origin": ORIGIN, "valid": True,
                "misc": {"kernel_release": run.kernel_release, "kernel_profile": run.kernel_profile}}
    build = {"id": build_id, "origin": ORIGIN, "checkout_id": checkout_id, "status": "PASS",
             "comment": f"kernel {run.kernel_release} (profile {run.kernel_profile})",
             "misc": {"backend": run.backend}}
    if run.start:
        build["start_time"] = _time(run.start)
    tests: list[dict[str, Any]] = []
    issues: dict[str, dict[str, Any]] = {}
    incidents: list[dict[str, Any]] = []
    for n, t in enumerate(results.tests):
        tid = _id("test", *run_key, t.nodeid, t.device, str(n))
        entry: dict[str, Any] = {
            "id": tid, "origin": ORIGIN, "build_id": build_id, "path": test_path(t), "status": STATUS[t.outcome],
            "duration": round(t.duration, 6),
            "environment": {"comment": f"device {t.device}" + (f" driver {t.driver}" if t.driver else ""),
                            "misc": {"device": t.device, "driver": t.driver, "feature_set": t.feature_set}},
            "misc": {"nodeid": t.nodeid, "outcome": t.outcome.value, "rules": list(t.rules),
                     "findings": [asdict(f) for f in t.findings]},
        }
        if t.headline:
            entry["comment"] = t.headline
        if t.message:
            entry["log_excerpt"] = t.message[:16384]
        tests.append(entry)
        for e in t.expectation:
            iid = _id("issue", e.origin, e.rule)
            issue: dict[str, Any] = {"id": iid, "version": 1, "origin": ORIGIN, "comment": f"{e.rule}: {e.reason}",
                                     "misc": {"rule": e.rule, "expectation": e.origin}}
            if e.link.startswith(("http://", "https://")):
                issue["report_url"] = e.link
            issues[iid] = issue
            incidents.append({"id": _id("incident", tid, iid), "origin": ORIGIN, "issue_id": iid,
                              "issue_version": 1, "test_id": tid, "present": t.outcome is Outcome.XFAILED})
    if run.status is not RunStatus.COMPLETE:
        tests.append({"id": _id("run", *run_key), "origin": ORIGIN, "build_id": build_id, "path": ORIGIN,
                      "status": "ERROR", "comment": f"the run was {run.status.value}: {len(results.tests)} of "
                                                   f"{run.collected} tests reported"})
    data: dict[str, Any] = {"version": dict(VERSION), "checkouts": [checkout], "builds": [build], "tests": tests}
    if issues:
        data["issues"] = list(issues.values())
        data["incidents"] = incidents
    return data
