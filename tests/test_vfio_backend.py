"""The vfio backend's orchestration over fake sysfs trees and fake device fds (no kernel needed).

A ``FakeIO`` stands where ``opening.KernelDeviceIO`` stands on a real kernel: its feature calls go
to a mock device (the model of the core and a driver), so flags, states and errnos are realistic.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.test_vfio_profiles import FakeMtty
from tests.test_vfio_sysfs import make_mdev, make_pci
from vfio_mig_cts.backends.loader import BackendError, BackendOptions
from vfio_mig_cts.backends.mock.backend import MockBackend, MockDevice
from vfio_mig_cts.backends.protocol import (
    DeviceProfile,
    FdStream,
    KernelLog,
    Losable,
    MigrationDevice,
    OpenAgain,
    Reopen,
    Role,
    Unavailable,
    get_state,
    set_state,
)
from vfio_mig_cts.backends.vfio.backend import Environment, VfioBackend
from vfio_mig_cts.backends.vfio.device import DeviceIO, VfioDevice
from vfio_mig_cts.backends.vfio.errors import DeviceQuarantined, open_error
from vfio_mig_cts.backends.vfio.factory import create_backend
from vfio_mig_cts.backends.vfio.ioctl import RegionInfo
from vfio_mig_cts.backends.vfio.kernel import KernelIdentity
from vfio_mig_cts.backends.vfio.locking import DeviceLock, Quarantine
from vfio_mig_cts.backends.vfio.sysfs import ResolvedDevice
from vfio_mig_cts.backends.vfio.timeouts import IoctlHang
from vfio_mig_cts.judging.driving import Session, restore_running
from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import Feature, MigFlag, State

ALL = int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)
U1 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
U2 = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002"
DEBIAN = KernelIdentity("6.12.117+deb12-amd64", "Debian 6.12.117-1~deb12u1")


@dataclass
class FakeIO:
    """A device fd: features from a mock device, registers from an mtty model."""

    mock: MockDevice
    uart: FakeMtty = field(default_factory=FakeMtty)
    hang: float = 0.0
    reset_works: bool = True
    no_migration: bool = False
    next_fd: int | None = None
    closed: bool = False
    resets: int = 0
    calls: list[tuple[int, int | None]] = field(default_factory=list)

    def feature(self, flags: int, payload: bytes, argsz: int | None) -> bytes:
        self.calls.append((flags, argsz))
        if self.hang:
            time.sleep(self.hang)
        if self.no_migration and flags & uapi.VFIO_DEVICE_FEATURE_MASK in (Feature.MIGRATION, Feature.MIG_DEVICE_STATE):
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        reply = self.mock.feature(flags, payload, argsz)
        out = reply.payload
        if reply.stream is not None and self.next_fd is not None:
            out = out[:4] + struct.pack("<i", self.next_fd) + out[8:]
            self.next_fd = None
        return out

    def reset(self) -> None:
        self.resets += 1
        if self.reset_works:
            self.mock.reset()

    def region_info(self, index: int) -> RegionInfo:
        return self.uart.region_info(index)

    def pread(self, size: int, offset: int) -> bytes:
        return self.uart.region_read(offset >> 40, offset & ((1 << 40) - 1), size)

    def pwrite(self, data: bytes, offset: int) -> int:
        self.uart.region_write(offset >> 40, offset & ((1 << 40) - 1), data)
        return len(data)

    def close(self) -> None:
        self.closed = True


class Lab:
    """A fake host: sysfs devices, their fake fds, and the paths the backend reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = Environment(sysfs_root=root / "sys", dev_root=root / "dev", lock_dirs=(root / "locks",),
                               kmsg=root / "kmsg", tainted=root / "tainted", proc_version=root / "version")
        (root / "kmsg").write_text("")
        (root / "tainted").write_text("0\n")
        self.ios: dict[str, FakeIO] = {}
        self.opened: list[str] = []
        self.open_errors: dict[str, BaseException] = {}
        mock = MockBackend()
        self.mock_config = mock.config

    def add_mdev(self, uuid: str, flags: int = ALL, cdev: str = "vfio0", group: str = "7") -> FakeIO:
        make_mdev(self.env.sysfs_root, uuid, cdev=cdev, group=group)
        io = FakeIO(MockDevice(self.mock_config(Role.DUT, flags), name=uuid))
        self.ios[uuid] = io
        return io

    def add_pci(self, addr: str, flags: int = ALL) -> FakeIO:
        make_pci(self.env.sysfs_root, addr, cdev=None, group=addr[-1])
        io = FakeIO(MockDevice(self.mock_config(Role.DUT, flags), name=addr))
        self.ios[addr] = io
        return io

    def opener(self, dev: ResolvedDevice, path: str) -> DeviceIO:
        if dev.name in self.open_errors:
            raise self.open_errors[dev.name]
        self.opened.append(dev.name)
        io = self.ios[dev.name]
        io.closed = False
        return io

    def backend(self, *devices: str, environ: dict[str, str] | None = None, grace: float = 0.0,
                **options: object) -> VfioBackend:
        opts = BackendOptions(devices=devices, ioctl_timeout=float(str(options.pop("ioctl_timeout", 2.0))),
                              **options)  # type: ignore[arg-type]
        return VfioBackend(opts, self.env, opener=self.opener, environ=environ or {}, identity=DEBIAN, grace=grace)

    def lock_held(self, name: str) -> bool:
        probe = DeviceLock(self.root / "locks", name)
        if probe.try_acquire():
            probe.release()
            return False
        return True


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield Lab(tmp_path)


