"""The ``MigrationDevice`` over a real device fd, with a deadline on every call that can block.

Rules:

- ``feature()`` is one real ``VFIO_DEVICE_FEATURE``: header (``argsz``, ``flags``) + payload in a
  guarded buffer, ``argsz`` passed as given; the reply's payload is the buffer's data part after
  the call. A successful SET of MIG_DEVICE_STATE that wrote a data_fd >= 0 returns it as a stream.
- Errors are ``OSError`` with the kernel's errno. Feature calls, reset, region access and every
  data-fd operation run under the device's ``Watchdog``: a hang raises ``IoctlHang`` and loses the
  device (later calls raise ``DeviceLost``). A data fd a hung SET installs late is closed.
- ``close()`` is what a test's teardown calls: it does nothing for the worker's own device (held for
  the whole run) and hands a per-test device (peer, incompatible) back to the backend.
  ``shutdown()`` really closes: it first resets a device not in RUNNING (closing mtty in RESUMING
  and reopening it oopses the 6.12 kernel), unless the device is lost.
- ``reopen()`` (``Reopen``) closes every fd of the device (the kernel's close_device runs) and opens
  it again by the same path; data fds the test holds stay open. ``open_again()`` (``OpenAgain``) is a
  second, independent open sharing this device's watchdog; its ``close()`` closes only that open.
  ``mark_lost()`` (``Losable``) writes the device off after a contained request killed its task or
  hung: nothing more is sent to it, and teardown leaves it alone.
- ``VfioDevice`` implements ``KernelLog`` through the backend's shared reader; ``ProfiledVfioDevice``
  adds ``DeviceProfile`` (``dirty``, ``state_digest``) from the driver's profile, so a device
  without a profile is not a ``DeviceProfile``.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Protocol

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.protocol import FdStream, FeatureReply, Role, get_state
from vfio_mig_cts.backends.vfio import ioctl
from vfio_mig_cts.backends.vfio.ioctl import RegionInfo
from vfio_mig_cts.backends.vfio.kmsg import KernelLogReader
from vfio_mig_cts.backends.vfio.profiles import DriverProfile
from vfio_mig_cts.backends.vfio.sysfs import ResolvedDevice
from vfio_mig_cts.backends.vfio.timeouts import Watchdog
from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import Feature, State


class DeviceIO(Protocol):
    """The raw operations on an open device (``opening.KernelDeviceIO``; a fake in unit tests)."""

    def feature(self, flags: int, payload: bytes, argsz: int | None) -> bytes: ...

    def reset(self) -> None: ...

    def region_info(self, index: int) -> RegionInfo: ...

    def pread(self, size: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes, offset: int) -> int: ...

    def close(self) -> None: ...


def describe_feature(flags: int) -> str:
    """``VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE`` for reports of hangs."""
    ops = [n for bit, n in ((uapi.VFIO_DEVICE_FEATURE_PROBE, "PROBE"), (uapi.VFIO_DEVICE_FEATURE_GET, "GET"),
                            (uapi.VFIO_DEVICE_FEATURE_SET, "SET")) if flags & bit]
    fid = flags & uapi.VFIO_DEVICE_FEATURE_MASK
    try:
        fname = Feature(fid).name
    except ValueError:
        fname = f"feature {fid:#x}"
    return f"VFIO_DEVICE_FEATURE {'|'.join(ops) or 'no-op'} {fname}"


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class TimedFdStream(FdStream):
    """A migration data fd whose operations run under the device's watchdog."""

    def __init__(self, fd: int, watchdog: Watchdog) -> None:
        super().__init__(fd)
        self._dog = watchdog

    def read(self, size: int) -> bytes:
        return self._dog.call("read(data_fd)", lambda: os.read(self.fd, size))

    def write(self, data: bytes) -> int:
        return self._dog.call("write(data_fd)", lambda: os.write(self.fd, data))

    def pread(self, size: int, offset: int) -> bytes:
        return self._dog.call("pread(data_fd)", lambda: os.pread(self.fd, size, offset))

    def pwrite(self, data: bytes, offset: int) -> int:
        return self._dog.call("pwrite(data_fd)", lambda: os.pwrite(self.fd, data, offset))

    def lseek(self, offset: int, whence: int) -> int:
        return self._dog.call("lseek(data_fd)", lambda: os.lseek(self.fd, offset, whence))

    def precopy_info(self, arg: bytes) -> bytes:
        return self._dog.call("VFIO_MIG_GET_PRECOPY_INFO", lambda: ioctl.precopy_info(self.fd, arg))

    def poll(self, events: int, timeout_ms: int) -> int:
        return self._dog.call("poll(data_fd)", lambda: FdStream.poll(self, events, timeout_ms),
                              extra=max(0, timeout_ms) / 1000)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._dog.lost is not None:  # release may wait on a lock the hung call holds: do not wait
            threading.Thread(target=_close_quietly, args=(self.fd,), daemon=True).start()
            return
        self._dog.call("close(data_fd)", lambda: os.close(self.fd))


