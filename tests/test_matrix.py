"""The conformance matrix (terminal and SVG), the families view, and the Allure/JUnit renderers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.records import arc, rec, run
from vfio_mig_cts.faults.suite_run import run_suite
from vfio_mig_cts.reports import allure, junit
from vfio_mig_cts.reports.matrix import (
    families,
    families_svg,
    grid_lines,
    grid_svg,
    grids,
    safe_name,
    side_by_side,
    terminal_lines,
    write_svgs,
)
from vfio_mig_cts.reports.record import Finding

SVG = "{http://www.w3.org/2000/svg}"


def cell_fills(svg_text: str) -> dict[str, str]:
    """The fill of every grid cell, by its tooltip's first line (``FROM -> TO: outcome``)."""
    root = ET.fromstring(svg_text)
    out = {}
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        rect = g.find(f"{SVG}rect")
        if title is not None and rect is not None and title.text and "->" in title.text:
            out[title.text.split(":")[0]] = rect.get("fill", "")
    return out


def test_arc_ids_make_one_grid_per_device_and_feature_set() -> None:
    records = [arc("p2p+pre_copy", "RUNNING", "STOP"), arc("stop_copy", "STOP", "RUNNING", "failed"),
               arc("stop_copy", "STOP", "0xffffffff"), arc("stop_copy", "ERROR", "8", "skipped"),
               arc("stop_copy", "STOP", "RUNNING", device="dev1"),
               rec("suites/test_plumbing.py::test_argsz[stop_copy]", device="dev0")]
    gs = grids(records)
    assert [(g.device, g.feature_set) for g in gs] == [("dev0", "stop_copy"), ("dev0", "p2p+pre_copy"),
                                                       ("dev1", "stop_copy")]
    g = gs[0]
    assert g.rows() == ["STOP", "ERROR"]
    assert g.cells[("STOP", "RUNNING")].outcome.value == "failed"
    assert ("ERROR", "8") in g.cells and ("STOP", "0xffffffff") in g.cells
    lines = grid_lines(g)
    assert lines[0].split() == ["stop_copy", "RUN", "8", "0xff"]
    assert lines[1].split() == ["STOP", "F", "."]
    assert lines[2].split() == ["ERROR", "s"]
    assert "1 failed" in lines[-1]


def test_every_outcome_has_its_colour_and_symbol() -> None:
    kinds = ["passed", "failed", "warning", "skipped", "hazard", "xfailed", "xpassed", "error"]
    frms = ["RUNNING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P", "STOP", "STOP_COPY", "RESUMING", "ERROR"]
    records = [arc("p2p+pre_copy", f, "STOP", k) for f, k in zip(frms, kinds, strict=True)]
    g = grids(records)[0]
    fills = cell_fills(grid_svg(g))
    assert len(set(fills.values())) == len(kinds)
    assert [ln.split()[1] for ln in grid_lines(g)[1:-1]] == [".", "F", "W", "s", "H", "x", "X", "E"]


def test_svg_is_valid_xml_and_lists_what_is_wrong() -> None:
    failed = arc("p2p", "STOP", "RUNNING", "failed")
    failed.findings = (Finding("ARC.DATA_FD", "must", "x:1", "q", "no data_fd <&>", "a data_fd"),)
    g = grids([failed, arc("p2p", "STOP", "STOP")])[0]
    text = grid_svg(g)
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "F STOP -> RUNNING: ARC.DATA_FD (must): expected no data_fd <&>; observed a data_fd" in texts
    assert "device dev0 (driver drv)" in texts and "feature set p2p" in texts


def test_families_count_a_test_against_the_family_whose_rule_broke() -> None:
    argsz = Finding("FEAT.ARGSZ", "must", "x:1", "q", "e", "o")
    shortest = Finding("ARC.SHORTEST_PATH", "should", "x:1", "q", "e", "o")
    r = rec("suites/test_x.py::t", "failed", device="d", findings=(argsz,), rules=("ARC.TRANSITION", "FEAT.ARGSZ"))
    w = rec("suites/test_x.py::u", "warning", device="d", findings=(shortest,))
    table = families([r, w])["d"]
    assert table["plumbing"]["failed"] == 1
    assert table["arcs"]["passed"] == 1 and table["arcs"]["warning"] == 1
    assert set(table) >= {"arcs", "plumbing", "precopy", "end of stream", "fd lifecycle", "data size", "integrity",
                          "resume validation", "reset", "close/reopen"}
    ET.fromstring(families_svg("d", "drv", table))


def test_write_svgs_names_files_by_device_and_feature_set(tmp_path: Path) -> None:
    written = write_svgs([arc("p2p+pre_copy", "RUNNING", "STOP", device="0000:3b:00.1")], tmp_path)
    assert sorted(p.name for p in written) == ["matrix-0000-3b-00.1-families.svg",
                                               "matrix-0000-3b-00.1-p2p+pre_copy.svg"]
    assert safe_name("a b/c") == "a-b-c"


