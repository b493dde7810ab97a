"""A known kernel bug that oopses: the expectation file's ``kernel_messages = true`` (fixtures/health.py).

The reopen suite runs in a child pytest on the mock with the catalogue entry that simulates mtty's
RESUMING-close oops (``close-in-resuming-oops``): RESUME.FINAL_LOAD breaks (leaving RESUMING with no complete
stream must fail; the request never returns) and the mock logs the oops.
Without an entry the cases are ERRORs quoting the oops; with an entry for the rule they are still
ERRORs (the kernel lines are not explained by it); with ``kernel_messages = true`` they are expected
failures whose reason quotes the oops, and nothing is left for teardown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vfio_mig_cts.faults.suite_run import SuiteRun, run_suite
from vfio_mig_cts.judging.expectations import ExpectationError, load

ENTRY = '''
[[expect]]
rule = "RESUME.FINAL_LOAD"
tests = ["suites/test_reopen.py::test_reopen_device[*-RESUMING-*]"]
reason = "mtty 6.12.117 oopses leaving RESUMING after a close in RESUMING"
'''


def _run(tmp_path: Path, expectation: str | None) -> SuiteRun:
    args = ["--fault", "close-in-resuming-oops", "-k", "test_reopen_device and RESUMING"]
    if expectation is not None:
        path = tmp_path / "known.toml"
        path.write_text(expectation)
        args += ["--expectations", str(path)]
    return run_suite(tmp_path / "reports", *args, paths=("suites/test_reopen.py",), timeout=300)


def _calls(run: SuiteRun) -> list[dict[str, object]]:
    calls = [r for r in run.results if r["when"] == "call"]
    assert calls, run.output[-2000:]
    return calls


def test_without_an_entry_the_oops_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path, None)
    assert run.returncode == 1
    for r in _calls(run):
        assert r["outcome"] == "error", r
        assert "Oops: 0000" in str(r["message"]) and r["broken"] == ["RESUME.FINAL_LOAD"]


def test_an_entry_without_kernel_messages_leaves_the_oops_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path, ENTRY)
    assert run.returncode == 1
    # The known failure holds for the rule, but the oops it logged is not explained: the teardown's kernel
    # check makes the test an error that quotes it, and says the test itself was a known failure.
    assert run.results and all(r["when"] == "teardown" and r["outcome"] == "error" for r in run.results)
    assert all("Oops: 0000" in str(r["message"]) and "(the test itself xfailed:" in str(r["message"])
               for r in run.results)


def test_kernel_messages_true_quotes_the_oops_in_the_expected_failure(tmp_path: Path) -> None:
    run = _run(tmp_path, ENTRY + "kernel_messages = true\n")
    assert run.returncode == 0, run.output[-3000:]
    for r in _calls(run):
        assert r["outcome"] == "xfailed", r
        assert "known failure: RESUME.FINAL_LOAD" in str(r["message"]) and "Oops: 0000" in str(r["message"])
        assert "REOPEN.DEAD_FDS" in str(r["rules"]) and "REOPEN.DEAD_FDS" not in str(r["judged"])  # never reached
    assert not [r for r in run.results if r["outcome"] == "error"]
    table = run.output[run.output.index("results by rule"):]
    assert "RESUME.FINAL_LOAD" in table and "REOPEN.DEAD_FDS" not in table  # rules not reached are not "held"


def test_kernel_messages_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(ENTRY + 'kernel_messages = "yes"\n')
    with pytest.raises(ExpectationError, match="kernel_messages must be true or false"):
        load(path)
