"""The mtty devices a run needs, and creating / removing them through sysfs (inside the guest).

mtty (``samples/vfio-mdev/mtty.c``) has one parent, ``/sys/class/mdev_bus/mtty``, two types
(``mtty-1``: one port, ``mtty-2``: two ports) and one pool of 24 ports. A 1-port stream is refused
by a 2-port device and vice versa, so the device under test and its peer are ``mtty-2`` and the
incompatible device is ``mtty-1``. UUIDs are derived from the run's name and the device's role,
so a run's devices are named the same on every boot (expectation files can name them), and two
runs in one boot never share a UUID (a device stuck after a kernel bug does not block the next run).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from lane.errors import LaneError, LaneFailure

PARENT = "mtty"
DUT_TYPE = "mtty-2"
INCOMPATIBLE_TYPE = "mtty-1"
PORTS = {"mtty-1": 1, "mtty-2": 2}
POOL_PORTS = 24
NAMESPACE = uuid.UUID("6d2f7c1e-9b0a-4b8e-8f5e-2c7a1d3e4f50")  # this project's, for uuid5


@dataclass(frozen=True)
class PlannedDevice:
    role: str  # "dut", "peer" or "incompatible"
    index: int
    mdev_type: str
    uuid: str


@dataclass(frozen=True)
class DevicePlan:
    run: str
    devices: tuple[PlannedDevice, ...]

    def of_role(self, role: str) -> list[PlannedDevice]:
        return [d for d in self.devices if d.role == role]

    @property
    def ports(self) -> int:
        return sum(PORTS[d.mdev_type] for d in self.devices)

    def pytest_args(self) -> list[str]:
        """The suite's device options for this plan."""
        args: list[str] = []
        for d in self.of_role("dut"):
            args += ["--vfio-device", d.uuid]
        for d in self.of_role("peer"):
            args += ["--vfio-peer", d.uuid]
        for d in self.of_role("incompatible"):
            args += ["--vfio-incompatible", d.uuid]
        return args


def device_uuid(run: str, role: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{run}/{role}/{index}"))


def plan(run: str, workers: int, extras: bool = True) -> DevicePlan:
    """One device under test per xdist worker, one compatible peer, one incompatible device (``extras``:
    the hazard stage's plans have only the device under test)."""
    if workers < 1:
        raise LaneError(LaneFailure.USAGE, f"need at least one worker, not {workers}")
    devs = [PlannedDevice("dut", i, DUT_TYPE, device_uuid(run, "dut", i)) for i in range(workers)]
    if extras:
        devs.append(PlannedDevice("peer", 0, DUT_TYPE, device_uuid(run, "peer", 0)))
        devs.append(PlannedDevice("incompatible", 0, INCOMPATIBLE_TYPE, device_uuid(run, "incompatible", 0)))
    p = DevicePlan(run, tuple(devs))
    if p.ports > POOL_PORTS:
        raise LaneError(LaneFailure.USAGE,
                        f"{workers} workers need {p.ports} mtty ports; the pool has {POOL_PORTS}")
    return p


@dataclass(frozen=True)
class Sysfs:
    """The sysfs paths used; ``root`` is ``/sys`` in the guest, a temporary tree in tests."""

    root: Path = Path("/sys")

    @property
    def parent(self) -> Path:
        return self.root / "class/mdev_bus" / PARENT

    def type_dir(self, mdev_type: str) -> Path:
        return self.parent / "mdev_supported_types" / mdev_type

    def device(self, dev_uuid: str) -> Path:
        return self.root / "bus/mdev/devices" / dev_uuid


def check_parent(fs: Sysfs, p: DevicePlan) -> None:
    if not fs.parent.exists():
        raise LaneError(LaneFailure.NO_MTTY,
                        f"{fs.parent} missing: the kernel lacks CONFIG_SAMPLE_VFIO_MDEV_MTTY=y")
    for t in sorted({d.mdev_type for d in p.devices}):
        avail = fs.type_dir(t) / "available_instances"
        if not avail.exists():
            raise LaneError(LaneFailure.NO_MTTY, f"{fs.type_dir(t)} missing: mtty has no type {t}")
        need = len([d for d in p.devices if d.mdev_type == t])
        have = int(avail.read_text().strip() or 0)
        if have < need:
            raise LaneError(LaneFailure.GUEST_SETUP, f"mtty type {t}: {have} instances available, {need} needed")


def _write_bounded(path: Path, text: str, timeout: float) -> str | None:
    """Write ``text`` to a sysfs file in a daemon thread; an error string, or None on success.

    Removing an mdev whose state mutex a dead task holds blocks forever: the thread is left behind.
    """
    err: list[str] = []

    def work() -> None:
        try:
            path.write_text(text)
        except OSError as exc:
            err.append(f"{path}: {exc}")

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return f"{path}: still blocked after {timeout:.0f} s"
    return err[0] if err else None


def create(fs: Sysfs, p: DevicePlan, timeout: float = 10.0) -> None:
    check_parent(fs, p)
    for d in p.devices:
        problem = _write_bounded(fs.type_dir(d.mdev_type) / "create", d.uuid, timeout)
        if problem:
            raise LaneError(LaneFailure.GUEST_SETUP, f"creating {d.role} {d.mdev_type} {d.uuid}: {problem}")
        if not fs.device(d.uuid).exists():
            raise LaneError(LaneFailure.GUEST_SETUP, f"created {d.uuid} but {fs.device(d.uuid)} did not appear")


def remove(fs: Sysfs, p: DevicePlan, timeout: float = 10.0) -> list[str]:
    """Remove every planned device that exists; the problems met (empty when all went)."""
    problems = []
    for d in p.devices:
        dev = fs.device(d.uuid)
        if not dev.exists():
            continue
        problem = _write_bounded(dev / "remove", "1", timeout)
        if problem:
            problems.append(problem)
    return problems
