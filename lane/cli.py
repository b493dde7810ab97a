"""``python -m lane``: build or reuse the kernel, boot it, run the suite in the guest, report.

After the runs the lane compares them test by test with the mock's mtty personality (lane/calibration.py)
and prints every difference (reported, not part of the verdict).

Exit status: the suite's (0 when every run passed, else the first failing run's pytest status);
28 (``baseline.SHORTFALL_EXIT``) when the suite passed but a suite file executed fewer test cases than
``lane/mtty-baseline.json``; or a ``LaneFailure`` code with one line on stderr when the lane itself could
not run: 4 bad input (as every entry point of the project; its numbers are checked as the suite's,
``vfio_mig_cts/numbers.py``), 21-27 the lane's own reasons.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lane import accel, arch, baseline, boot, bytecode, calibration, kbuild, protocol, results
from lane.errors import LaneError, LaneFailure
from vfio_mig_cts.errors import BadInput, Parser
from vfio_mig_cts.numbers import SECONDS, Bounds, NumberError, count

ROOT = Path(__file__).resolve().parent.parent
EXPECTATIONS = ROOT / "expectations" / "mtty.toml"
OPEN_PATHS = ("cdev", "legacy")
NUMBERS: dict[str, Bounds] = {"workers": count(1, 256), "suite_timeout": SECONDS, "timeout": SECONDS,
                              "attempts": count(1, 20), "jobs": count(1, 1024)}


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m lane", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Arguments after -- go to each pytest run in the guest.")
    p.add_argument("--smoke", action="store_true",
                   help="boot, create the mtty devices, open two of them, remove them (no suite)")
    p.add_argument("--kernel", type=Path, metavar="PATH",
                   help="a bzImage, or a kernel source tree to build with the lane's config fragment "
                        "(default: Debian's linux-source-6.12, built once and cached)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto: KVM when the host has hardware KVM (falls back to TCG if the guest does "
                        "not start), else TCG")
    p.add_argument("--reports", default=str(results.default_reports(ROOT)), metavar="DIR",
                   help="where the guest's results go (default: reports/lane/ of the checkout)")
    p.add_argument("--backend", default="vfio",
                   help="the suite's --backend in the guest (default: vfio; mock proves the lane without it)")
    p.add_argument("--workers", default=None, metavar="N",
                   help="xdist workers, one device under test each (default: the guest's CPUs)")
    p.add_argument("--open-path", action="append", choices=OPEN_PATHS, default=[],
                   help="run only this open path (repeatable; default: cdev then legacy)")
    p.add_argument("--expectations", action="append", type=Path, default=[], metavar="FILE",
                   help=f"expectation file (default: {EXPECTATIONS.relative_to(ROOT)} if it exists)")
    p.add_argument("--suite-timeout", default=1800.0, metavar="S",
                   help="seconds one conformance run may take in the guest before it is killed")
    p.add_argument("--timeout", default=None, metavar="S",
                   help="seconds the whole guest may take, boot included (default: derived)")
    p.add_argument("--attempts", default=3, metavar="N", help="boots to try when one prints nothing (1-20)")
    p.add_argument("--jobs", default=None, metavar="N", help="make -j for a kernel build")
    p.add_argument("--no-hazards", action="store_true",
                   help="skip the hazard stage (each case known to hang or crash some kernels run alone on a "
                        "fresh device, contained; on by default with --backend vfio)")
    p.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    try:
        args = parser().parse_args(argv)
    except BadInput as exc:
        raise LaneError(LaneFailure.USAGE, str(exc)) from None
    if args.pytest_args:
        raise LaneError(LaneFailure.USAGE, f"unexpected arguments {args.pytest_args}: pytest's go after --")
    args.pytest_args = extra
    if args.kernel is not None:
        args.kernel = args.kernel.expanduser().resolve()
        if not (args.kernel.is_file() or (args.kernel / "Makefile").is_file()):
            raise LaneError(LaneFailure.USAGE, f"--kernel {args.kernel}: neither a kernel image nor a source tree")
    for e in args.expectations:
        if not e.is_file():
            raise LaneError(LaneFailure.USAGE, f"--expectations {e}: no such file")
    args.expectations = [e.resolve() for e in args.expectations]
    if not args.expectations and EXPECTATIONS.is_file():
        args.expectations = [EXPECTATIONS]
    for dest, bounds in NUMBERS.items():
        value = getattr(args, dest)
        if value is not None:
            try:
                setattr(args, dest, bounds.parse("--" + dest.replace("_", "-"), value))
            except NumberError as exc:
                raise LaneError(LaneFailure.USAGE, str(exc)) from None
    args.reports = _reports(args.reports)
    return args


def _reports(given: str) -> Path:
    """``--reports``: relative to the caller's directory, a folder the lane can write."""
    if not given.strip():
        raise LaneError(LaneFailure.USAGE, "--reports needs a folder")
    folder = Path(given).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise LaneError(LaneFailure.USAGE, f"--reports {given}: {folder} is not a folder: name a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaneError(LaneFailure.USAGE, f"--reports {given}: cannot create {folder}: "
                                           f"{exc.strerror or exc}: name a folder you can write") from None
    return folder


