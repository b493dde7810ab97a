"""The mock backend: devices whose ``VFIO_DEVICE_FEATURE`` calls go through a model of the core.

The core's checks follow ``vfio_ioctl_device_feature()`` (drivers/vfio/vfio_main.c) and
``vfio_check_feature()`` (include/linux/vfio.h); the handlers follow the per-feature functions.
"""

from __future__ import annotations

import errno
import itertools
import struct
from collections.abc import Callable
from dataclasses import replace

from vfio_mig_cts.backends.mock import resuming
from vfio_mig_cts.backends.mock.dma import DmaLog
from vfio_mig_cts.backends.mock.driver import MockConfig, MockDriver
from vfio_mig_cts.backends.mock.quirks import Quirks
from vfio_mig_cts.backends.protocol import (
    DEFAULT_PROFILE,
    KERNEL_PROFILES,
    FeatureReply,
    KernelProfile,
    Role,
)
from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import Feature, MigFlag, State

GET, SET, PROBE = uapi.VFIO_DEVICE_FEATURE_GET, uapi.VFIO_DEVICE_FEATURE_SET, uapi.VFIO_DEVICE_FEATURE_PROBE
KNOWN_FLAGS = uapi.VFIO_DEVICE_FEATURE_MASK | GET | SET | PROBE
FEATURE_SETS = [int(MigFlag.STOP_COPY), int(MigFlag.STOP_COPY | MigFlag.P2P),
                int(MigFlag.STOP_COPY | MigFlag.PRE_COPY), int(MigFlag.STOP_COPY | MigFlag.P2P | MigFlag.PRE_COPY)]
_ids = itertools.count(1)


def _err(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)))


