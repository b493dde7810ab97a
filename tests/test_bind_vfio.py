"""scripts/bind-vfio on a fake sysfs with a fake kernel: signals restore, options in any order, its exit codes.

The fake kernel (a thread) does what the kernel does with bind-vfio's writes: ``driver/unbind`` drops
the device's driver link, ``drivers_probe`` binds the device to its ``driver_override``,
``drivers/X/bind`` binds it to X. Nothing touches a real device.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_vfio_sysfs import make_pci

ROOT = Path(__file__).resolve().parent.parent
BIND = str(ROOT / "scripts" / "bind-vfio")
BDF = "0000:3b:00.2"
LONG = ["sh", "-c", "echo started; exec sleep 60"]


class FakeKernel(threading.Thread):
    """Applies bind-vfio's sysfs writes to the fake tree every 20 ms (see the module docstring)."""

    def __init__(self, sys_root: Path) -> None:
        super().__init__(daemon=True)
        self.root = sys_root
        self.dev = sys_root / "bus/pci/devices" / BDF
        self.drivers = sys_root / "bus/pci/drivers"
        self.refuse: set[str] = set()  # drivers that do not take the device
        self.stopped = threading.Event()

    def driver(self) -> str | None:
        try:
            return os.path.basename(os.readlink(self.dev / "driver"))
        except OSError:
            return None

    def _take(self, f: Path) -> str:
        text = f.read_text().strip() if f.is_file() else ""
        if text:
            f.write_text("")
        return text

    def _bind(self, driver: str) -> None:
        if driver and driver not in self.refuse:
            (self.drivers / driver).mkdir(parents=True, exist_ok=True)
            (self.dev / "driver").unlink(missing_ok=True)
            os.symlink(self.drivers / driver, self.dev / "driver")

    def step(self) -> None:
        for f in self.drivers.glob("*/unbind"):
            if self._take(f):
                (self.dev / "driver").unlink(missing_ok=True)
        if self._take(self.root / "bus/pci/drivers_probe"):
            override = (self.dev / "driver_override").read_text().strip() if (self.dev / "driver_override").exists() \
                else ""
            self._bind(override)
        for f in self.drivers.glob("*/bind"):
            if self._take(f):
                self._bind(f.parent.name)

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            self.step()


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[FakeKernel]:
    make_pci(tmp_path / "sys", BDF, driver="mlx5_core", cdev=None)
    k = FakeKernel(tmp_path / "sys")
    k.start()
    yield k
    k.stopped.set()
    k.join()


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "VFIO_CTS_SYSFS_ROOT": str(tmp_path / "sys"), "VFIO_CTS_BIND_STATE": str(tmp_path / "state")}


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, BIND, *args], env=env(tmp_path), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def bind_vfio(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, BIND, *args], env=env(tmp_path), capture_output=True, text=True,
                          timeout=timeout, check=False)


def wait_started(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "started":
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"the command did not start: {proc.communicate()}")


@pytest.mark.parametrize(("sig", "to_group"), [(signal.SIGTERM, False), (signal.SIGHUP, False),
                                               (signal.SIGINT, True), (signal.SIGTERM, True)],
                         ids=["SIGTERM", "SIGHUP", "SIGINT-terminal", "SIGTERM-group"])
def test_a_signal_while_the_command_runs_restores_the_driver_quietly(tmp_path: Path, kernel: FakeKernel,
                                                                    sig: signal.Signals, to_group: bool) -> None:
    """A CI abort (SIGTERM to bind-vfio, or to the whole job), a closed terminal, Ctrl-C: all restore."""
    proc = start(tmp_path, "run", BDF, "--driver", "vfio-pci", "--", *LONG)
    wait_started(proc)
    assert kernel.driver() == "vfio-pci" and (tmp_path / "state" / BDF).exists()
    if to_group:
        os.killpg(proc.pid, sig)  # a terminal's Ctrl-C, a job runner killing the process group
    else:
        proc.send_signal(sig)  # bind-vfio alone: it passes SIGTERM/SIGHUP on to the command
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in out + err, err
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert kernel.driver() == "mlx5_core"
    assert not (tmp_path / "state" / BDF).exists()
    assert err.strip().splitlines() == [f"bind-vfio: ended by {sig.name}; {BDF} restored (the command exited "
                                        f"{128 + sig})"]


