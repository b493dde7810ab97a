"""Inside the guest: create the mtty devices, run the suite (or the smoke check), save what was seen.

Run by the host as ``<venv python> -m lane.guest_main --reports DIR ...`` through ``vng --exec``;
the guest sees the host's filesystem read-only at the same paths, except ``DIR`` (``--rwdir``) and
``/tmp`` (an overlay). Everything goes to ``DIR``; ``guest.json`` is written last, then the done
marker is printed, so the host can tell a finished guest from a lost one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lane import hazards, mdev, protocol
from lane.errors import LaneError, LaneFailure

ROOT = Path(__file__).resolve().parent.parent


def _say(msg: str) -> None:
    print(f"lane-guest: {msg}", flush=True)


def follow_kmsg(dest: Path) -> None:
    """Copy the kernel log to ``dest`` as it comes, so an oops before a hang still reaches the host."""

    def work() -> None:
        try:
            src = os.open("/dev/kmsg", os.O_RDONLY)
        except OSError as exc:
            dest.write_text(f"(cannot read /dev/kmsg: {exc})\n")
            return
        with dest.open("w") as out:
            while True:
                try:
                    rec = os.read(src, 8192).decode(errors="replace")
                except BrokenPipeError:  # records overwritten before we read them
                    continue
                except OSError:
                    return
                head, _, text = rec.partition(";")
                fields = head.split(",")
                ts = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
                body = text.split("\n", 1)[0]  # continuation lines are SUBSYSTEM=/DEVICE= metadata
                out.write(f"[{ts // 1_000_000:5d}.{ts % 1_000_000:06d}] {body}\n")
                out.flush()

    threading.Thread(target=work, daemon=True).start()


def save_kernel_info(reports: Path) -> str:
    u = os.uname()
    lines = [f"release: {u.release}", f"version: {u.version}", f"machine: {u.machine}"]
    for f in ("/proc/version", "/proc/cmdline"):
        with contextlib.suppress(OSError):
            lines.append(f"{f}: {Path(f).read_text().strip()}")
    (reports / protocol.KERNEL_INFO).write_text("\n".join(lines) + "\n")
    if Path("/proc/config.gz").exists():
        shutil.copyfile("/proc/config.gz", reports / (protocol.KERNEL_CONFIG + ".gz"))
    return u.release


def suite_command(args: argparse.Namespace, plan: mdev.DevicePlan, open_path: str, out: Path) -> list[str]:
    cmd = [args.python, "-m", "pytest", "suites", "--backend", args.backend, *plan.pytest_args(),
           "--open-path", open_path, "--reports", str(out), "-p", "no:cacheprovider"]
    if args.workers > 1:
        cmd += ["-n", str(args.workers)]
    for e in args.expectations:
        cmd += ["--expectations", e]
    return cmd + list(args.pytest_arg)


def run_suite(cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Run one conformance run, echoing and logging its output, killed after ``timeout`` seconds.

    A process stuck in the kernel (D state) survives SIGKILL and keeps its output open: the run is
    then given up on after a further 30 s, and the next one starts with fresh devices.
    """
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    _say("running " + " ".join(cmd))
    out = log.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line)
            out.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        rc: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _say(f"suite still running after {timeout:.0f} s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
    reader.join(30)
    out.close()
    return {"exit": None if timed_out or rc is None else rc, "timed_out": timed_out,
            "seconds": round(time.monotonic() - t0, 1), "command": cmd}


def _one_run(args: argparse.Namespace, fs: mdev.Sysfs, reports: Path, name: str,
             result: dict[str, Any], devices: dict[str, Any]) -> None:
    plan = mdev.plan(name, args.workers)
    devices[name] = [d.__dict__ for d in plan.devices]
    (reports / protocol.DEVICES).write_text(json.dumps(devices, indent=1) + "\n")
    mdev.create(fs, plan)
    _say(f"{name}: created " + ", ".join(f"{d.role}{d.index}={d.mdev_type}:{d.uuid}" for d in plan.devices))
    try:
        if args.mode == "smoke":
            from lane import smoke
            t0 = time.monotonic()
            found = smoke.run(fs, plan)
            (reports / protocol.SMOKE).write_text(json.dumps(found, indent=1) + "\n")
            for f in found:
                _say("smoke: " + ", ".join(f"{k}={v}" for k, v in f.items()))
            bad = [f for f in found if "error" in f or f.get("nodes") is False]
            result["runs"][name] = {"exit": 1 if bad else 0, "seconds": round(time.monotonic() - t0, 1)}
        else:
            out = reports / name
            out.mkdir(parents=True, exist_ok=True)
            result["runs"][name] = run_suite(suite_command(args, plan, name, out), out / protocol.PYTEST_LOG,
                                             args.suite_timeout)
    finally:
        problems = mdev.remove(fs, plan)
        if problems:
            result.setdefault("teardown_problems", []).extend(problems)
            _say(f"{name}: could not remove every device: " + "; ".join(problems))
        else:
            _say(f"{name}: devices removed")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lane.guest_main")
    p.add_argument("--reports", required=True, type=Path)
    p.add_argument("--mode", choices=("smoke", "full"), default="full")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backend", default="vfio")
    p.add_argument("--open-path", action="append", default=[], choices=("cdev", "legacy"))
    p.add_argument("--expectations", action="append", default=[])
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--suite-timeout", type=float, default=1800.0)
    p.add_argument("--sysfs", type=Path, default=Path("/sys"))
    p.add_argument("--pytest-arg", action="append", default=[])
    p.add_argument("--hazards", action="store_true",
                   help="after the runs, each hazard case alone on fresh devices (lane/hazards.py)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    _say("started")  # protocol.START_MARKER: the boot worked
    args = parse(sys.argv[1:] if argv is None else argv)
    reports: Path = args.reports
    reports.mkdir(parents=True, exist_ok=True)
    follow_kmsg(reports / protocol.DMESG)
    result: dict[str, Any] = {"mode": args.mode, "workers": args.workers, "runs": {}}
    devices: dict[str, Any] = {}
    try:
        result["release"] = save_kernel_info(reports)
        fs = mdev.Sysfs(args.sysfs)
        names = ["smoke"] if args.mode == "smoke" else (args.open_path or ["cdev", "legacy"])
        for name in names:
            _one_run(args, fs, reports, name, result, devices)
        if args.mode == "full" and args.hazards:
            path = (args.open_path or ["cdev"])[0]
            result["runs"][hazards.RUN] = hazards.run_stage(
                fs, reports, args.python, args.backend, path, args.expectations, args.pytest_arg,
                args.suite_timeout, run_suite, _say)
    except LaneError as exc:
        result["failure"] = {"code": exc.code.name, "message": str(exc)}
        _say(f"FAILED ({exc.code.name}): {exc}")
    except Exception as exc:  # anything else is a setup failure, reported, never a silent guest
        result["failure"] = {"code": LaneFailure.GUEST_SETUP.name, "message": f"{type(exc).__name__}: {exc}"}
        _say(f"FAILED: {type(exc).__name__}: {exc}")
    time.sleep(0.5)  # let the kmsg follower catch the last records
    (reports / protocol.GUEST_RESULT).write_text(json.dumps(result, indent=1) + "\n")
    _say("done")  # protocol.DONE_MARKER
    sys.stdout.flush()
    os._exit(0)  # a thread stuck in the kernel must not keep the guest up


if __name__ == "__main__":
    main()
