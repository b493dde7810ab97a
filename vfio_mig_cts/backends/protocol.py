"""The backend interface: what every backend (mock, real VFIO, third-party) implements.

A backend gives the suite devices; a device answers ``VFIO_DEVICE_FEATURE`` calls, resets, and
hands out migration data streams. Every error is raised as ``OSError`` carrying the errno the kernel
would return (``errno.EINVAL``, ``errno.ENOTTY`` ...), in every backend, so the suite judges all of
them alike. See ``docs/backends.md``.

This module imports nothing else of the project but the uAPI bindings, so a third-party backend
can depend on it alone.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import fcntl
import os
import select
import struct
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import Feature, MigFlag, State

POLLIN = 0x001
POLLOUT = 0x004
POLLERR = 0x008
POLLHUP = 0x010


class Role(enum.Enum):
    """Which device a test asks for."""

    DUT = "dut"  # the device under test (also the source of a migration)
    PEER = "peer"  # a compatible target for resume tests
    INCOMPATIBLE = "incompatible"  # a device whose streams the DUT must refuse


class Unavailable(Exception):
    """The backend cannot provide what a test asked for; ``str()`` is the skip reason."""


class DeviceUnusable(RuntimeError):
    """A device went bad earlier in the run (a finding named it) and is not used again; ``str()`` says why."""


class Hazard(enum.Enum):
    """Kinds of request known to hang or crash some kernels (a ``hazard`` mark's ``kind``)."""

    BLOCKED_ARC = "blocked-arc"  # STOP_COPY -> PRE_COPY{,_P2P}: spins in the core without the loop fix
    SET_FROM_ERROR = "set-from-error"  # the core WARN_ONs (fatal under panic_on_warn)
    DRIVER = "driver"  # a driver's known crash (mtty's oops after a close in RESUMING): hazardous everywhere


@dataclass(frozen=True)
class KernelProfile:
    """Core behaviour that differs between kernels (drivers/vfio/vfio_main.c history)."""

    name: str
    # "vfio: return -ENOTTY for unsupported device feature" (2025): ENOTTY after, EINVAL before.
    unknown_feature_errno: int = errno.ENOTTY
    # "vfio: prevent infinite loop in vfio_mig_get_next_state() on blocked arc" (7.2, backported to
    # some stable kernels, Debian's 6.12.117 among them): without it STOP_COPY -> PRE_COPY{,_P2P}
    # spins forever under the driver's state mutex.
    blocked_arc_fix: bool = True
    # VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 (12) and VFIO_PRECOPY_INFO_REINIT (7.1).
    precopy_info_v2: bool = False
    # The core WARN_ONs when a driver asks for the next state from one it does not support (ERROR).
    warn_on_set_from_error: bool = True
    # Kernel release this profile was detected from, when it was.
    release: str = ""

    def hazardous(self, kind: Hazard) -> bool:
        """Whether a request of this kind may hang or crash this kernel."""
        if kind is Hazard.BLOCKED_ARC:
            return not self.blocked_arc_fix
        if kind is Hazard.SET_FROM_ERROR:
            return self.warn_on_set_from_error
        return True

    def describe(self) -> str:
        return (f"{self.name} (unknown feature -> {errno.errorcode[self.unknown_feature_errno]}, "
                f"blocked-arc fix {'yes' if self.blocked_arc_fix else 'no'}, "
                f"PRECOPY_INFOv2 {'yes' if self.precopy_info_v2 else 'no'})")


KERNEL_PROFILES: dict[str, KernelProfile] = {
    p.name: p for p in (
        KernelProfile("debian-6.12.117", errno.ENOTTY, blocked_arc_fix=True),
        KernelProfile("6.12-unfixed", errno.EINVAL, blocked_arc_fix=False),
        KernelProfile("7.1", errno.ENOTTY, blocked_arc_fix=False, precopy_info_v2=True),
        KernelProfile("7.2", errno.ENOTTY, blocked_arc_fix=True, precopy_info_v2=True),
    )
}
DEFAULT_PROFILE = "debian-6.12.117"


@dataclass(frozen=True)
class FeatureReply:
    """The result of one successful ``VFIO_DEVICE_FEATURE`` ioctl.

    ``payload`` is the data part of the argument after the call (what the kernel copied back, or the
    caller's bytes unchanged); ``stream`` is the data stream when the call installed a data_fd.
    """

    payload: bytes
    stream: DataStream | None = None


@dataclass(frozen=True)
class PrecopyInfo:
    """``struct vfio_precopy_info`` as returned."""

    argsz: int
    flags: int
    initial_bytes: int
    dirty_bytes: int

    @classmethod
    def unpack(cls, raw: bytes) -> PrecopyInfo:
        """The struct at the start of ``raw`` (zero-filled when ``raw`` is shorter), through the uAPI binding."""
        s = uapi.vfio_precopy_info.from_buffer_copy(bytes(raw[:uapi.PRECOPY_INFO_SIZE]).ljust(uapi.PRECOPY_INFO_SIZE,
                                                                                             b"\0"))
        return cls(s.argsz, s.flags, s.initial_bytes, s.dirty_bytes)

    def pack(self) -> bytes:
        return bytes(uapi.vfio_precopy_info(self.argsz, self.flags, self.initial_bytes, self.dirty_bytes))


def pack_precopy_info(argsz: int = uapi.PRECOPY_INFO_SIZE, flags: int = 0, initial: int = 0,
                      dirty: int = 0) -> bytes:
    """A ``vfio_precopy_info`` argument with chosen contents (to show the driver ignores them)."""
    return PrecopyInfo(argsz, flags, initial, dirty).pack()


@runtime_checkable
class DataStream(Protocol):
    """A migration data_fd: a saving stream (read) or a resuming stream (write).

    Operations raise ``OSError(errno)`` exactly where the syscall would fail.
    """

    @property
    def fd(self) -> int:
        """The file descriptor number on a real kernel, -1 where there is none (the mock)."""
        ...

    def read(self, size: int) -> bytes:
        """read(2): up to ``size`` bytes; ``b""`` is end of stream."""
        ...

    def write(self, data: bytes) -> int:
        """write(2): the number of bytes taken."""
        ...

    def pread(self, size: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes, offset: int) -> int: ...

    def lseek(self, offset: int, whence: int) -> int: ...

    def precopy_info(self, arg: bytes) -> bytes:
        """``VFIO_MIG_GET_PRECOPY_INFO`` with ``arg`` as the in/out buffer; returns it after the call."""
        ...

    def poll(self, events: int, timeout_ms: int) -> int:
        """poll(2) on this fd alone: the returned ``revents`` (0 on timeout)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class MigrationDevice(Protocol):
    """One VFIO device with migration support, opened for the suite."""

    @property
    def name(self) -> str:
        """How reports name the device (PCI address, mdev UUID, mock id)."""
        ...

    @property
    def driver(self) -> str:
        """The driver's name, as expectation files match it (``mtty``, ``mlx5_vfio_pci``, ``mock``)."""
        ...

    def feature(self, flags: int, payload: bytes = b"", argsz: int | None = None) -> FeatureReply:
        """Raw ``VFIO_DEVICE_FEATURE``: ``argsz`` defaults to the header plus ``len(payload)``."""
        ...

    def reset(self) -> None:
        """``VFIO_DEVICE_RESET``."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """A source of devices. ``--backend`` names one; the suite asks it for devices by role.

    ``real``: whether its devices are real (hazardous requests are then not run unless asked for); a
    backend without the attribute is taken as real."""

    name: str

    def feature_sets(self) -> list[int]:
        """The migration flag sets to test: the mock offers all four; real devices their own."""
        ...

    def open(self, role: Role, flags: int) -> MigrationDevice:
        """A device in RUNNING with these migration flags, or ``Unavailable`` with the reason."""
        ...

    def kernel_profile(self) -> KernelProfile: ...

    def close(self) -> None: ...


# --- optional capabilities (checked with isinstance; a backend without one skips what needs it) ----

@runtime_checkable
class ErrorInjection(Protocol):
    """Puts the device into ERROR (the mock's fault hook; no real device offers it)."""

    def inject_error(self) -> None: ...


@runtime_checkable
class ArcTrace(Protocol):
    """The single arcs the driver executed since the last call (the mock records them)."""

    def take_arcs(self) -> list[tuple[State, State]]: ...


@runtime_checkable
class KernelLog(Protocol):
    """Kernel messages (WARN, BUG, Oops) that appeared since the last call."""

    def take_kernel_messages(self) -> list[str]: ...


@runtime_checkable
class DeviceProfile(Protocol):
    """What the uAPI cannot say generically: how to change a device's state and compare two."""

    def dirty(self, seed: int) -> None:
        """Change the device's internal state as a running guest would (only in running states)."""
        ...

    def state_digest(self) -> bytes:
        """A digest of the migratable device state, equal on source and target after a round trip."""
        ...


@runtime_checkable
class Reopen(Protocol):
    """Closes the device and opens it again, as a crashed VMM's exit and a new VMM would.

    Every fd of the device itself is closed (the kernel's close_device runs) and a new one opened in
    its place; the same object goes on being the device. Data fds the test still holds stay open.
    A close or open that hangs raises ``OSError(ETIMEDOUT)`` (as the vfio backend's watchdog does).
    """

    def reopen(self) -> None: ...


@runtime_checkable
class DmaWriter(Protocol):
    """Makes the device write guest memory by DMA (the mock's hook; a real device needs a profile)."""

    def dma_write(self, iova: int, length: int) -> None: ...


@runtime_checkable
class Losable(Protocol):
    """A device the backend can write off for the rest of the run (the vfio backend's quarantine)."""

    def mark_lost(self, reason: str) -> None: ...

    def lost_reason(self) -> str | None: ...


@runtime_checkable
class RaceWindow(Protocol):
    """The driver sleeps this long inside each arc and each read, holding its locks (the mock)."""

    def widen_race_window(self, seconds: float) -> None: ...


@runtime_checkable
class OpenAgain(Protocol):
    """Opens the device a second time while this handle stays open (the group path allows it; the cdev
    path refuses with EINVAL). The new handle's ``close()`` closes only that open."""

    def open_again(self) -> MigrationDevice: ...


# --- operations every backend gets for free, built on feature() -----------------------------------

def _u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def migration_flags(dev: MigrationDevice) -> int:
    """GET ``VFIO_DEVICE_FEATURE_MIGRATION``: the device's migration flags."""
    reply = dev.feature(uapi.VFIO_DEVICE_FEATURE_GET | Feature.MIGRATION, bytes(8))
    return int(struct.unpack_from("<Q", reply.payload)[0])


def get_state(dev: MigrationDevice) -> int:
    """GET ``VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE``: the current state (as a raw number)."""
    reply = dev.feature(uapi.VFIO_DEVICE_FEATURE_GET | Feature.MIG_DEVICE_STATE,
                        struct.pack("<Ii", 0, -1))
    return int(struct.unpack_from("<I", reply.payload)[0])


def get_state_fd(dev: MigrationDevice) -> tuple[int, int]:
    """GET MIG_DEVICE_STATE returning (device_state, data_fd) as the kernel wrote them."""
    reply = dev.feature(uapi.VFIO_DEVICE_FEATURE_GET | Feature.MIG_DEVICE_STATE,
                        struct.pack("<Ii", 0, 12345))
    state, fd = struct.unpack_from("<Ii", reply.payload)
    return int(state), int(fd)


def set_state(dev: MigrationDevice, state: int) -> DataStream | None:
    """SET ``VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE``: the new session's stream, or None."""
    reply = dev.feature(uapi.VFIO_DEVICE_FEATURE_SET | Feature.MIG_DEVICE_STATE,
                        _u32(state) + struct.pack("<i", -1))
    return reply.stream


def data_size(dev: MigrationDevice) -> int:
    """GET ``VFIO_DEVICE_FEATURE_MIG_DATA_SIZE``: the estimated STOP_COPY length."""
    reply = dev.feature(uapi.VFIO_DEVICE_FEATURE_GET | Feature.MIG_DATA_SIZE, bytes(8))
    return int(struct.unpack_from("<Q", reply.payload)[0])


def precopy_info(stream: DataStream, argsz: int = uapi.PRECOPY_INFO_SIZE, flags: int = 0,
                 fill: int = 0) -> PrecopyInfo:
    """``VFIO_MIG_GET_PRECOPY_INFO`` with the counters pre-filled with ``fill``."""
    return PrecopyInfo.unpack(stream.precopy_info(pack_precopy_info(argsz, flags, fill, fill)))


def flags_name(flags: int) -> str:
    """``STOP_COPY|P2P`` style name of a migration flag set."""
    names = [f.name for f in MigFlag if flags & f and f.name]
    rest = flags & ~int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


# --- a DataStream over a real file descriptor (real backends, and fds a third party returns) ------

class FdStream:
    """A ``DataStream`` over a kernel file descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.closed = False

    @property
    def fd(self) -> int:
        return self._fd

    def read(self, size: int) -> bytes:
        return os.read(self._fd, size)

    def write(self, data: bytes) -> int:
        return os.write(self._fd, data)

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return os.pwrite(self._fd, data, offset)

    def lseek(self, offset: int, whence: int) -> int:
        return os.lseek(self._fd, offset, whence)

    def precopy_info(self, arg: bytes) -> bytes:
        buf = ctypes.create_string_buffer(bytes(arg), max(len(arg), uapi.PRECOPY_INFO_SIZE))
        fcntl.ioctl(self._fd, uapi.VFIO_MIG_GET_PRECOPY_INFO, buf, True)
        return bytes(buf.raw[: len(arg)])

    def poll(self, events: int, timeout_ms: int) -> int:
        p = select.poll()
        p.register(self._fd, events)
        res = p.poll(timeout_ms)
        return res[0][1] if res else 0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)


__all__ = [
    "KERNEL_PROFILES",
    "Backend",
    "DataStream",
    "DeviceUnusable",
    "DmaWriter",
    "FdStream",
    "FeatureReply",
    "Hazard",
    "KernelProfile",
    "Losable",
    "MigrationDevice",
    "OpenAgain",
    "PrecopyInfo",
    "RaceWindow",
    "Role",
    "State",
    "Unavailable",
    "data_size",
    "flags_name",
    "get_state",
    "get_state_fd",
    "migration_flags",
    "pack_precopy_info",
    "precopy_info",
    "set_state",
]