def test_the_commands_status_passes_through_and_bind_vfios_own_codes_are_apart(tmp_path: Path,
                                                                                 kernel: FakeKernel) -> None:
    run = bind_vfio(tmp_path, "run", BDF, "--driver", "vfio-pci", "--", "sh", "-c", "exit 3")
    assert run.returncode == 3 and kernel.driver() == "mlx5_core", run.stderr
    killed = bind_vfio(tmp_path, "run", BDF, "--driver", "vfio-pci", "--", "sh", "-c", "kill -KILL $$")
    assert killed.returncode == 128 + signal.SIGKILL and kernel.driver() == "mlx5_core", killed.stderr
    kernel.refuse.add("vfio-pci")  # the kernel does not bind it: 10, the command never ran, restored
    refused = bind_vfio(tmp_path, "run", BDF, "--driver", "vfio-pci", "--", "sh", "-c", "echo ran")
    assert refused.returncode == 10 and "ran" not in refused.stdout, refused.stderr
    assert "did not bind to vfio-pci" in refused.stderr and kernel.driver() == "mlx5_core"
    assert not (tmp_path / "state" / BDF).exists()


def test_a_restore_that_fails_is_11_and_says_what_the_command_did(tmp_path: Path, kernel: FakeKernel) -> None:
    proc = start(tmp_path, "run", BDF, "--driver", "vfio-pci", "--", "sh", "-c", "echo started; read x; exit 1")
    wait_started(proc)
    kernel.refuse.add("mlx5_core")
    _, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 11, err
    assert f"bind-vfio: restoring {BDF} failed; the command exited 1" in err
    assert (tmp_path / "state" / BDF).exists()  # the record stays for `bind-vfio restore`
    kernel.refuse.clear()
    again = bind_vfio(tmp_path, "restore", BDF)
    assert again.returncode == 0 and kernel.driver() == "mlx5_core", again.stderr


@pytest.mark.parametrize("args", [["bind", "--dry-run", BDF], ["bind", BDF, "--dry-run"],
                                  ["--dry-run", "bind", "--driver", "vfio-pci", BDF]])
def test_options_in_any_order(tmp_path: Path, kernel: FakeKernel, args: list[str]) -> None:
    proc = bind_vfio(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert f"{BDF}: mlx5_core -> vfio-pci" in proc.stdout and kernel.driver() == "mlx5_core"  # dry run


def test_help_documents_the_exit_codes(tmp_path: Path) -> None:
    text = bind_vfio(tmp_path, "--help").stdout
    for code in ("  0 ", "  4 ", "  10 ", "  11 ", "  128+N "):
        assert code in text, code


def test_a_signal_while_binding_restores_and_runs_nothing(tmp_path: Path, kernel: FakeKernel) -> None:
    kernel.refuse.add("vfio-pci")  # binding waits (up to 5 s) for a bind that does not come
    proc = start(tmp_path, "run", BDF, "--driver", "vfio-pci", "--", "sh", "-c", "echo ran")
    deadline = time.monotonic() + 10
    while kernel.driver() == "mlx5_core" and time.monotonic() < deadline:
        time.sleep(0.02)  # unbound from mlx5_core: bind-vfio now waits for vfio-pci
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM and "ran" not in out, err
    assert "Traceback" not in err and err.strip().splitlines() == [f"bind-vfio: ended by SIGTERM; {BDF} restored"]
    assert kernel.driver() == "mlx5_core" and not (tmp_path / "state" / BDF).exists()