def find_vng() -> str:
    beside = Path(sys.executable).with_name("vng")
    found = str(beside) if beside.exists() else shutil.which("vng")
    if not found:
        raise LaneError(LaneFailure.NO_TOOL, "vng not found: pip install -e '.[lane]' (virtme-ng)")
    return found


def preflight(settings: arch.ArchSettings, backend: str | None) -> str:
    """The tools the lane needs before it costs a build: vng, QEMU, udev, and (full mode) the backend."""
    vng = find_vng()
    if not shutil.which(settings.qemu):
        raise LaneError(LaneFailure.NO_TOOL, f"{settings.qemu} not found: apt-get install qemu-system-x86")
    if not shutil.which("udevadm"):
        raise LaneError(LaneFailure.NO_TOOL, "udevadm not found (vng --exec prints nothing without it): "
                                             "apt-get install udev")
    if backend == "vfio" and not (ROOT / "vfio_mig_cts" / "backends" / "vfio" / "factory.py").is_file():
        raise LaneError(LaneFailure.NO_TOOL, "the vfio backend (vfio_mig_cts/backends/vfio/factory.py) is missing: "
                                             "run python -m lane --smoke")
    return vng


def guest_command(args: argparse.Namespace, workers: int) -> tuple[str, ...]:
    cmd = [sys.executable, "-m", "lane.guest_main", "--reports", str(args.reports),
           "--mode", "smoke" if args.smoke else "full", "--workers", str(workers),
           "--suite-timeout", str(args.suite_timeout), "--python", sys.executable,
           "--backend", args.backend]
    for p in args.open_path:
        cmd += ["--open-path", p]
    if hazard_stage(args):
        cmd.append("--hazards")
    for e in args.expectations:
        cmd += ["--expectations", str(e)]
    for a in args.pytest_args:
        cmd.append(f"--pytest-arg={a}")
    return tuple(cmd)


def hazard_stage(args: argparse.Namespace) -> bool:
    """The hazard stage runs after a full run on the real backend unless ``--no-hazards``."""
    return not args.smoke and args.backend == "vfio" and not args.no_hazards


def expected_runs(args: argparse.Namespace) -> list[str]:
    if args.smoke:
        return ["smoke"]
    return (list(args.open_path) or list(OPEN_PATHS)) + (["hazards"] if hazard_stage(args) else [])


def run_timeout(args: argparse.Namespace, settings: arch.ArchSettings) -> float:
    if args.timeout is not None:
        return float(args.timeout)
    boot_margin = settings.boot_timeout_tcg + 120.0
    return boot_margin if args.smoke else boot_margin + args.suite_timeout * len(expected_runs(args))


def baseline_check(args: argparse.Namespace, status: int) -> tuple[int, list[str], dict[str, object]]:
    """The coverage floor after a full run: (status, lines to print, what lane.json records).

    Judged only for the whole suite on mtty (``--backend vfio``, no pytest arguments); a shortfall turns
    a passing verdict into ``baseline.SHORTFALL_EXIT`` and leaves a failing one as it is.
    """
    if args.smoke or args.backend != "vfio" or args.pytest_args:
        return status, [], {"checked": False}
    if not baseline.BASELINE.is_file():
        return status, [f"baseline: {baseline.BASELINE} missing: write it with {baseline.UPDATE_HINT}"], \
            {"checked": False}
    try:
        cmp = baseline.check(args.reports, expected_runs(args))
    except baseline.BaselineError as exc:
        return (status or baseline.SHORTFALL_EXIT), [f"baseline: {exc}"], {"checked": False, "error": str(exc)}
    record: dict[str, object] = {"checked": True, "fewer": [d.text() for d in cmp.fewer],
                                 "more": [d.text() for d in cmp.more]}
    lines = cmp.lines() or ["baseline: met (every suite executed at least its baseline count of cases)"]
    return (status if cmp.ok else (status or baseline.SHORTFALL_EXIT)), lines, record


