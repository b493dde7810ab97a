"""Result records for the report renderers' tests (vfio_mig_cts/reports/)."""

from __future__ import annotations

from vfio_mig_cts.reports.record import Case, Finding, Outcome, RunRecord, RunResults, RunStatus, TestRecord

SHORTEST = Finding("ARC.SHORTEST_PATH", "should", "include/uapi/linux/vfio.h:1193", "- Select the shortest path.",
                   "RESUMING reached through STOP", "through RUNNING")
DATA_FD = Finding("ARC.DATA_FD", "must", "include/uapi/linux/vfio.h:1037", "If the new_state starts a new data "
                  "transfer session", "no data_fd", "a data_fd")


def rec(nodeid: str, outcome: str = "passed", message: str = "", device: str = "mock-dut",
        findings: tuple[Finding, ...] = (), case: Case | None = None, feature_set: str = "",
        rules: tuple[str, ...] = ()) -> TestRecord:
    return TestRecord(nodeid=nodeid, outcome=Outcome(outcome), message=message, device=device, driver="mock",
                      findings=findings, case=case, feature_set=feature_set,
                      rules=rules or tuple(f.rule for f in findings))


def arc(fs: str, frm: str, to: str, outcome: str = "passed", device: str = "dev0", message: str = "") -> TestRecord:
    findings = (DATA_FD,) if outcome in ("failed", "xfailed") else ()
    t = rec(f"suites/test_arcs.py::test_arc[{fs}-{frm}->{to}]", outcome, message, device, findings,
            Case(frm, to), fs, ("ARC.TRANSITION", "ARC.DATA_FD"))
    t.driver = "drv"
    return t


def run(tests: list[TestRecord], status: RunStatus = RunStatus.COMPLETE) -> RunResults:
    devices = tuple(dict.fromkeys((t.device, t.driver) for t in tests))
    return RunResults(RunRecord(status=status, backend="mock", devices=devices, collected=len(tests),
                                host="host1", kernel_release="6.12.118", kernel_profile="debian-6.12.117"), tests)