class MockDeviceBase:
    """A mock VFIO device: the core's feature plumbing in front of a driver (``MockDriver`` or a
    personality's). It has what the vfio backend's devices have: ``KernelLog``, ``Reopen``, a second
    open; the optional capabilities a real device lacks are the mixins below."""

    def __init__(self, cfg: MockConfig, name: str | None = None) -> None:
        self.cfg = cfg
        self.q: Quirks = cfg.quirks
        self.drv = (cfg.driver_class or MockDriver)(cfg)
        self._name = name or f"mock{next(_ids)}"
        self.dma: DmaLog = self.drv.dma  # DMA logging (vfio_mig_cts/backends/mock/dma.py)
        self._second = False  # a second open of the device (open_again)
        self._handlers: dict[int, tuple[int, int, Callable[[int, bytes], FeatureReply]]] = {
            Feature.MIGRATION: (GET, 8, self._migration),
            Feature.MIG_DEVICE_STATE: (GET | SET, 8, self._mig_state),
            Feature.MIG_DATA_SIZE: (GET, 8, self._data_size),
        }
        if cfg.dma_logging:
            self._handlers[Feature.DMA_LOGGING_START] = (SET, 24, self._log_start)
            self._handlers[Feature.DMA_LOGGING_STOP] = (SET, 0, self._log_stop)
            self._handlers[Feature.DMA_LOGGING_REPORT] = (GET, 32, self._log_report)
        if cfg.profile.precopy_info_v2:
            self._handlers[Feature.MIG_PRECOPY_INFOv2] = (SET, 0, self._precopy_v2)

    @property
    def name(self) -> str:
        return self._name

    @property
    def driver(self) -> str:
        return self.cfg.driver_name

    # --- vfio_ioctl_device_feature() ---------------------------------------------------------------
    def feature(self, flags: int, payload: bytes = b"", argsz: int | None = None) -> FeatureReply:
        q = self.q
        if argsz is None:
            argsz = uapi.FEATURE_HEADER_SIZE + len(payload)
        if argsz < uapi.FEATURE_HEADER_SIZE and not q.accept_short_argsz:
            raise _err(errno.EINVAL)
        if flags & ~KNOWN_FLAGS and not q.accept_unknown_flags:
            raise _err(errno.EINVAL)
        if not flags & PROBE and flags & SET and flags & GET and not q.accept_get_and_set:
            raise _err(errno.EINVAL)
        fid = flags & uapi.VFIO_DEVICE_FEATURE_MASK
        entry = self._handlers.get(fid)
        if entry is None:
            raise _err(q.unknown_feature_errno or self.cfg.profile.unknown_feature_errno)
        ops, minsz, handler = entry
        size = max(0, argsz - uapi.FEATURE_HEADER_SIZE)
        if not self._check_feature(flags, size, ops, minsz):
            return FeatureReply(payload)
        if size > len(payload):
            raise _err(errno.EFAULT)  # the kernel would read past the caller's buffer
        reply = handler(flags, payload[:max(size, minsz)] if q.accept_short_payload else payload)
        if q.reply_tail_shifted and fid in (Feature.MIG_DEVICE_STATE, Feature.MIG_DATA_SIZE):
            reply = FeatureReply(reply.payload[:8] + reply.payload[9:], reply.stream)  # (fault) the tail moves
        if q.set_reply_fd_not_minus_one and flags & SET and fid == Feature.MIG_DEVICE_STATE and reply.stream is None:
            reply = FeatureReply(reply.payload[:4] + struct.pack("<i", -2) + reply.payload[8:])  # (fault)
        if q.reply_overruns_buffer and flags & GET and fid == Feature.MIG_DEVICE_STATE and len(payload) == 8:
            reply = FeatureReply(reply.payload + b"\0", reply.stream)  # (fault) a byte past the caller's buffer
        return reply

    def _check_feature(self, flags: int, argsz: int, supported: int, minsz: int) -> bool:
        """vfio_check_feature(): False for a successful PROBE, True to go on, OSError otherwise."""
        q = self.q
        if flags & (GET | SET) & ~supported and not (q.accept_wrong_op and not flags & PROBE) \
                and not (q.probe_ignores_ops and flags & PROBE):
            raise _err(errno.EINVAL)
        if flags & PROBE:
            if q.probe_needs_payload and argsz < minsz:
                raise _err(errno.EINVAL)
            return False
        if not flags & (GET | SET) and not q.accept_no_op:
            raise _err(errno.EINVAL)
        if argsz < minsz and not q.accept_short_payload:
            raise _err(errno.EINVAL)
        return True

    # --- handlers ------------------------------------------------------------------------------------
    def _migration(self, flags: int, payload: bytes) -> FeatureReply:
        mflags = self.q.migration_flags_override or self.cfg.flags
        return FeatureReply(struct.pack("<Q", mflags) + payload[8:])

    def _mig_state(self, flags: int, payload: bytes) -> FeatureReply:
        payload = payload.ljust(8, b"\0")
        if flags & GET:
            fd = 0 if self.q.get_fd_not_minus_one else -1
            return FeatureReply(struct.pack("<Ii", self.drv.get_state(), fd) + payload[8:])
        (new,) = struct.unpack_from("<I", payload)
        stream = self.drv.set_state(new)  # on error the core echoes {new, -1}; GET tells the truth
        return FeatureReply(struct.pack("<Ii", new, -1) + payload[8:], stream)

    def _data_size(self, flags: int, payload: bytes) -> FeatureReply:
        if self.drv.state == self.q.data_size_fails_in:
            raise _err(errno.EINVAL)
        size = 0 if self.q.data_size_zero else self.drv.stop_copy_length()
        return FeatureReply(struct.pack("<Q", size) + payload[8:])

    def _log_start(self, flags: int, payload: bytes) -> FeatureReply:
        return FeatureReply(self.dma.start(payload))

    def _log_stop(self, flags: int, payload: bytes) -> FeatureReply:
        self.dma.stop()
        return FeatureReply(payload)

    def _log_report(self, flags: int, payload: bytes) -> FeatureReply:
        return FeatureReply(self.dma.report(payload))

    def _precopy_v2(self, flags: int, payload: bytes) -> FeatureReply:
        if not self.cfg.flags & MigFlag.PRE_COPY:
            raise _err(errno.EINVAL)
        self.drv.precopy_v2 = True
        return FeatureReply(payload)

    # --- the rest of the device --------------------------------------------------------------------
    def reset(self) -> None:
        self.drv.reset()

    def close(self) -> None:
        if self._second and self.q.second_open_reinits:
            resuming.close_device(self.drv)

    def take_kernel_messages(self) -> list[str]:
        msgs, self.drv.kernel_log = self.drv.kernel_log, []
        return msgs

    def reopen(self) -> None:
        """Reopen: close_device then open_device (vfio_mig_cts/backends/mock/resuming.py); DMA logging stops."""
        self.dma.stop()
        resuming.close_device(self.drv)
        resuming.open_device(self.drv)

    def open_again(self) -> MockDeviceBase:
        """A second open of this device, as the group path allows: the core runs open_device only for the
        first open and close_device only for the last close, so the two handles share one device."""
        other = type(self)(self.cfg, name=f"{self._name}#2")
        other.drv, other.dma, other._second = self.drv, self.dma, True
        if self.q.second_open_reinits:
            resuming.open_device(self.drv)
        return other


