"""Booting the guest with virtme-ng: the command line, a bounded runner, and the retry policy.

``vng --run BZIMAGE`` boots the kernel with the host's filesystem as the guest's root (a
copy-on-write snapshot); ``--rwdir`` makes the reports directory writable through to the host. A
boot that printed nothing is retried (virtme-ng exits 255 silently about once in 34 boots); a
boot that never reaches the guest command within the boot timeout is killed, never waited on.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from lane.accel import Accel
from lane.arch import ArchSettings
from lane.errors import LaneError, LaneFailure
from lane.protocol import DONE_MARKER, GRACE_AFTER_DONE, START_MARKER

KEEP_LINES = 400  # lines of guest output kept in memory for error messages


@dataclass(frozen=True)
class BootSpec:
    """One guest run: which kernel, what to run in it, and how."""

    vng: str
    kernel: Path
    guest_command: tuple[str, ...]
    cwd: Path
    rwdirs: tuple[Path, ...]
    arch: ArchSettings
    accel: Accel
    run_timeout: float  # seconds for the whole run, boot included

    @property
    def boot_timeout(self) -> float:
        return self.arch.boot_timeout_kvm if self.accel is Accel.KVM else self.arch.boot_timeout_tcg


def vng_command(spec: BootSpec) -> list[str]:
    """The ``vng`` command line for ``spec`` (pure: what runs is decided here and only here)."""
    cmd = [spec.vng, "--run", str(spec.kernel),
           "--memory", spec.arch.memory, "--cpus", str(spec.arch.cpus),
           "--cwd", str(spec.cwd)]
    if spec.accel is Accel.TCG:
        cmd.append("--disable-kvm")
    for d in spec.rwdirs:
        cmd += ["--rwdir", str(d)]
    cmd += list(spec.arch.vng_extra)
    cmd += ["--exec", shlex.join(spec.guest_command)]
    return cmd


@dataclass
class RunResult:
    """How one attempt ended."""

    returncode: int | None  # None: killed by us (see timed_out)
    lines: list[str] = field(default_factory=list)  # the last KEEP_LINES lines of output
    printed: bool = False  # anything at all came out
    started: bool = False  # the guest command's start marker came out
    finished: bool = False  # its done marker came out
    timed_out: str = ""  # "", "boot" (never started in time) or "run" (started, did not finish in time)
    seconds: float = 0.0
    start_seconds: float | None = None  # when the start marker came, from launch

    def tail(self, n: int = 5) -> str:
        return " | ".join(line.strip() for line in self.lines[-n:] if line.strip())


class Runner(Protocol):
    def __call__(self, cmd: list[str], *, boot_timeout: float, run_timeout: float) -> RunResult: ...


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group we started (vng and its qemu), politely, then not."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def subprocess_runner(echo: Callable[[str], None] = lambda line: print(line, end="", flush=True)) -> Runner:
    """A runner that starts ``cmd`` in its own process group, echoes its output, and enforces deadlines."""

    def run(cmd: list[str], *, boot_timeout: float, run_timeout: float) -> RunResult:
        t0 = time.monotonic()
        # vng runs virtme-run and friends from PATH: they sit next to it in the virtual environment.
        env = dict(os.environ)
        if os.path.isabs(cmd[0]):
            env["PATH"] = os.path.dirname(cmd[0]) + os.pathsep + env.get("PATH", "")
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
        except OSError as exc:
            raise LaneError(LaneFailure.NO_TOOL, f"cannot start {cmd[0]}: {exc}") from exc
        try:
            return _watch(proc, t0, boot_timeout, run_timeout)
        except BaseException:  # Ctrl-C included: never leave a guest behind
            _kill_group(proc)
            raise

    def _watch(proc: subprocess.Popen[bytes], t0: float, boot_timeout: float, run_timeout: float) -> RunResult:
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        res = RunResult(returncode=None)
        boot_deadline, deadline = t0 + boot_timeout, t0 + run_timeout
        eof = False
        while not eof:
            now = time.monotonic()
            limit = deadline if res.started else min(boot_deadline, deadline)
            if now >= limit:
                res.timed_out = "run" if res.started else "boot"
                _kill_group(proc)
                break
            try:
                line = lines.get(timeout=min(1.0, limit - now))
            except queue.Empty:
                continue
            if line is None:
                eof = True
                break
            res.printed = res.printed or bool(line.strip())
            res.lines.append(line)
            del res.lines[:-KEEP_LINES]
            if START_MARKER in line and not res.started:
                res.started, res.start_seconds = True, time.monotonic() - t0
            if DONE_MARKER in line and not res.finished:
                res.finished = True
                deadline = min(deadline, time.monotonic() + GRACE_AFTER_DONE)
            echo(line)
        if eof:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                res.timed_out = "run"
                _kill_group(proc)
        if res.finished and res.timed_out:
            res.timed_out = ""  # the guest finished; only the power-off lingered
        res.returncode = proc.returncode if not res.timed_out else None
        res.seconds = time.monotonic() - t0
        return res

    return run


def boot(spec: BootSpec, runner: Runner, attempts: int = 3,
         log: Callable[[str], None] = print) -> RunResult:
    """Run ``spec``, retrying attempts that never reached the guest command and printed nothing.

    An attempt that printed something but never started the guest command failed for a reason that
    a retry will not cure (a bad kernel, a vng error): that is ``BOOT_FAILED`` at once.
    """
    cmd = vng_command(spec)
    last: RunResult | None = None
    for attempt in range(1, attempts + 1):
        res = runner(cmd, boot_timeout=spec.boot_timeout, run_timeout=spec.run_timeout)
        if res.started:
            if attempt > 1:
                log(f"lane: boot attempt {attempt} reached the guest command")
            return res
        last = res
        why = (f"no guest command after {spec.boot_timeout:.0f} s" if res.timed_out
               else f"vng exited {res.returncode}")
        if res.printed and not res.timed_out:
            raise LaneError(LaneFailure.BOOT_FAILED,
                            f"guest did not boot ({spec.accel.value}, {why}): {res.tail()}")
        if attempt < attempts:
            log(f"lane: boot attempt {attempt}/{attempts} failed ({why}, "
                f"{'output: ' + res.tail(2) if res.printed else 'no output'}); retrying")
    assert last is not None
    why = f"no guest command after {spec.boot_timeout:.0f} s" if last.timed_out else f"vng exited {last.returncode}"
    raise LaneError(LaneFailure.BOOT_FAILED,
                    f"guest did not boot in {attempts} attempts ({spec.accel.value}, last: {why}"
                    f"{', output: ' + last.tail() if last.printed else ', no output'})")


def boot_with_fallback(spec: BootSpec, runner: Runner, fallback: bool, attempts: int = 3,
                       log: Callable[[str], None] = print) -> tuple[RunResult, Accel]:
    """Boot; if KVM was a guess (``fallback``) and the guest did not start under it, boot under TCG."""
    if spec.accel is Accel.KVM and fallback:
        try:
            return boot(spec, runner, attempts=1, log=log), Accel.KVM
        except LaneError as exc:
            log(f"lane: KVM boot failed ({exc}); falling back to TCG")
        spec = replace(spec, accel=Accel.TCG)
    return boot(spec, runner, attempts=attempts, log=log), spec.accel