def test_no_device_named_is_a_usage_error(lab: Lab) -> None:
    with pytest.raises(BackendError, match=r"--backend vfio needs a device: --vfio-device"):
        lab.backend()


def test_factory_reads_the_environment_from_extra(lab: Lab) -> None:
    with pytest.raises(BackendError, match="no such mdev"):
        create_backend(BackendOptions(devices=(U1,), extra={"sysfs_root": str(lab.env.sysfs_root),
                                                            "lock_dir": str(lab.root / "locks")}))


def test_plain_run_probes_then_takes_the_device_at_first_open(lab: Lab) -> None:
    lab.add_mdev(U1)
    backend = lab.backend(U1)
    assert backend.feature_sets() == [ALL]
    assert backend.kernel_profile().name == "debian-6.12.117"
    assert backend.kernel_profile().release == DEBIAN.release
    assert lab.ios[U1].closed and not lab.lock_held(U1)  # the probe let it go
    dev = backend.open(Role.DUT, ALL)
    assert isinstance(dev, MigrationDevice) and isinstance(dev, KernelLog)
    assert isinstance(dev, DeviceProfile)  # mtty has a profile
    assert (dev.name, dev.driver) == (U1, "mtty")
    assert lab.lock_held(U1)
    dev.close()  # a test's close: the device stays open for the run
    assert not lab.ios[U1].closed
    assert backend.open(Role.DUT, ALL) is dev
    backend.close()
    assert lab.ios[U1].closed and not lab.lock_held(U1)


def test_a_device_without_profile_is_no_device_profile(lab: Lab) -> None:
    lab.add_pci("0000:3b:00.1")
    backend = lab.backend("3b:00.1")
    dev = backend.open(Role.DUT, ALL)
    assert not isinstance(dev, DeviceProfile)
    assert dev.driver == "vfio-pci"
    backend.close()


def test_feature_passes_flags_argsz_and_errnos_through(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1)
    dev = backend.open(Role.DUT, ALL)
    with pytest.raises(OSError) as info:
        dev.feature(uapi.VFIO_DEVICE_FEATURE_GET | Feature.MIGRATION, bytes(8), argsz=7)
    assert info.value.errno == errno.EINVAL
    assert io.calls[-1] == (uapi.VFIO_DEVICE_FEATURE_GET | Feature.MIGRATION, 7)
    reply = dev.feature(uapi.VFIO_DEVICE_FEATURE_GET | Feature.MIGRATION, bytes(8))
    assert struct.unpack("<Q", reply.payload) == (ALL,) and reply.stream is None
    backend.close()


