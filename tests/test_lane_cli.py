"""``python -m lane``'s argument handling and the guest command it builds (no guest booted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lane import cli, guest_main, mdev
from lane.arch import ARCHES
from lane.errors import LaneError, LaneFailure


def test_bad_kernel_path_is_usage(tmp_path: Path) -> None:
    with pytest.raises(LaneError) as exc:
        cli.parse(["--kernel", str(tmp_path / "nope")])
    assert exc.value.code is LaneFailure.USAGE
    (tmp_path / "tree").mkdir()
    with pytest.raises(LaneError):
        cli.parse(["--kernel", str(tmp_path / "tree")])  # a directory without a Makefile


def test_kernel_image_and_tree_accepted(tmp_path: Path) -> None:
    (tmp_path / "bzImage").write_bytes(b"\0")
    assert cli.parse(["--kernel", str(tmp_path / "bzImage")]).kernel == tmp_path / "bzImage"
    (tmp_path / "linux").mkdir()
    (tmp_path / "linux" / "Makefile").write_text("")
    assert cli.parse(["--kernel", str(tmp_path / "linux")]).kernel == tmp_path / "linux"


def test_main_prints_one_line_and_returns_the_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--kernel", str(tmp_path / "nope")]) == LaneFailure.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lane: USAGE (exit 4): --kernel")


def test_unknown_option_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--frobnicate"]) == LaneFailure.USAGE
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(LaneError):
        cli.parse(["stray"])
    with pytest.raises(LaneError):
        cli.parse(["--workers", "0"])
    with pytest.raises(LaneError):
        cli.parse(["--expectations", "/nonexistent.toml"])


def test_defaults_and_passthrough() -> None:
    args = cli.parse(["--smoke", "--", "-k", "arc", "-x"])
    assert args.smoke and args.pytest_args == ["-k", "arc", "-x"]
    assert args.reports == cli.ROOT / "reports" / "lane"
    assert args.accel == "auto" and args.kernel is None
    assert args.expectations == ([cli.EXPECTATIONS] if cli.EXPECTATIONS.is_file() else [])


def test_runs_and_timeouts() -> None:
    x86 = ARCHES["x86_64"]
    assert cli.expected_runs(cli.parse(["--smoke"])) == ["smoke"]
    assert cli.expected_runs(cli.parse([])) == ["cdev", "legacy", "hazards"]
    assert cli.expected_runs(cli.parse(["--open-path", "legacy"])) == ["legacy", "hazards"]
    assert cli.expected_runs(cli.parse(["--no-hazards"])) == ["cdev", "legacy"]
    assert cli.expected_runs(cli.parse(["--backend", "mock"])) == ["cdev", "legacy"]  # hazards always run there
    assert cli.run_timeout(cli.parse(["--timeout", "99"]), x86) == 99
    full = cli.run_timeout(cli.parse(["--suite-timeout", "100"]), x86)
    assert full == x86.boot_timeout_tcg + 120 + 300
    assert cli.run_timeout(cli.parse(["--smoke"]), x86) < full


def test_guest_command_round_trips_through_the_guest_parser(tmp_path: Path) -> None:
    exp = tmp_path / "e.toml"
    exp.write_text("")
    args = cli.parse(["--open-path", "cdev", "--expectations", str(exp), "--reports", str(tmp_path / "r"),
                      "--", "-k", "not slow"])
    cmd = cli.guest_command(args, workers=2)
    assert cmd[:3] == (sys.executable, "-m", "lane.guest_main")
    g = guest_main.parse(list(cmd[3:]))
    assert (g.reports, g.mode, g.workers, g.open_path) == (tmp_path / "r", "full", 2, ["cdev"])
    assert g.expectations == [str(exp)] and g.pytest_arg == ["-k", "not slow"] and g.hazards
    suite = guest_main.suite_command(g, mdev.plan("cdev", 2), "cdev", tmp_path / "r" / "cdev")
    assert suite[1:7] == ["-m", "pytest", "suites", "--backend", "vfio", "--vfio-device"]
    for opt, value in (("--open-path", "cdev"), ("--reports", str(tmp_path / "r" / "cdev")),
                       ("-n", "2"), ("--expectations", str(exp))):
        assert suite[suite.index(opt) + 1] == value
    assert suite[-2:] == ["-k", "not slow"]
    assert suite.count("--vfio-device") == 2
    assert "--vfio-peer" in suite and "--vfio-incompatible" in suite


def test_smoke_guest_command() -> None:
    g = guest_main.parse(list(cli.guest_command(cli.parse(["--smoke"]), workers=2)[3:]))
    assert g.mode == "smoke" and g.open_path == []
