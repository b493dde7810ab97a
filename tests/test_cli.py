"""``./cts`` as a maintainer uses it: pytest's arguments, the caller's paths, --help, the suite's options.

Every case runs the real ``./cts`` in a subprocess from a folder outside the checkout (``tmp_path``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from vfio_mig_cts.errors import EXIT_HELP, Exit

ROOT = Path(__file__).resolve().parent.parent
CTS = str(ROOT / "cts")


def cts(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VFIO_SELFTESTS"))}
    return subprocess.run([CTS, "-p", "no:cacheprovider", *args], cwd=cwd, env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=300, check=False)


def nodeids(reports: Path) -> list[str]:
    return [r["nodeid"] for r in json.loads((reports / "results.json").read_text())["results"]]


def test_a_file_runs_that_file_and_relative_reports_are_the_callers(tmp_path: Path) -> None:
    proc = cts(tmp_path, "suites/test_reset.py", "-q", "--reports", "out")
    assert proc.returncode == 0, proc.stdout[-3000:]
    ids = nodeids(tmp_path / "out")  # the caller's out/, not the checkout's
    assert ids and all(i.startswith("suites/test_reset.py::") for i in ids), ids[:5]


def test_a_node_id_copied_from_a_failed_line_runs_just_that_test(tmp_path: Path) -> None:
    """From the same folder (pytest writes the id relative to it), or from the checkout's own log."""
    case = ["suites/test_arcs.py", "-k", "RUNNING and ERROR", "--fault", "accepts-error-target", "-q", "-rf",
            "--no-reports"]
    for where in (tmp_path, ROOT):
        first = cts(where, *case)
        assert first.returncode == Exit.TESTS_FAILED, first.stdout[-3000:]
        failed = re.findall(r"^FAILED (\S+)", first.stdout, re.M)
        assert len(failed) > 1, first.stdout[-3000:]
        again = cts(tmp_path, failed[0], "--fault", "accepts-error-target", "-q", "--reports", "out")
        assert again.returncode == Exit.TESTS_FAILED, again.stdout[-3000:]
        assert nodeids(tmp_path / "out") == ["suites/" + failed[0].split("suites/", 1)[1]]  # its id in reports


def test_options_with_values_and_no_test_argument_run_the_whole_suite(tmp_path: Path) -> None:
    """``--backend mock`` is an option and its value, not a test path: the suite runs (here, -k of it)."""
    proc = cts(tmp_path, "--backend", "mock", "--ioctl-timeout", "5", "-k", "test_reset_from", "-q", "--reports", "out")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {i.split("::")[0] for i in nodeids(tmp_path / "out")} == {"suites/test_reset.py"}


def test_lab_and_expectation_files_are_relative_to_the_caller(tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text('[run]\nreports = "lab-reports"\n')
    (tmp_path / "known.toml").write_text('[[expect]]\nrule = "ARC.ERROR_TARGET"\nreason = "known"\n'
                                         'tests = ["suites/test_arcs.py::test_arc[*->ERROR]"]\n')
    proc = cts(tmp_path, "suites/test_arcs.py", "-k", "RUNNING and ERROR", "--fault", "accepts-error-target",
               "--lab", "lab.toml", "--expectations", "known.toml", "-q")
    assert proc.returncode == 0, proc.stdout[-3000:]
    outcomes = {r["outcome"] for r in json.loads((tmp_path / "lab-reports" / "results.json").read_text())["results"]}
    assert "xfailed" in outcomes and "failed" not in outcomes, outcomes


def test_help_starts_with_the_subcommands_the_suites_options_and_the_exit_codes(tmp_path: Path) -> None:
    proc = cts(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("usage: ./cts")
    pytest_help = out.index("usage: __main__.py")
    for text in ("./cts selftest", "./cts lane", "./cts report", "--strict-rules", "--lab FILE", EXIT_HELP):
        assert -1 < out.find(text) < pytest_help, text


def test_no_matching_test_says_so_in_one_line(tmp_path: Path) -> None:
    proc = cts(tmp_path, "-k", "no_such_test_anywhere", "-q", "--no-reports")
    assert proc.returncode == Exit.NO_TESTS
    said = [ln for ln in proc.stdout.splitlines() if "no test matched" in ln]
    assert said == ["vfio-mig-cts: no test matched the selection (-k/-m/node ids)"], proc.stdout


def test_strict_rules_is_the_suites_option_and_pytests_strict_is_pytests(tmp_path: Path) -> None:
    """A should rule broken: a warning; --strict-rules makes it a failure; pytest's --strict does not."""
    case = ["suites/test_arcs.py::test_arc[p2p-RUNNING->STOP_COPY]", "--fault", "takes-longer-path", "-q",
            "--no-reports"]
    assert cts(tmp_path, *case).returncode == Exit.OK
    assert cts(tmp_path, *case, "--strict").returncode == Exit.OK
    assert cts(tmp_path, *case, "--strict-rules").returncode == Exit.TESTS_FAILED


def test_report_folders_are_relative_to_the_caller(tmp_path: Path) -> None:
    proc = subprocess.run([CTS, "report", "mine", "-o", "html"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == Exit.BAD_INPUT
    assert proc.stderr.strip() == f"allure-report: no folder {tmp_path / 'mine'}: run the suite first (./cts), or " \
                                  "name the results folder(s)"