def test_a_set_that_returns_a_data_fd_gives_a_stream(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1)
    dev = backend.open(Role.DUT, ALL)
    r, w = os.pipe()
    os.write(w, b"stream bytes")
    os.close(w)
    io.next_fd = r
    stream = set_state(dev, State.PRE_COPY)
    assert isinstance(stream, FdStream) and stream.fd == r
    assert stream.read(100) == b"stream bytes"
    stream.close()
    with pytest.raises(OSError):
        os.fstat(r)
    backend.close()


def test_flags_other_than_the_devices_are_unavailable(lab: Lab) -> None:
    lab.add_mdev(U1)
    backend = lab.backend(U1)
    with pytest.raises(Unavailable, match=r"has migration flags STOP_COPY\|P2P\|PRE_COPY, not STOP_COPY"):
        backend.open(Role.DUT, int(MigFlag.STOP_COPY))
    backend.close()


def test_roles_nobody_named_are_unavailable(lab: Lab) -> None:
    lab.add_mdev(U1)
    backend = lab.backend(U1)
    with pytest.raises(Unavailable, match="no --vfio-peer given"):
        backend.open(Role.PEER, ALL)
    with pytest.raises(Unavailable, match="no --vfio-incompatible given"):
        backend.open(Role.INCOMPATIBLE, ALL)
    backend.close()


def test_peer_is_locked_per_test_and_reset_before_it_is_closed(lab: Lab) -> None:
    lab.add_mdev(U1)
    peer_io = lab.add_mdev(U2, cdev="vfio1", group="8")
    backend = lab.backend(U1, peer=U2)
    peer = backend.open(Role.PEER, ALL)
    assert peer.name == U2 and lab.lock_held(U2)
    set_state(peer, State.STOP)
    peer.close()
    assert peer_io.closed and not lab.lock_held(U2)
    assert peer_io.mock.drv.get_state() == State.RUNNING  # reset before close (mtty's RESUMING oops)
    again = backend.open(Role.PEER, ALL)
    assert again is not peer
    again.close()
    backend.close()


def test_the_health_check_resets_a_device_found_outside_running(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1)
    dev = backend.open(Role.DUT, ALL)
    set_state(dev, State.STOP_COPY)
    assert backend.open(Role.DUT, ALL) is dev
    assert get_state(dev) == State.RUNNING and io.resets == 1
    backend.close()


def test_a_device_that_stays_broken_is_quarantined(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1, environ={"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_TESTRUNUID": "run7"})
    dev = backend.open(Role.DUT, ALL)
    set_state(dev, State.STOP)
    io.reset_works = False
    with pytest.raises(DeviceQuarantined, match="found in STOP, and after VFIO_DEVICE_RESET GET reports STOP"):
        backend.open(Role.DUT, ALL)
    io.reset_works = True
    with pytest.raises(DeviceQuarantined, match="quarantined for this run"):
        backend.open(Role.DUT, ALL)  # every later test errors with the same reason
    assert Quarantine(lab.root / "locks", "run7").reason(U1)
    backend.close()


def test_a_hang_loses_the_device_and_quarantines_it(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1, ioctl_timeout=0.1, environ={"PYTEST_XDIST_WORKER": "gw0",
                                                          "PYTEST_XDIST_TESTRUNUID": "run8"})
    dev = backend.open(Role.DUT, ALL)
    io.hang = 0.5
    with pytest.raises(IoctlHang) as info:
        set_state(dev, State.STOP)
    assert info.value.errno == errno.ETIMEDOUT
    start = time.monotonic()
    with pytest.raises(DeviceQuarantined, match="hung"):
        backend.open(Role.DUT, ALL)
    assert time.monotonic() - start < 0.1
    assert "hung" in (Quarantine(lab.root / "locks", "run8").reason(U1) or "")
    backend.close()