# --- the optional capabilities (vfio_mig_cts/backends/protocol.py), one mixin each ----------------------

class ErrorHook(MockDeviceBase):
    """``ErrorInjection``: the device fails (a real driver goes to ERROR only when its device does)."""

    def inject_error(self) -> None:
        self.drv.fail()


class ArcTraceHook(MockDeviceBase):
    """``ArcTrace``: the single arcs the driver executed."""

    def take_arcs(self) -> list[tuple[State, State]]:
        arcs, self.drv.arcs = self.drv.arcs, []
        return arcs


class ProfileHook(MockDeviceBase):
    """``DeviceProfile``: change the device's state as a guest would, and digest it."""

    def dirty(self, seed: int) -> None:
        self.drv.dirty(seed)

    def state_digest(self) -> bytes:
        return self.drv.digest()


class DmaWriteHook(MockDeviceBase):
    """``DmaWriter``: the device writes guest memory by DMA."""

    def dma_write(self, iova: int, length: int) -> None:
        """The device writes guest memory by DMA: what DMA logging records (vfio_mig_cts/judging/dma.py DmaWriter)."""
        self.dma.device_wrote(iova, length)


class RaceWindowHook(MockDeviceBase):
    """``RaceWindow``: the driver holds its locks longer, so that races show."""

    def widen_race_window(self, seconds: float) -> None:
        """The driver sleeps this long inside each arc and each read, holding its locks
        (vfio_mig_cts/exploration/races.py)."""
        self.cfg.race_delay = seconds
        for s in (self.drv.save, self.drv.resume):
            if s is not None:
                s.race_delay = seconds


class MockDevice(ErrorHook, ArcTraceHook, ProfileHook, DmaWriteHook, RaceWindowHook):
    """The reference mock device: every optional capability."""


class MockBackend:
    """The embedded default backend: a fresh mock device per request, in any feature set."""

    name = "mock"
    real = False  # hazardous requests always run: nothing can hang or crash

    def __init__(self, quirks: Quirks | None = None, profile: str = DEFAULT_PROFILE,
                 state_size: int = 256) -> None:
        self.quirks = quirks or Quirks()
        if profile not in KERNEL_PROFILES:
            raise ValueError(f"unknown kernel profile {profile!r} (known: {', '.join(KERNEL_PROFILES)})")
        self.profile = KERNEL_PROFILES[profile]
        self.state_size = state_size

    def feature_sets(self) -> list[int]:
        return list(FEATURE_SETS)

    def kernel_profile(self) -> KernelProfile:
        return self.profile

    def config(self, role: Role, flags: int) -> MockConfig:
        identity = 0x5EED if role is not Role.INCOMPATIBLE else 0xBAD
        size = self.state_size if role is not Role.INCOMPATIBLE else self.state_size * 2
        return MockConfig(flags=flags, state_size=size, identity=identity, profile=self.profile,
                          quirks=self.quirks)

    def open(self, role: Role, flags: int) -> MockDeviceBase:
        return MockDevice(self.config(role, flags), name=f"mock-{role.value}")

    def close(self) -> None:
        pass


def create(quirks: Quirks | None = None, profile: str = DEFAULT_PROFILE) -> MockBackend:
    return MockBackend(quirks=quirks, profile=profile)


__all__ = ["FEATURE_SETS", "MockBackend", "MockDevice", "create", "replace"]
