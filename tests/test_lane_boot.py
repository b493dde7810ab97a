"""The vng command line and the boot policy: retries, timeouts, KVM fallback (fake and tiny runners)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest

from lane import boot
from lane.accel import Accel
from lane.arch import ARCHES
from lane.errors import LaneError, LaneFailure
from lane.protocol import DONE_MARKER, START_MARKER

X86 = ARCHES["x86_64"]


def spec(accel: Accel = Accel.TCG, **kw: object) -> boot.BootSpec:
    base: dict[str, object] = dict(
        vng="/venv/bin/vng", kernel=Path("/cache/bzImage"),
        guest_command=("/venv/bin/python", "-m", "lane.guest_main", "--reports", "/r/lane dir"),
        cwd=Path("/work/main"), rwdirs=(Path("/r/lane dir"),), arch=X86, accel=accel, run_timeout=600.0)
    base.update(kw)
    return boot.BootSpec(**base)  # type: ignore[arg-type]


def test_tcg_command() -> None:
    cmd = boot.vng_command(spec(Accel.TCG))
    assert cmd[:3] == ["/venv/bin/vng", "--run", "/cache/bzImage"]
    assert "--disable-kvm" in cmd
    assert cmd[cmd.index("--memory") + 1] == X86.memory
    assert cmd[cmd.index("--cpus") + 1] == str(X86.cpus)
    assert cmd[cmd.index("--cwd") + 1] == "/work/main"
    assert cmd[cmd.index("--rwdir") + 1] == "/r/lane dir"
    assert cmd[-2] == "--exec"
    assert shlex.split(cmd[-1]) == list(spec().guest_command)


def test_kvm_command_differs_only_by_disable_kvm() -> None:
    kvm, tcg = boot.vng_command(spec(Accel.KVM)), boot.vng_command(spec(Accel.TCG))
    assert "--disable-kvm" not in kvm
    assert [a for a in tcg if a != "--disable-kvm"] == kvm


def test_boot_timeouts_follow_the_accelerator() -> None:
    assert spec(Accel.KVM).boot_timeout == X86.boot_timeout_kvm
    assert spec(Accel.TCG).boot_timeout == X86.boot_timeout_tcg


class FakeRunner:
    """Replays a list of results; records each command it was given."""

    def __init__(self, *results: boot.RunResult) -> None:
        self.results = list(results)
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], *, boot_timeout: float, run_timeout: float) -> boot.RunResult:
        self.calls.append(cmd)
        return self.results.pop(0)


SILENT = boot.RunResult(returncode=255)
HUNG = boot.RunResult(returncode=None, timed_out="boot")
OK = boot.RunResult(returncode=0, lines=[START_MARKER + "\n", DONE_MARKER + "\n"], printed=True,
                    started=True, finished=True)
NOISY = boot.RunResult(returncode=1, lines=["Kernel panic - not syncing\n"], printed=True)


def test_silent_boot_is_retried() -> None:
    runner = FakeRunner(SILENT, SILENT, OK)
    logged: list[str] = []
    assert boot.boot(spec(), runner, attempts=3, log=logged.append) is OK
    assert len(runner.calls) == 3
    assert sum("retrying" in m for m in logged) == 2


def test_silent_boots_run_out() -> None:
    runner = FakeRunner(SILENT, HUNG, SILENT)
    with pytest.raises(LaneError) as exc:
        boot.boot(spec(), runner, attempts=3, log=lambda m: None)
    assert exc.value.code is LaneFailure.BOOT_FAILED
    assert "3 attempts" in str(exc.value)
    assert len(runner.calls) == 3


def test_a_boot_that_printed_is_not_retried() -> None:
    runner = FakeRunner(NOISY, OK)
    with pytest.raises(LaneError) as exc:
        boot.boot(spec(), runner, attempts=3, log=lambda m: None)
    assert exc.value.code is LaneFailure.BOOT_FAILED
    assert "Kernel panic" in str(exc.value)
    assert len(runner.calls) == 1


def test_kvm_guess_falls_back_to_tcg() -> None:
    runner = FakeRunner(HUNG, OK)
    res, used = boot.boot_with_fallback(spec(Accel.KVM), runner, fallback=True, log=lambda m: None)
    assert (res, used) == (OK, Accel.TCG)
    assert "--disable-kvm" not in runner.calls[0]
    assert "--disable-kvm" in runner.calls[1]


def test_kvm_that_works_is_kept() -> None:
    runner = FakeRunner(OK)
    assert boot.boot_with_fallback(spec(Accel.KVM), runner, fallback=True) == (OK, Accel.KVM)


def test_forced_kvm_does_not_fall_back() -> None:
    runner = FakeRunner(HUNG, HUNG)
    with pytest.raises(LaneError):
        boot.boot_with_fallback(spec(Accel.KVM), runner, fallback=False, attempts=2, log=lambda m: None)
    assert all("--disable-kvm" not in c for c in runner.calls)


# The real runner, on a stand-in for vng: a Python one-liner.
def _script(body: str) -> list[str]:
    return [sys.executable, "-c", f"import sys, time\n{body}"]


def test_runner_sees_markers_and_exit_status() -> None:
    out: list[str] = []
    res = boot.subprocess_runner(out.append)(
        _script(f"print('boot noise'); print({START_MARKER!r}); print({DONE_MARKER!r}); sys.exit(3)"),
        boot_timeout=30, run_timeout=30)
    assert (res.returncode, res.started, res.finished, res.timed_out, res.printed) == (3, True, True, "", True)
    assert out == ["boot noise\n", START_MARKER + "\n", DONE_MARKER + "\n"]
    assert res.start_seconds is not None


def test_runner_kills_a_boot_that_never_starts() -> None:
    t0 = time.monotonic()
    res = boot.subprocess_runner(lambda line: None)(_script("time.sleep(60)"), boot_timeout=1, run_timeout=30)
    assert time.monotonic() - t0 < 20
    assert (res.returncode, res.started, res.timed_out, res.printed) == (None, False, "boot", False)


def test_runner_kills_a_run_that_overstays() -> None:
    res = boot.subprocess_runner(lambda line: None)(
        _script(f"print({START_MARKER!r}, flush=True); time.sleep(60)"), boot_timeout=10, run_timeout=2)
    assert (res.started, res.finished, res.timed_out, res.returncode) == (True, False, "run", None)


def test_runner_forgives_a_slow_power_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boot, "GRACE_AFTER_DONE", 1.0)
    res = boot.subprocess_runner(lambda line: None)(
        _script(f"print({START_MARKER!r}); print({DONE_MARKER!r}, flush=True); time.sleep(60)"),
        boot_timeout=10, run_timeout=60)
    assert res.finished and not res.timed_out
    assert res.seconds < 20


def test_runner_missing_binary_is_no_tool() -> None:
    with pytest.raises(LaneError) as exc:
        boot.subprocess_runner()(["/nonexistent/vng"], boot_timeout=1, run_timeout=1)
    assert exc.value.code is LaneFailure.NO_TOOL