def test_workers_take_devices_k_mod_n_and_never_share(lab: Lab) -> None:
    for u, c, g in ((U1, "vfio0", "7"), (U2, "vfio1", "8")):
        lab.add_mdev(u, cdev=c, group=g)
    run = {"PYTEST_XDIST_TESTRUNUID": "r1"}
    gw1 = lab.backend(U1, U2, environ={**run, "PYTEST_XDIST_WORKER": "gw1"})
    assert gw1.held_devices() == [U2]  # a worker takes its device at once
    gw0 = lab.backend(U1, U2, environ={**run, "PYTEST_XDIST_WORKER": "gw0"})
    assert gw0.held_devices() == [U1]
    with pytest.raises(BackendError, match="no free device"):
        lab.backend(U1, U2, environ={**run, "PYTEST_XDIST_WORKER": "gw2"})
    gw0.close()
    Quarantine(lab.root / "locks", "r1").add(U1, "hung")
    gw1.close()
    # a replaced worker of the same run passes over the quarantined device
    gw3 = lab.backend(U1, U2, environ={**run, "PYTEST_XDIST_WORKER": "gw2"})
    assert gw3.held_devices() == [U2]
    gw3.close()


def test_a_device_another_run_holds_is_busy(lab: Lab) -> None:
    lab.add_mdev(U1)
    (lab.root / "locks").mkdir()
    other = DeviceLock(lab.root / "locks", U1)
    assert other.try_acquire("another run")
    with pytest.raises(BackendError, match=r"every --vfio-device is busy: .*another run"):
        lab.backend(U1)
    other.release()


def test_no_migration_support_is_a_usage_error(lab: Lab) -> None:
    lab.add_mdev(U1).no_migration = True
    with pytest.raises(BackendError, match=r"has no migration support: VFIO_DEVICE_FEATURE_MIGRATION returns ENOTTY"):
        lab.backend(U1)


@pytest.mark.parametrize(("code", "says"), [(errno.EBUSY, "is busy"), (errno.EACCES, "permission denied"),
                                            (errno.ENOENT, "does not exist")])
def test_open_errors_are_one_line(lab: Lab, code: int, says: str) -> None:
    lab.add_mdev(U1)
    lab.open_errors[U1] = open_error(OSError(code, os.strerror(code)), "/dev/vfio/devices/vfio0", U1)
    with pytest.raises(BackendError, match=says) as info:
        lab.backend(U1)
    assert "\n" not in str(info.value)
    assert not lab.lock_held(U1)


def test_devices_with_different_flags_cannot_share_a_run(lab: Lab) -> None:
    lab.add_mdev(U1)
    lab.add_mdev(U2, flags=int(MigFlag.STOP_COPY), cdev="vfio1", group="8")
    with pytest.raises(BackendError, match="different migration flags"):
        lab.backend(U1, U2)


def test_the_same_device_twice_is_refused(lab: Lab) -> None:
    lab.add_pci("0000:3b:00.1")
    with pytest.raises(BackendError, match="named twice"):
        lab.backend("3b:00.1", "0000:3b:00.1")


def test_kernel_messages_come_from_the_shared_reader(lab: Lab) -> None:
    lab.add_mdev(U1)
    backend = lab.backend(U1)
    dev = backend.open(Role.DUT, ALL)
    assert dev.take_kernel_messages() == []  # type: ignore[attr-defined]
    with (lab.root / "kmsg").open("a") as f:
        f.write(f"4,9,1,-;BUG: kernel NULL pointer dereference\n SUBSYSTEM=mdev\n DEVICE=+mdev:{U1}\n")
    assert dev.take_kernel_messages() == [  # type: ignore[attr-defined]
        f"BUG: kernel NULL pointer dereference [device +mdev:{U1}]"]
    backend.close()


def test_profile_dirty_and_digest_go_through_the_device_region(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1)
    dev = backend.open(Role.DUT, ALL)
    assert isinstance(dev, DeviceProfile)
    before = dev.state_digest()
    dev.dirty(3)
    assert dev.state_digest() != before
    assert io.uart.writes and all(i == 0 for i, _, _ in io.uart.writes)
    set_state(dev, State.STOP)
    after_stop = dev.state_digest()
    dev.dirty(4)  # not in a running state: nothing changes
    assert dev.state_digest() == after_stop
    backend.close()


def test_an_explicit_kernel_profile_wins(lab: Lab) -> None:
    lab.add_mdev(U1)
    backend = lab.backend(U1, kernel_profile="6.12-unfixed")
    assert backend.kernel_profile().name == "6.12-unfixed"
    with pytest.raises(BackendError, match="unknown --kernel-profile"):
        lab.backend(U1, kernel_profile="nope")



