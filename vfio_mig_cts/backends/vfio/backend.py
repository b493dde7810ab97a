"""``VfioBackend``: the suite's devices from the real kernel.

Rules:

- At start (the factory), every named device is parsed and resolved through sysfs; any problem is
  a ``BackendError`` (pytest exit 4) with one line. No device named at all is such an error too.
- Inside a pytest-xdist worker the backend takes its device at once (``locking.acquire``: lock,
  open, GET MIGRATION). Elsewhere (a plain run, or the xdist controller, which must not hold a
  device its workers need) it only probes each device under its lock and closes it again: that
  validates it (busy, permission, no migration support: exit 4) and learns its migration flags and
  the kernel profile. A plain run takes its device at the first ``open(DUT)``.
- Every device named with ``--vfio-device`` must have the same migration flags (xdist workers must
  collect the same tests).
- ``open(role, flags)``: the DUT is this worker's device, held for the whole run; PEER
  (``--vfio-peer``) and INCOMPATIBLE (``--vfio-incompatible``) are locked and opened per test and
  given back by the test's ``close()``; a role nobody named is ``Unavailable``. Flags other than the
  device's are ``Unavailable``. Before a device is handed out it must be healthy: GET state within
  the deadline; not RUNNING -> reset and GET again; failing that, the device is quarantined and
  ``DeviceQuarantined`` raised (the test errors), and so is every later request for it.
- A hang in any call quarantines the device the same way.
- Every device can be closed and opened again (``Reopen``, by the same open path) and opened a
  second time while open (``OpenAgain``: the legacy path shares the group; cdev is refused by 6.12).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vfio_mig_cts.backends.loader import BackendError, BackendOptions
from vfio_mig_cts.backends.protocol import (
    KernelProfile,
    MigrationDevice,
    Role,
    Unavailable,
    flags_name,
    get_state,
    migration_flags,
)
from vfio_mig_cts.backends.vfio import kernel, locking
from vfio_mig_cts.backends.vfio.device import DeviceIO, ProfiledVfioDevice, VfioDevice
from vfio_mig_cts.backends.vfio.errors import DeviceQuarantined, no_migration
from vfio_mig_cts.backends.vfio.kmsg import KernelLogReader
from vfio_mig_cts.backends.vfio.naming import parse_spec
from vfio_mig_cts.backends.vfio.opening import KernelDeviceIO, open_again, open_device
from vfio_mig_cts.backends.vfio.profiles import profile_for
from vfio_mig_cts.backends.vfio.sysfs import ResolvedDevice, Sysfs
from vfio_mig_cts.backends.vfio.timeouts import DeviceLost, IoctlHang, Watchdog, run_with_timeout
from vfio_mig_cts.uapi.vfio import State, state_name

Opener = Callable[[ResolvedDevice, str], DeviceIO]
Again = Callable[[ResolvedDevice, DeviceIO], DeviceIO]


def kernel_opener(dev_root: Path) -> Opener:
    def opener(dev: ResolvedDevice, path: str) -> DeviceIO:
        return KernelDeviceIO(open_device(dev, path, dev_root))
    return opener


def kernel_again(dev_root: Path) -> Again:
    def again(dev: ResolvedDevice, first: DeviceIO) -> DeviceIO:
        if not isinstance(first, KernelDeviceIO):
            raise OSError(errno.EOPNOTSUPP, f"{dev.name}: not a kernel device fd")
        return KernelDeviceIO(open_again(first.handle, dev, dev_root))
    return again


@dataclass(frozen=True)
class Environment:
    """Where the backend looks; every path is replaceable (unit tests, unusual hosts)."""

    sysfs_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    lock_dirs: tuple[Path, ...] = locking.DEFAULT_DIRS
    kmsg: Path = Path("/dev/kmsg")
    tainted: Path = Path("/proc/sys/kernel/tainted")
    proc_version: Path = Path("/proc/version")

    @classmethod
    def from_extra(cls, extra: Mapping[str, object]) -> Environment:
        """``BackendOptions.extra`` keys ``sysfs_root``, ``dev_root``, ``lock_dir``, ``kmsg``, ``tainted``."""
        base = cls()
        return cls(
            sysfs_root=Path(str(extra.get("sysfs_root", base.sysfs_root))),
            dev_root=Path(str(extra.get("dev_root", base.dev_root))),
            lock_dirs=(Path(str(extra["lock_dir"])),) if "lock_dir" in extra else base.lock_dirs,
            kmsg=Path(str(extra.get("kmsg", base.kmsg))),
            tainted=Path(str(extra.get("tainted", base.tainted))),
            proc_version=Path(str(extra.get("proc_version", base.proc_version))),
        )


class VfioBackend:
    """The real-kernel backend (see the module rules)."""

    name = "vfio"
    real = True
    SHARED_WAIT = 20.0  # seconds to wait for a peer/incompatible device another worker is using

    def __init__(self, options: BackendOptions, env: Environment | None = None, opener: Opener | None = None,
                 environ: Mapping[str, str] | None = None, identity: kernel.KernelIdentity | None = None,
                 grace: float = 5.0, again: Again | None = None) -> None:
        self.options = options
        self.env = env or Environment()
        self.environ = os.environ if environ is None else environ
        self.opener = opener or kernel_opener(self.env.dev_root)
        self.again = again or kernel_again(self.env.dev_root)
        self.grace = grace
        if not options.devices:
            raise BackendError("--backend vfio needs a device: --vfio-device PCI_ADDRESS|MDEV_UUID|"
                               "/dev/vfio/devices/vfioN (repeatable, one per -n worker)")
        if options.kernel_profile:
            kernel.named_profile(options.kernel_profile)
        sysfs = Sysfs(self.env.sysfs_root, self.env.dev_root)
        self.duts = [sysfs.resolve(parse_spec(d)) for d in options.devices]
        names = [d.name for d in self.duts]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise BackendError(f"device {dup[0]} is named twice with --vfio-device: name each device once")
        self.others: dict[Role, ResolvedDevice] = {}
        if options.peer:
            self.others[Role.PEER] = sysfs.resolve(parse_spec(options.peer))
        if options.incompatible:
            self.others[Role.INCOMPATIBLE] = sysfs.resolve(parse_spec(options.incompatible))
        self.identity = identity or kernel.current_identity(self.env.proc_version)
        self.lock_dir = locking.lock_dir(self.env.lock_dirs)
        self.quarantine = locking.Quarantine(self.lock_dir, locking.run_id(self.environ))
        self.kernel_log = KernelLogReader(self.env.kmsg, self.env.tainted)
        self._flags: dict[str, int] = {}
        self._profile: KernelProfile | None = None
        self._dut: VfioDevice | None = None
        self._dut_lock: locking.DeviceLock | None = None
        self._bad: dict[str, str] = {}
        self._shared: dict[str, locking.DeviceLock] = {}
        try:
            if locking.is_worker(self.environ):
                self._take_dut()
            else:
                self._probe_devices()
        except BaseException:
            self.kernel_log.close()
            raise

    # --- opening ------------------------------------------------------------------------------------
    def _open_io(self, dev: ResolvedDevice) -> DeviceIO:
        timeout = self.options.ioctl_timeout
        try:
            return run_with_timeout(lambda: self.opener(dev, self.options.open_path), timeout,
                                    f"opening {dev.name}", on_late=lambda io: io.close())
        except IoctlHang as exc:
            raise BackendError(f"opening device {dev.name} hung for {exc.seconds:g} s: the device or its driver "
                               "is stuck; reboot or recreate it") from None

    def _make_device(self, dev: ResolvedDevice, io: DeviceIO, role: Role,
                     on_close: Callable[[VfioDevice], None] | None = None) -> VfioDevice:
        dog = Watchdog(self.options.ioctl_timeout, dev.name, on_lost=lambda why: self._lose(dev.name, why))
        profile = profile_for(dev.driver)

        def reopener() -> DeviceIO:
            return self.opener(dev, self.options.open_path)

        def again(first: DeviceIO) -> DeviceIO:
            return self.again(dev, first)

        if profile is not None:
            return ProfiledVfioDevice(dev, io, dog, profile, role, self.kernel_log, on_close, reopener, again)
        return VfioDevice(dev, io, dog, role, self.kernel_log, on_close, reopener, again)

    def _read_flags(self, dev: VfioDevice) -> int:
        try:
            flags = migration_flags(dev)
        except IoctlHang:
            raise BackendError(f"device {dev.name}: GET VFIO_DEVICE_FEATURE_MIGRATION hung: the device is stuck; "
                               "reboot or recreate it") from None
        except OSError as exc:
            if exc.errno == errno.ENOTTY:
                raise no_migration(dev.name, dev.driver) from None
            raise BackendError(f"device {dev.name}: GET VFIO_DEVICE_FEATURE_MIGRATION failed: {exc}") from None
        self._flags[dev.name] = flags
        return flags

    def _detect_profile(self, dev: VfioDevice) -> None:
        if self._profile is None and not self.options.kernel_profile:
            def call(flags: int) -> None:
                dev.feature(flags)
            try:
                self._profile = kernel.detect(call, self.identity)
            except IoctlHang:
                raise BackendError(f"device {dev.name}: a VFIO_DEVICE_FEATURE PROBE hung: the device is stuck; "
                                   "reboot or recreate it") from None

    def _probe_devices(self) -> None:
        """Validate every named device briefly, under its lock, and close it again."""
        busy: list[str] = []
        for dev in [*self.duts, *self.others.values()]:
            lock = locking.DeviceLock(self.lock_dir, dev.name)
            if not lock.try_acquire("probing"):
                busy.append(f"{dev.name} ({lock.holder() or 'locked'})")
                continue
            try:
                io = self._open_io(dev)
                probe = self._make_device(dev, io, Role.DUT)
                try:
                    self._read_flags(probe)
                    self._detect_profile(probe)
                finally:
                    probe.shutdown()
            finally:
                lock.release()
        dut_flags = {self._flags[d.name] for d in self.duts if d.name in self._flags}
        if not dut_flags:
            raise BackendError(f"every --vfio-device is busy: {'; '.join(busy)}; wait for the other run or name "
                               "a free device")
        if len(dut_flags) > 1:
            sets = ", ".join(f"{d.name}: {flags_name(self._flags[d.name])}" for d in self.duts if d.name in self._flags)
            raise BackendError(f"the --vfio-device devices have different migration flags ({sets}): run them in "
                               "separate sessions")

    def _take_dut(self) -> None:
        """Lock and open this worker's device for the rest of the run."""
        names = [d.name for d in self.duts]
        worker = self.environ.get("PYTEST_XDIST_WORKER", "main")
        lock = locking.acquire(names, locking.worker_index(self.environ), self.lock_dir, self.quarantine,
                               grace=self.grace, note=f"worker {worker} run {self.quarantine.run}")
        dev = self.duts[names.index(lock.device)]
        try:
            self._dut = self._make_device(dev, self._open_io(dev), Role.DUT)
            self._read_flags(self._dut)
            self._detect_profile(self._dut)
        except BaseException:
            if self._dut is not None:
                self._dut.shutdown()
                self._dut = None
            lock.release()
            raise
        self._dut_lock = lock

    # --- health and quarantine ------------------------------------------------------------------------
    def _lose(self, name: str, reason: str) -> None:
        self._bad.setdefault(name, reason)
        try:
            self.quarantine.add(name, reason)
        except OSError:
            pass

    def _check_quarantine(self, name: str) -> None:
        reason = self._bad.get(name) or self.quarantine.reason(name)
        if reason:
            raise DeviceQuarantined(f"device {name} is quarantined for this run: {reason}")

    def check_health(self, dev: VfioDevice) -> None:
        """GET state; not RUNNING -> reset and GET again; failing that, quarantine and raise."""
        try:
            state = get_state(dev)
            if state == State.RUNNING:
                return
            first = state_name(state)
            dev.reset()
            state = get_state(dev)
            if state == State.RUNNING:
                return
            reason = f"health check: found in {first}, and after VFIO_DEVICE_RESET GET reports {state_name(state)}"
        except (OSError, DeviceLost) as exc:
            reason = f"health check failed: {exc}"
        self._lose(dev.name, reason)
        raise DeviceQuarantined(f"device {dev.name} is quarantined for this run: {reason}")

    # --- Backend ----------------------------------------------------------------------------------------
    def feature_sets(self) -> list[int]:
        if self._dut is not None:
            return [self._flags[self._dut.name]]
        for d in self.duts:
            if d.name in self._flags:
                return [self._flags[d.name]]
        return []

    def kernel_profile(self) -> KernelProfile:
        if self.options.kernel_profile:
            return kernel.named_profile(self.options.kernel_profile)
        if self._profile is None:
            self._profile = kernel.detect(None, self.identity)
        return self._profile

    def _check_flags(self, dev: VfioDevice, flags: int) -> None:
        have = self._flags.get(dev.name)
        if have is None:
            have = self._read_flags(dev)
        if have != flags:
            raise Unavailable(f"device {dev.name} has migration flags {flags_name(have)}, not {flags_name(flags)}")

    def open(self, role: Role, flags: int) -> MigrationDevice:
        if role is Role.DUT:
            return self._open_dut(flags)
        return self._open_shared(role, flags)

    def _open_dut(self, flags: int) -> VfioDevice:
        if self._dut is None:
            self._take_dut()
        dut = self._dut
        assert dut is not None
        self._check_quarantine(dut.name)
        self._check_flags(dut, flags)
        self.check_health(dut)
        return dut

    def _open_shared(self, role: Role, flags: int) -> VfioDevice:
        dev = self.others.get(role)
        if dev is None:
            option = "--vfio-peer" if role is Role.PEER else "--vfio-incompatible"
            raise Unavailable(f"no {option} given")
        if self._dut is not None and dev.name == self._dut.name:
            raise Unavailable(f"the {role.value} device {dev.name} is this worker's device under test")
        self._check_quarantine(dev.name)
        lock = locking.DeviceLock(self.lock_dir, dev.name)
        deadline = time.monotonic() + self.SHARED_WAIT
        while not lock.try_acquire(f"{role.value} for {self.environ.get('PYTEST_XDIST_WORKER', 'main')}"):
            if time.monotonic() >= deadline:
                raise Unavailable(f"the {role.value} device {dev.name} stayed busy for {self.SHARED_WAIT:g} s "
                                  f"({lock.holder() or 'locked'})")
            time.sleep(0.1)
        device: VfioDevice | None = None
        try:
            device = self._make_device(dev, self._open_io(dev), role, on_close=self._give_back)
            self._shared[dev.name] = lock
            self._check_flags(device, flags)
            self.check_health(device)
        except BaseException:
            if device is not None:
                self._give_back(device)
            else:
                lock.release()
            raise
        return device

    def _give_back(self, dev: VfioDevice) -> None:
        """A per-test device's ``close()``: reset if need be, close it, unlock it."""
        try:
            dev.shutdown()
        finally:
            lock = self._shared.pop(dev.name, None)
            if lock is not None:
                lock.release()

    def close(self) -> None:
        if self._dut is not None:
            self._dut.shutdown()
            self._dut = None
        if self._dut_lock is not None:
            self._dut_lock.release()
            self._dut_lock = None
        self.kernel_log.close()

    def held_devices(self) -> Sequence[str]:
        """Names of the devices this process holds now (for reports and tests)."""
        return ([self._dut.name] if self._dut else []) + list(self._shared)
