"""The kernel-health plugin part (fixtures/health.py): kernel lines turn tests into errors.

The conformance plugin runs in a child pytest against ``create`` below: a backend whose one device
logs whatever kernel lines a test asks it to.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from fixtures.health import describe, order_messages
from vfio_mig_cts.backends.loader import BackendOptions
from vfio_mig_cts.backends.protocol import KERNEL_PROFILES, FeatureReply, KernelProfile, Role
from vfio_mig_cts.uapi.vfio import State

ROOT = Path(__file__).resolve().parent.parent
NAME = "0000:3b:00.1"


class NoisyDevice:
    """Always RUNNING; ``pending`` is what the kernel "logged" since the last look."""

    name = NAME
    driver = "noisy"

    def __init__(self) -> None:
        self.pending: list[str] = []

    def feature(self, flags: int, payload: bytes = b"", argsz: int | None = None) -> FeatureReply:
        return FeatureReply(struct.pack("<Ii", State.RUNNING, -1) + payload[8:])

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take_kernel_messages(self) -> list[str]:
        out, self.pending = self.pending, []
        return out


class NoisyBackend:
    name = "noisy"

    def __init__(self) -> None:
        self.dev = NoisyDevice()

    def feature_sets(self) -> list[int]:
        return [1]

    def open(self, role: Role, flags: int) -> NoisyDevice:
        return self.dev

    def kernel_profile(self) -> KernelProfile:
        return KERNEL_PROFILES["debian-6.12.117"]

    def close(self) -> None:
        pass


def create(options: BackendOptions) -> NoisyBackend:
    return NoisyBackend()


SUITE = '''
import pytest

def test_clean(dut):
    pass

def test_warns(dut):
    dut.pending.append("WARNING: CPU: 0 PID: 1 at drivers/vfio/vfio_main.c:838 vfio_mig_get_next_state")

def test_names_its_device_first(dut):
    dut.pending += ["Oops: 0000 [#1] PREEMPT SMP", "BUG: kernel NULL pointer dereference [device +pci:0000:3b:00.1]"]

def test_fails_and_warns(dut):
    dut.pending.append("BUG: soft lockup - CPU#0 stuck for 22s!")
    assert 1 == 2

def test_skips_after_a_warning(dut):
    dut.pending.append("tainted changed from 0 to 512")
    pytest.skip("nothing to do")

def test_clean_after(dut):
    pass
'''


def _run(tmp_path: Path) -> tuple[int, str, dict[tuple[str, str], dict[str, Any]]]:
    suite = tmp_path / "test_noisy.py"
    suite.write_text(SUITE)
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
           "-c", str(ROOT / "pyproject.toml"), "-p", "fixtures.plugin", "-p", "fixtures.outcomes",
           "-p", "fixtures.results", "--backend", "tests.test_vfio_health:create", "--reports", str(reports)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    results = json.loads((reports / "results.json").read_text())["results"]
    by = {(r["nodeid"].split("::")[-1].split("[")[0], r["when"]): r for r in results}  # one record per test
    return proc.returncode, proc.stdout + proc.stderr, by


def test_kernel_lines_make_tests_errors(tmp_path: Path) -> None:
    code, out, by = _run(tmp_path)
    assert code == 1, out[-3000:]
    assert by[("test_clean", "call")]["outcome"] == "passed"
    assert by[("test_clean_after", "call")]["outcome"] == "passed"
    warns = by[("test_warns", "call")]
    assert warns["outcome"] == "error"  # kernel lines make the test an ERROR, not a rule failure
    assert "KERNEL: 1 kernel message(s) during the test" in warns["message"]
    assert "(the test itself passed)" in warns["message"]
    assert "ERROR at call of test_warns" in out
    first = by[("test_names_its_device_first", "call")]["message"]
    assert first.index("BUG: kernel NULL pointer") < first.index("Oops: 0000")
    assert "1 naming 0000:3b:00.1" in first
    failed = by[("test_fails_and_warns", "call")]["message"]
    assert "soft lockup" in failed and "the test itself failed" in failed and "assert 1 == 2" in failed
    teardown = by[("test_skips_after_a_warning", "teardown")]  # the skip, then kernel lines at teardown
    assert teardown["outcome"] == "error" and "tainted changed from 0 to 512" in teardown["message"]
    assert "(the test itself skipped:" in teardown["message"]
    assert len(by) == 6
    assert "4 errors" in out or "errors" in out.splitlines()[-1], out[-500:]


def test_lines_naming_the_device_come_first() -> None:
    lines = ["WARNING: a", f"mtty {NAME.upper()}: b", "BUG: c [device +pci:3b:00.1]"]
    assert order_messages(lines, [NAME, "3b:00.1"]) == [lines[1], lines[2], lines[0]]
    text = describe(NoisyDevice(), lines, "during the test")
    assert text.startswith("KERNEL: 3 kernel message(s) during the test (2 naming 0000:3b:00.1; driver noisy)")