# --- close and reopen, a second open, writing a device off ------------------------------------------

def test_reopen_closes_the_device_fd_and_opens_it_again(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1)
    dev = backend.open(Role.DUT, ALL)
    assert isinstance(dev, Reopen)
    opens = len(lab.opened)
    closes: list[bool] = []
    real_close = io.close

    def counting_close() -> None:
        closes.append(True)
        real_close()

    io.close = counting_close  # type: ignore[method-assign]
    dev.reopen()
    assert closes == [True] and len(lab.opened) == opens + 1 and lab.opened[-1] == U1
    assert not io.closed and get_state(dev) == State.RUNNING  # the same object goes on being the device
    backend.close()


def test_a_reopen_that_cannot_open_loses_the_device(lab: Lab) -> None:
    lab.add_mdev(U1)
    backend = lab.backend(U1, environ={"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_TESTRUNUID": "run9"})
    dev = backend.open(Role.DUT, ALL)
    assert isinstance(dev, VfioDevice)
    lab.open_errors[U1] = open_error(OSError(errno.EBUSY, "Device or resource busy"), "/dev/vfio/7", U1)
    with pytest.raises(OSError) as info:
        dev.reopen()
    assert info.value.errno == errno.EIO and "opening" in str(info.value) and "again failed" in str(info.value)
    assert dev.lost_reason() and "could not be opened again" in (dev.lost_reason() or "")
    with pytest.raises(DeviceQuarantined, match="could not be opened again"):
        backend.open(Role.DUT, ALL)
    backend.close()


def test_open_again_is_a_second_open_whose_close_closes_only_it(lab: Lab) -> None:
    first = lab.add_mdev(U1)
    second = FakeIO(first.mock)
    seen: list[DeviceIO] = []

    def again(dev: ResolvedDevice, io: DeviceIO) -> DeviceIO:
        seen.append(io)
        return second

    opts = BackendOptions(devices=(U1,), ioctl_timeout=2.0)
    backend = VfioBackend(opts, lab.env, opener=lab.opener, environ={}, identity=DEBIAN, grace=0.0, again=again)
    dev = backend.open(Role.DUT, ALL)
    assert isinstance(dev, OpenAgain)
    other = dev.open_again()
    assert seen == [first]  # the second open is made from the first (its group, on the legacy path)
    assert get_state(other) == State.RUNNING
    other.close()
    assert second.closed and not first.closed
    backend.close()


def test_a_refused_second_open_is_an_oserror_not_a_setup_failure(lab: Lab) -> None:
    lab.add_mdev(U1)

    def again(dev: ResolvedDevice, io: DeviceIO) -> DeviceIO:
        raise OSError(errno.EINVAL, "Invalid argument")  # the cdev path: vfio_df_open refuses

    opts = BackendOptions(devices=(U1,), ioctl_timeout=2.0)
    backend = VfioBackend(opts, lab.env, opener=lab.opener, environ={}, identity=DEBIAN, grace=0.0, again=again)
    dev = backend.open(Role.DUT, ALL)
    assert isinstance(dev, VfioDevice)
    with pytest.raises(OSError) as info:
        dev.open_again()
    assert info.value.errno == errno.EINVAL and dev.lost_reason() is None
    backend.close()


def test_a_written_off_device_gets_no_request_at_teardown(lab: Lab) -> None:
    io = lab.add_mdev(U1)
    backend = lab.backend(U1, environ={"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_TESTRUNUID": "run10"})
    dev = backend.open(Role.DUT, ALL)
    assert isinstance(dev, Losable)
    set_state(dev, State.STOP)
    dev.mark_lost("SET RESUMING -> RUNNING did not return: the process making it ended (killed by signal 9)")
    calls = len(io.calls)
    restored = restore_running(dev, Session())
    assert restored.lost.startswith("SET RESUMING -> RUNNING") and not restored.error
    assert len(io.calls) == calls and io.resets == 0  # not even a GET: the driver's lock may be held forever
    with pytest.raises(DeviceQuarantined, match="killed by signal 9"):
        backend.open(Role.DUT, ALL)
    backend.close()
    assert io.closed and io.resets == 0
