"""Behaviours the header allows pass the suite strictly: no false failure (tests/allowed_variants.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.allowed_variants import VARIANTS
from vfio_mig_cts.faults.suite_run import run_suite

FAST = ("-p", "no:allure_pytest", "-p", "no:junitxml")

pytestmark = pytest.mark.timeout(900)  # each test runs the whole suite in a child pytest


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_allowed_variant_passes_strictly(name: str, tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--backend", f"tests.allowed_variants:{name}", "--strict-rules", *FAST)
    bad = [f"{r['nodeid']}: {r['outcome']}: {str(r['message'])[:600]}" for r in run.results
           if r["outcome"] not in ("passed", "skipped")]
    assert run.returncode == 0 and not bad, "\n".join(bad[:5]) or run.output[-3000:]
    assert len(run.results) >= 300
