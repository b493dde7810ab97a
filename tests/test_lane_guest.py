"""The guest-side entry point, run on the host against a sysfs without mtty: it must report, not hang."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lane import protocol
from lane.cli import ROOT


def test_missing_mtty_is_reported_in_guest_json(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "lane.guest_main", "--reports", str(reports),
                           "--sysfs", str(tmp_path / "sys"), "--mode", "smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == protocol.START_MARKER and lines[-1] == protocol.DONE_MARKER
    result = json.loads((reports / protocol.GUEST_RESULT).read_text())
    assert result["failure"]["code"] == "NO_MTTY"
    assert result["runs"] == {}
    assert (reports / protocol.KERNEL_INFO).read_text().startswith("release: ")
    assert json.loads((reports / protocol.DEVICES).read_text())["smoke"][0]["role"] == "dut"