def test_side_by_side_fits_the_width() -> None:
    blocks = [["a" * 10, "b"], ["c" * 10], ["d" * 10]]
    assert side_by_side(blocks, 30, gap=2) == ["aaaaaaaaaa  cccccccccc", "b", "", "dddddddddd", ""]


def test_problem_lines_wrap_instead_of_cutting() -> None:
    failed = arc("p2p", "STOP", "RUNNING", "failed")
    failed.findings = (Finding("ARC.DATA_FD", "must", "x:1", "q", "no data_fd " + "x" * 120, "the END"),)
    lines = terminal_lines([failed], 80)
    problem = [line for line in lines if line.startswith(("  F ", "      "))]
    assert len(problem) >= 2 and all(len(line) <= 80 for line in problem), problem
    assert "the END" in problem[-1]


def test_junit_gets_a_testsuite_per_device() -> None:
    tests = [rec("suites/test_arcs.py::test_a", device="A"), rec("suites/test_arcs.py::test_a", "failed",
                                                                  "boom", device="B")]
    root = ET.fromstring(junit.render(run(tests)))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"vfio-mig-cts@A", "vfio-mig-cts@B"}
    assert suites["vfio-mig-cts@B"].get("failures") == "1" and suites["vfio-mig-cts@A"].get("failures") == "0"
    assert [c.get("name") for c in root.iter("testcase")] == ["test_a @A", "test_a @B"]
    one = ET.fromstring(junit.render(run([rec("suites/test_arcs.py::t")])))
    assert [c.get("name") for c in one.iter("testcase")] == ["t"]


def test_categories_are_the_same_in_both_allure_formats() -> None:
    names = {c["name"] for c in allure.allure2_categories()}
    assert {"driver violates a must", "should/convention warning", "kernel messages", "known failure",
            "unexpected pass", "hazard not run", "environment or suite error"} == names
    assert {c["name"] for c in allure.allure3_config()["categories"]} == names


def test_environment_properties_escape_keys_and_values(tmp_path: Path) -> None:
    allure.write(run([rec("suites/test_x.py::t", device="0000:3b:00.1")]), tmp_path, [])
    text = (tmp_path / "environment.properties").read_text()
    assert "host1.device.1=0000:3b:00.1\n" in text and "host1.run.status=complete\n" in text


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reports = tmp_path_factory.mktemp("reports")
    run = run_suite(reports, "--fault", "passes-through-saving-state", "-n", "2",
                    paths=("suites/test_arcs.py",))
    assert run.returncode == 1, run.output[-3000:]
    assert "vfio-mig-cts: conformance matrix" in run.output and "vfio-mig-cts: rule families" in run.output
    return reports


def test_a_run_under_xdist_writes_the_matrix_images(fault_run: Path) -> None:
    names = sorted(p.name for p in fault_run.glob("matrix-*.svg"))
    assert names == ["matrix-mock-dut-families.svg", "matrix-mock-dut-p2p+pre_copy.svg", "matrix-mock-dut-p2p.svg",
                     "matrix-mock-dut-pre_copy.svg", "matrix-mock-dut-stop_copy.svg"]
    results = json.loads((fault_run / "results.json").read_text())["results"]
    fills = cell_fills((fault_run / "matrix-mock-dut-p2p.svg").read_text())
    p2p = {r["nodeid"]: r["outcome"] for r in results if "test_arc[p2p-" in r["nodeid"]}
    assert len(fills) == len(p2p) == 60
    for nodeid, outcome in p2p.items():
        frm, to = nodeid.split("[p2p-", 1)[1].rstrip("]").split("->")
        colour = {"passed": "#7cc47f", "failed": "#e0483e", "warning": "#f2b233"}[outcome]
        assert fills[f"{frm} -> {to}"] == colour, nodeid


def test_a_run_writes_allure_environment_categories_and_attachments(fault_run: Path) -> None:
    allure = fault_run / "allure-results"
    props = (allure / "environment.properties").read_text()
    for key in ("backend=mock", "device.1=mock-dut", "device.1.driver=mock", "feature_sets=stop_copy",
                "kernel.release=", "kernel.profile=debian-6.12.117"):
        assert key in props, props
    json.loads((allure / "categories.json").read_text())
    attached = [a["name"] for g in allure.glob("*-globals.json") for a in json.loads(g.read_text())["attachments"]]
    assert sorted(attached) == sorted(p.stem for p in fault_run.glob("matrix-*.svg"))
    result = next(json.loads(p.read_text()) for p in allure.glob("*-result.json")
                  if "test_arc[p2p-STOP->RUNNING]" in p.read_text())
    labels = {(label["name"], label["value"]) for label in result["labels"]}
    assert ("parentSuite", "mock-dut") in labels and ("feature", "arcs") in labels
    assert ("outcome", "failed") in labels
    assert result["statusDetails"]["message"].startswith("FAIL: ARC.")
    assert "> If the new_state starts a new data transfer session" in result["description"]
