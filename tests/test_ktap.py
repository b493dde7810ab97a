"""reports/results.ktap parses with the kernel's own tools/testing/kunit/kunit_parser.py (6.12)."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.kernel_source import require_source
from tests.records import DATA_FD, SHORTEST, rec, run
from vfio_mig_cts.faults.suite_run import run_suite
from vfio_mig_cts.reports.ktap import render as render_run
from vfio_mig_cts.reports.record import RunStatus, TestRecord


@pytest.fixture(scope="module")
def kunit_parser() -> Iterator[ModuleType]:
    tree = require_source()
    tools = tree / "tools" / "testing" / "kunit"
    if not (tools / "kunit_parser.py").exists() or not (tools / "kunit_printer.py").exists():
        pytest.skip(f"kunit tools missing in {tools}")
    saved: dict[str, ModuleType] = {name: sys.modules.pop(name) for name in ("kunit_parser", "kunit_printer")
                                    if name in sys.modules}
    sys.path.insert(0, str(tools))
    try:
        yield importlib.import_module("kunit_parser")
    finally:
        sys.path.remove(str(tools))
        for name in ("kunit_parser", "kunit_printer"):
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def parse(kp: ModuleType, text: str) -> Any:
    return kp.parse_run_tests(text.splitlines(keepends=True))


def leaves(test: Any) -> list[Any]:
    if not test.subtests:
        return [test]
    return [leaf for sub in test.subtests for leaf in leaves(sub)]


def errors(test: Any) -> int:
    return int(test.counts.errors) + sum(errors(s) for s in test.subtests)


def render(tests: list[TestRecord], status: RunStatus = RunStatus.COMPLETE) -> str:
    return render_run(run(tests, status))


KINDS = [
    rec("suites/test_arcs.py::test_arc[p2p-RUNNING->STOP]"),
    rec("suites/test_arcs.py::test_arc[p2p-STOP->RUNNING]", "failed", DATA_FD.text(), findings=(DATA_FD,)),
    rec("suites/test_arcs.py::test_arc[p2p-STOP->RESUMING]", "warning", SHORTEST.text(), findings=(SHORTEST,)),
    rec("suites/test_arcs.py::test_arc[p2p-STOP_COPY->PRE_COPY]", "hazard",
        "hazard not run: p2p-STOP_COPY->PRE_COPY spins forever; --run-hazards runs it"),
    rec("suites/test_plumbing.py::test_argsz[stop_copy]", "skipped", "unavailable: no peer"),
    rec("suites/test_plumbing.py::test_wrong_op[stop_copy]", "xfailed", "known failure: FEAT.WRONG_OP: mtty bug"),
    rec("suites/test_plumbing.py::test_probe[stop_copy]", "xpassed", "[XPASS(strict)] expected to break X"),
    rec("suites/test_streams.py::test_read[stop_copy]", "error", "error at setup: DeviceQuarantined: hung"),
]


def test_every_outcome_kind_parses_to_its_status(kunit_parser: ModuleType) -> None:
    text = render(KINDS)
    assert text.startswith("KTAP version 1\n")
    main = parse(kunit_parser, text)
    status = kunit_parser.TestStatus
    assert errors(main) == 0, text
    assert [s.name for s in main.subtests] == ["test_arcs", "test_plumbing", "test_streams"]
    got = {t.name: t.status for t in leaves(main)}
    assert got == {
        "test_arc[p2p-RUNNING->STOP]": status.SUCCESS,
        "test_arc[p2p-STOP->RUNNING]": status.FAILURE,
        "test_arc[p2p-STOP->RESUMING]": status.SUCCESS,  # a warning is ok, with diagnostics
        "test_arc[p2p-STOP_COPY->PRE_COPY]": status.SKIPPED,
        "test_argsz[stop_copy]": status.SKIPPED,
        "test_wrong_op[stop_copy]": status.SUCCESS,  # XFAIL
        "test_probe[stop_copy]": status.FAILURE,
        "test_read[stop_copy]": status.FAILURE,
    }
    assert [s.status for s in main.subtests] == [status.FAILURE, status.FAILURE, status.FAILURE]
    assert main.counts.passed == 3 and main.counts.failed == 3 and main.counts.skipped == 2


def test_warnings_and_failures_carry_diagnostics(kunit_parser: ModuleType) -> None:
    text = render(KINDS)
    lines = text.splitlines()
    i = lines.index("    ok 3 test_arc[p2p-STOP->RESUMING]")
    assert lines[i - 1].startswith("    # WARNING: ARC.SHORTEST_PATH (should): expected RESUMING reached")
    assert "    ok 4 test_arc[p2p-STOP_COPY->PRE_COPY] # SKIP hazard not run: " in text
    assert "    ok 2 test_wrong_op[stop_copy] # XFAIL known failure: FEAT.WRONG_OP: mtty bug" in text
    main = parse(kunit_parser, text)
    warned = next(t for t in leaves(main) if t.name == "test_arc[p2p-STOP->RESUMING]")
    assert any("ARC.SHORTEST_PATH" in line for line in warned.log)
    failed = next(t for t in leaves(main) if t.name == "test_arc[p2p-STOP->RUNNING]")
    assert any("observed: a data_fd" in line for line in failed.log)


def test_hostile_names_and_messages_stay_parseable(kunit_parser: ModuleType) -> None:
    records = [
        rec("suites/test_x.py::test_a[dev#2]", "failed", "line one\nok 1 not a result\nok 7 fake result\n"
            "Kernel panic - not syncing: VFS: no root\n# Subtest: fake\nKTAP version 1\n1..3"),
        rec("suites/test_x.py::TestK::test_b", "skipped", "a reason\nwith two lines # and a hash"),
        rec("suites/test_x.py::test_c"),
    ]
    text = render(records)
    main = parse(kunit_parser, text)
    assert errors(main) == 0, text
    names = [t.name for t in leaves(main)]
    assert names == ["test_a[dev_2]", "TestK.test_b", "test_c"]
    assert [t.status.name for t in leaves(main)] == ["FAILURE", "SKIPPED", "SUCCESS"]


def test_several_devices_get_a_suite_each(kunit_parser: ModuleType) -> None:
    records = [rec("suites/test_arcs.py::test_arc[p2p-RUNNING->STOP]", device=d) for d in ("0000:3b:00.1",
                                                                                             "0000:3b:00.2")]
    main = parse(kunit_parser, render(records))
    assert errors(main) == 0
    assert [s.name for s in main.subtests] == ["test_arcs@0000:3b:00.1", "test_arcs@0000:3b:00.2"]
    assert main.status == kunit_parser.TestStatus.SUCCESS


def test_a_suite_where_everything_skipped_is_a_skip(kunit_parser: ModuleType) -> None:
    main = parse(kunit_parser, render([rec("suites/test_dma.py::test_x", "skipped", "no DMA logging")]))
    assert errors(main) == 0
    assert main.subtests[0].status == kunit_parser.TestStatus.SKIPPED


def test_a_mock_run_writes_ktap_that_matches_its_results(kunit_parser: ModuleType, tmp_path: Path) -> None:
    """A real run (with a fault: failures and warnings; an expectation: an expected failure)."""
    expect = tmp_path / "expect.toml"
    expect.write_text('[[expect]]\nrule = "ARC.DATA_FD"\ndriver = "mock"\n'
                      'tests = ["suites/test_arcs.py::test_arc[p2p-STOP->RUNNING]"]\n'
                      'reason = "the fault returns a data_fd here"\nlink = "https://example.org/bug"\n')
    run = run_suite(tmp_path / "reports", "--fault", "passes-through-saving-state", "-k", "p2p and not pre_copy",
                    "--expectations", str(expect), paths=("suites/test_arcs.py", "suites/test_plumbing.py"))
    assert run.returncode == 1, run.output[-3000:]
    text = (tmp_path / "reports" / "results.ktap").read_text()
    main = parse(kunit_parser, text)
    assert errors(main) == 0, text[:3000]
    results = json.loads((tmp_path / "reports" / "results.json").read_text())["results"]
    calls = {r["nodeid"].split("::", 1)[1]: r["outcome"] for r in results}
    by_name = {t.name: t.status.name for t in leaves(main)}
    assert set(by_name) == set(calls)
    expected = {"passed": "SUCCESS", "warning": "SUCCESS", "xfailed": "SUCCESS", "failed": "FAILURE",
                "skipped": "SKIPPED"}
    assert {n: expected[o] for n, o in calls.items()} == by_name
    assert {"warning", "failed", "xfailed"} <= set(calls.values())
    assert "# XFAIL known failure: ARC.DATA_FD: the fault returns a data_fd here" in text


def test_an_interrupted_run_is_not_a_success(kunit_parser: ModuleType) -> None:
    text = render([rec("suites/test_x.py::test_c")], RunStatus.INTERRUPTED)
    main = parse(kunit_parser, text)
    assert main.status != kunit_parser.TestStatus.SUCCESS, text
    assert "not ok 2 run_complete" in text and "# run interrupted;" in text