def calibration_check(args: argparse.Namespace,
                      model: Callable[[list[Path]], dict[str, calibration.Result]] = calibration.run_model,
                      ) -> tuple[list[str], dict[str, object]]:
    """The mtty personality against this run, test by test (lane/calibration.py): the lines to print and
    what lane.json records. Reported, not judged: the verdict stays the suite's. Only for the whole suite
    on mtty (``--backend vfio``, no pytest arguments)."""
    if args.smoke or args.backend != "vfio" or args.pytest_args:
        return [], {"checked": False}
    try:
        diffs = calibration.calibrate(args.reports, model(list(args.expectations)),
                                      tuple(args.open_path) or OPEN_PATHS)
    except (calibration.CalibrationError, OSError, subprocess.SubprocessError) as exc:
        return [f"calibration: not done: {exc}"], {"checked": False, "error": str(exc)}
    return calibration.report(diffs), {"checked": True, "differences": [d.line() for d in diffs]}


def run(args: argparse.Namespace, runner: boot.Runner | None = None) -> int:
    t0 = time.monotonic()
    settings = arch.host_arch()
    vng = preflight(settings, None if args.smoke else args.backend)
    kernel = kbuild.user_kernel(args.kernel, args.jobs) if args.kernel else kbuild.ensure_kernel(args.jobs)
    choice = accel.choose(settings, accel.read_host_facts(), args.accel)
    print(f"lane: kernel {kernel.bzimage} ({kernel.release}); accelerator {choice.accel.value}: {choice.reason}",
          flush=True)
    results.prepare(args.reports)
    print(f"lane: bytecode for the guest compiled in {bytecode.compile_tree(ROOT):.1f} s", flush=True)
    if kernel.config.is_file() and kernel.config != kernel.bzimage:
        shutil.copyfile(kernel.config, args.reports / protocol.KERNEL_CONFIG)
    workers = args.workers or settings.cpus
    spec = boot.BootSpec(vng=vng, kernel=kernel.bzimage, guest_command=guest_command(args, workers), cwd=ROOT,
                         rwdirs=(args.reports,), arch=settings, accel=choice.accel,
                         run_timeout=run_timeout(args, settings))
    t_boot = time.monotonic()
    res, used = boot.boot_with_fallback(spec, runner or boot.subprocess_runner(),
                                        fallback=args.accel == "auto", attempts=args.attempts)
    guest_seconds = time.monotonic() - t_boot
    record: dict[str, object] = {
        "kernel": str(kernel.bzimage), "release": kernel.release, "accel": used.value,
        "accel_reason": choice.reason, "boot_to_command_s": round(res.start_seconds or 0.0, 1),
        "guest_s": round(guest_seconds, 1), "vng_exit": res.returncode, "timed_out": res.timed_out,
        "command": boot.vng_command(dataclasses.replace(spec, accel=used))}
    lost = (f"killed after {spec.run_timeout:.0f} s; " if res.timed_out else "") + f"last output: {res.tail(3)}"
    try:
        guest = results.read_guest_result(args.reports)
        status, summaries = results.verdict(guest, args.reports, expected_runs(args), lost)
    except LaneError as exc:
        record["verdict"] = exc.code.name
        (args.reports / results.HOST_RECORD).write_text(json.dumps(record, indent=1) + "\n")
        raise
    release = str((guest or {}).get("release") or kernel.release)  # a user's bzImage: what the guest saw
    status, baseline_lines, record["baseline"] = baseline_check(args, status)
    calibration_lines, record["calibration"] = calibration_check(args)
    record["release"], record["verdict"] = release, status
    record["total_s"] = round(time.monotonic() - t0, 1)
    (args.reports / results.HOST_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nlane: {release} under {used.value}: guest command after {res.start_seconds or 0:.1f} s, "
          f"guest done after {guest_seconds:.1f} s; reports in {args.reports}")
    for s in summaries:
        print(f"lane: {s.line()}")
    for line in baseline_lines + calibration_lines:
        print(f"lane: {line}")
    print(f"lane: {'PASS' if status == 0 else 'FAIL'} (exit {status})", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(sys.argv[1:] if argv is None else argv))
    except LaneError as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.code.name
        print(f"lane: {exc.code.name} (exit {int(exc.code)}): {first}", file=sys.stderr, flush=True)
        return int(exc.code)
    except KeyboardInterrupt:
        print("lane: interrupted", file=sys.stderr)
        return 130