class VfioDevice:
    """One opened VFIO device (see the module rules)."""

    def __init__(self, resolved: ResolvedDevice, io: DeviceIO, watchdog: Watchdog, role: Role = Role.DUT,
                 kernel_log: KernelLogReader | None = None,
                 on_close: Callable[[VfioDevice], None] | None = None,
                 reopener: Callable[[], DeviceIO] | None = None,
                 again: Callable[[DeviceIO], DeviceIO] | None = None) -> None:
        self.resolved = resolved
        self.io = io
        self.watchdog = watchdog
        self.role = role
        self.kernel_log = kernel_log
        self._on_close = on_close
        self._reopener = reopener
        self._again = again
        self._regions: dict[int, RegionInfo] = {}
        self.shut = False

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def driver(self) -> str:
        return self.resolved.driver

    # --- MigrationDevice ------------------------------------------------------------------------
    def feature(self, flags: int, payload: bytes = b"", argsz: int | None = None) -> FeatureReply:
        data = bytes(payload)

        def call() -> tuple[bytes, int | None]:
            out = self.io.feature(flags, data, argsz)
            return out, ioctl.returned_data_fd(flags, out)

        def late(result: tuple[bytes, int | None]) -> None:
            if result[1] is not None:
                _close_quietly(result[1])

        out, fd = self.watchdog.call(describe_feature(flags), call, on_late=late)
        return FeatureReply(out, TimedFdStream(fd, self.watchdog) if fd is not None else None)

    def reset(self) -> None:
        self.watchdog.call("VFIO_DEVICE_RESET", self.io.reset)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close(self)

    # --- Reopen, OpenAgain, Losable -------------------------------------------------------------------
    def reopen(self) -> None:
        """Close the device's fds and open it again (a hang or an open that fails loses the device)."""
        if self._reopener is None:
            raise OSError(errno.EOPNOTSUPP, f"{self.name} cannot be opened again by this backend")
        reopener = self._reopener
        self._regions.clear()
        self.watchdog.call("close(device fd)", self.io.close)

        def open_new() -> DeviceIO:
            try:
                return reopener()
            except BackendError as exc:
                raise OSError(errno.EIO, f"opening {self.name} again failed: {exc}") from None

        try:
            self.io = self.watchdog.call("opening the device again", open_new, on_late=lambda io: io.close())
        except OSError as exc:
            self.watchdog.mark_lost(f"{self.name} could not be opened again: {exc}")
            raise

    def open_again(self) -> VfioDevice:
        """A second open while this one stays open (see the module rules)."""
        if self._again is None:
            raise OSError(errno.EOPNOTSUPP, f"{self.name} cannot be opened a second time by this backend")
        again, first = self._again, self.io
        io = self.watchdog.call("a second open of the device", lambda: again(first), on_late=lambda io: io.close())
        return VfioDevice(self.resolved, io, self.watchdog, self.role, self.kernel_log,
                          on_close=lambda d: d.watchdog.call("close(second device fd)", d.io.close))

    def mark_lost(self, reason: str) -> None:
        self.watchdog.mark_lost(reason)

    def lost_reason(self) -> str | None:
        return self.watchdog.lost

    # --- KernelLog ----------------------------------------------------------------------------------
    def take_kernel_messages(self) -> list[str]:
        return self.kernel_log.take() if self.kernel_log is not None else []

    # --- region access (RegionAccess, for device profiles) --------------------------------------
    def region_info(self, index: int) -> RegionInfo:
        if index not in self._regions:
            self._regions[index] = self.watchdog.call("VFIO_DEVICE_GET_REGION_INFO",
                                                      lambda: self.io.region_info(index))
        return self._regions[index]

    def region_read(self, index: int, offset: int, size: int) -> bytes:
        base = self.region_info(index).offset
        return self.watchdog.call("pread(device region)", lambda: self.io.pread(size, base + offset))

    def region_write(self, index: int, offset: int, data: bytes) -> None:
        base = self.region_info(index).offset
        self.watchdog.call("pwrite(device region)", lambda: self.io.pwrite(data, base + offset))

    def current_state(self) -> int:
        return get_state(self)

    # --- the real close -----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Reset a device left outside RUNNING, then close its fds (see the module rules)."""
        if self.shut:
            return
        self.shut = True
        if self.watchdog.lost is None:
            try:
                if get_state(self) != State.RUNNING:
                    self.reset()
            except OSError:
                pass
            self.io.close()
            return
        closer = threading.Thread(target=self.io.close, daemon=True)  # release may wait on a dead task's lock
        closer.start()
        closer.join(self.watchdog.timeout or None)


class ProfiledVfioDevice(VfioDevice):
    """A ``VfioDevice`` whose driver has a profile: also a ``DeviceProfile``."""

    def __init__(self, resolved: ResolvedDevice, io: DeviceIO, watchdog: Watchdog, profile: DriverProfile,
                 role: Role = Role.DUT, kernel_log: KernelLogReader | None = None,
                 on_close: Callable[[VfioDevice], None] | None = None,
                 reopener: Callable[[], DeviceIO] | None = None,
                 again: Callable[[DeviceIO], DeviceIO] | None = None) -> None:
        super().__init__(resolved, io, watchdog, role, kernel_log, on_close, reopener, again)
        self.profile = profile

    def dirty(self, seed: int) -> None:
        self.profile.dirty(self, seed)

    def state_digest(self) -> bytes:
        return self.profile.state_digest(self)
