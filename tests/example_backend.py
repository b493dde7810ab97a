"""An example third-party backend: a tiny STOP_COPY-only device model, written as a driver would be.

Run the conformance suite against it with::

    python -m pytest suites --backend tests.example_backend:create

It imports nothing of the project but ``vfio_mig_cts.backends.protocol`` (the protocol) and ``vfio_mig_cts.uapi.vfio``
(the header's numbers), which is all a backend for your own device model or hardware harness needs.
Each piece names the kernel code whose behaviour it reproduces (Linux 6.12): the core's checks in
``vfio_ioctl_device_feature()`` (drivers/vfio/vfio_main.c) and ``vfio_check_feature()``
(include/linux/vfio.h), the state machine of ``vfio_mig_get_next_state()``, and the data_fd rules
of include/uapi/linux/vfio.h. Every error is ``OSError`` carrying the errno the kernel returns.
See docs/backends.md for a walk-through.
"""

from __future__ import annotations

import errno
import hashlib
import struct
from collections.abc import Callable
from typing import Any

from vfio_mig_cts.backends.protocol import (
    DEFAULT_PROFILE,
    KERNEL_PROFILES,
    POLLIN,
    POLLOUT,
    FeatureReply,
    KernelProfile,
    Role,
    Unavailable,
)
from vfio_mig_cts.uapi.vfio import FEATURE_HEADER_SIZE, VFIO_DEVICE_FEATURE_MASK, Feature, MigFlag, State
from vfio_mig_cts.uapi.vfio import VFIO_DEVICE_FEATURE_GET as GET
from vfio_mig_cts.uapi.vfio import VFIO_DEVICE_FEATURE_PROBE as PROBE
from vfio_mig_cts.uapi.vfio import VFIO_DEVICE_FEATURE_SET as SET

FLAGS = int(MigFlag.STOP_COPY)  # the one feature set this device offers
SUPPORTED = frozenset({State.RUNNING, State.STOP, State.STOP_COPY, State.RESUMING})  # state_flags_table
MAGIC = b"EXAMPLE1"  # stream format: MAGIC followed by the device's whole internal state


def _err(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)))


class _Stream:
    """A data_fd. The kernel's migration files are stream_open()ed (no offsets) and end with their session."""

    fd = -1  # no kernel file behind this one

    def __init__(self) -> None:
        self.dead = False  # the session ended: drivers then fail read/write with ENODEV (mtty: "disabled")
        self.closed = False

    def _check(self, right_direction: bool) -> None:
        """vfs_read()/vfs_write(): EBADF for a closed fd or the wrong direction, then the driver's ENODEV."""
        if self.closed or not right_direction:
            raise _err(errno.EBADF)
        if self.dead:
            raise _err(errno.ENODEV)

    def read(self, size: int) -> bytes:
        self._check(False)  # the resuming file is opened O_WRONLY
        return b""

    def write(self, data: bytes) -> int:
        self._check(False)  # the saving file is opened O_RDONLY
        return 0

    def pread(self, size: int, offset: int) -> bytes:
        raise _err(errno.ESPIPE)  # stream_open() clears FMODE_PREAD

    def pwrite(self, data: bytes, offset: int) -> int:
        raise _err(errno.ESPIPE)  # ... and FMODE_PWRITE

    def lseek(self, offset: int, whence: int) -> int:
        raise _err(errno.ESPIPE)  # no_llseek

    def precopy_info(self, arg: bytes) -> bytes:
        raise _err(errno.ENOTTY)  # VFIO_MIG_GET_PRECOPY_INFO exists only with PRE_COPY

    def poll(self, events: int, timeout_ms: int) -> int:
        return events & (POLLIN | POLLOUT)  # no .poll op: vfs_poll() reports DEFAULT_POLLMASK

    def close(self) -> None:
        self.closed = True


class SaveStream(_Stream):
    """The STOP_COPY data_fd (read-only): the whole stream, then read() returning 0 for good."""

    def __init__(self, image: bytes) -> None:
        super().__init__()
        self._pending = bytearray(image)

    def read(self, size: int) -> bytes:
        self._check(True)
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out


class ResumeStream(_Stream):
    """The RESUMING data_fd (write-only): bytes are kept and checked when the device leaves RESUMING."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self._check(True)
        self.data += data
        return len(data)


class ExampleDevice:
    """One device: the core's VFIO_DEVICE_FEATURE plumbing in front of a STOP_COPY driver."""

    def __init__(self, name: str, state_size: int, profile: KernelProfile) -> None:
        self.name = name
        self.driver = "example"
        self.profile = profile
        self.state_size = state_size
        self.memory = bytearray(state_size)
        self.state = State.RUNNING
        self.session: SaveStream | ResumeStream | None = None
        # feature id -> (supported methods, sizeof the feature's struct, handler): the core's handlers
        self.features: dict[int, tuple[int, int, Callable[[int, bytes], FeatureReply]]] = {
            Feature.MIGRATION: (GET, 8, self._migration),
            Feature.MIG_DEVICE_STATE: (GET | SET, 8, self._mig_state),
            Feature.MIG_DATA_SIZE: (GET, 8, self._data_size),
        }

    # --- vfio_ioctl_device_feature() and vfio_check_feature() -------------------------------------
    def feature(self, flags: int, payload: bytes = b"", argsz: int | None = None) -> FeatureReply:
        """The core's checks in its order, then the feature's handler."""
        if argsz is None:
            argsz = FEATURE_HEADER_SIZE + len(payload)
        if argsz < FEATURE_HEADER_SIZE:
            raise _err(errno.EINVAL)  # feature.argsz < minsz
        if flags & ~(VFIO_DEVICE_FEATURE_MASK | GET | SET | PROBE):
            raise _err(errno.EINVAL)  # "Check unknown flags"
        if not flags & PROBE and flags & GET and flags & SET:
            raise _err(errno.EINVAL)  # "GET & SET are mutually exclusive except with PROBE"
        fid = flags & VFIO_DEVICE_FEATURE_MASK
        if fid not in self.features:
            if fid in (Feature.DMA_LOGGING_START, Feature.DMA_LOGGING_STOP, Feature.DMA_LOGGING_REPORT):
                raise _err(errno.ENOTTY)  # no device->log_ops
            raise _err(self.profile.unknown_feature_errno)  # the default: branch (ENOTTY since 2025)
        supported, minsz, handler = self.features[fid]
        size = argsz - FEATURE_HEADER_SIZE
        if flags & (GET | SET) & ~supported:
            raise _err(errno.EINVAL)  # vfio_check_feature(): a method the feature lacks
        if flags & PROBE:
            return FeatureReply(payload)  # PROBE succeeds before any size check
        if not flags & (GET | SET):
            raise _err(errno.EINVAL)  # "Without PROBE one of GET or SET must be requested"
        if size < minsz:
            raise _err(errno.EINVAL)  # argsz < minsz
        if len(payload) < minsz:
            raise _err(errno.EFAULT)  # argsz promised more than the caller's buffer holds
        return handler(flags, payload)

    def _migration(self, flags: int, payload: bytes) -> FeatureReply:
        return FeatureReply(struct.pack("<Q", FLAGS) + payload[8:])

    def _data_size(self, flags: int, payload: bytes) -> FeatureReply:
        return FeatureReply(struct.pack("<Q", len(MAGIC) + self.state_size) + payload[8:])

    def _mig_state(self, flags: int, payload: bytes) -> FeatureReply:
        if flags & GET:
            return FeatureReply(struct.pack("<Ii", self.state, -1) + payload[8:])  # GET: data_fd -1
        (new,) = struct.unpack_from("<I", payload)
        stream = self.set_state(new)
        return FeatureReply(struct.pack("<Ii", new, stream.fd if stream else -1) + payload[8:], stream)

    # --- the driver: migration_set_state() ---------------------------------------------------------
    def next_state(self, cur: State, new: int) -> State:
        """vfio_mig_get_next_state() for flags == STOP_COPY: every path between two states runs through STOP.

        RUNNING_P2P is unsupported, so the table's RUNNING <-> STOP hops through it are skipped over.
        Unsupported, out-of-range and ERROR targets (and any SET from ERROR) are EINVAL.
        """
        if cur not in SUPPORTED or new not in SUPPORTED:
            raise _err(errno.EINVAL)
        return State(new) if cur == State.STOP else State.STOP

    def set_state(self, new: int) -> SaveStream | ResumeStream | None:
        """The upstream loop ``while (cur != new) { next_state(); step(); }``: one arc at a time.

        SET to the current state runs no arc and returns no data_fd. A failing arc leaves the device
        in the state it had reached; a refused request (EINVAL from next_state) changes nothing.
        """
        stream = None
        while self.state != new:
            nxt = self.next_state(self.state, new)
            stream = self.step(self.state, nxt)
            self.state = nxt
        return stream

    def step(self, cur: State, nxt: State) -> SaveStream | ResumeStream | None:
        """One FSM arc; STOP -> STOP_COPY and STOP -> RESUMING begin a session and return its data_fd."""
        if (cur, nxt) == (State.STOP, State.STOP_COPY):
            self.session = SaveStream(MAGIC + bytes(self.memory))
            return self.session
        if (cur, nxt) == (State.STOP, State.RESUMING):
            self.session = ResumeStream()
            return self.session
        if (cur, nxt) == (State.RESUMING, State.STOP):
            # "If the user provided data is found to be incomplete, inconsistent, or otherwise
            # invalid, the migration driver must fail the SET_STATE ioctl"
            assert isinstance(self.session, ResumeStream)
            data = bytes(self.session.data)
            if len(data) != len(MAGIC) + self.state_size or not data.startswith(MAGIC):
                raise _err(errno.EINVAL)
            self.memory[:] = data[len(MAGIC):]
        self.end_session()  # STOP_COPY -> STOP and RESUMING -> STOP terminate the session
        return None  # RUNNING <-> STOP: the device stops or runs; nothing to stream

    def end_session(self) -> None:
        if self.session is not None:
            self.session.dead = True
            self.session = None

    # --- the rest of the device --------------------------------------------------------------------
    def reset(self) -> None:
        """VFIO_DEVICE_RESET: any session ends, the device is back in RUNNING (from ERROR too)."""
        self.end_session()
        self.state = State.RUNNING

    def close(self) -> None:
        self.end_session()

    # The optional DeviceProfile capability: what a running guest does, and a digest to compare.
    def dirty(self, seed: int) -> None:
        if self.state == State.RUNNING:  # "It must not change its internal state" while stopped
            self.memory[seed % self.state_size] ^= 0xFF

    def state_digest(self) -> bytes:
        return hashlib.sha256(self.memory).digest()


class ExampleBackend:
    """Hands out a fresh device per request; the INCOMPATIBLE one has a state of another size."""

    name = "example"

    def __init__(self, profile: KernelProfile) -> None:
        self.profile = profile

    def feature_sets(self) -> list[int]:
        return [FLAGS]

    def open(self, role: Role, flags: int) -> ExampleDevice:
        if flags != FLAGS:
            raise Unavailable(f"the example device supports migration flags {FLAGS:#x} only")
        size = 128 if role is Role.INCOMPATIBLE else 64
        return ExampleDevice(f"example-{role.value}", size, self.profile)

    def kernel_profile(self) -> KernelProfile:
        return self.profile

    def close(self) -> None:
        pass


def create(options: Any) -> ExampleBackend:
    """The factory ``--backend tests.example_backend:create`` names.

    ``options`` is a ``vfio_mig_cts.backends.loader.BackendOptions``; this backend reads only ``kernel_profile``
    (``--kernel-profile``: which core behaviour to judge against, KERNEL_PROFILES in vfio_mig_cts/backends/protocol.py).
    """
    name = options.kernel_profile or DEFAULT_PROFILE
    if name not in KERNEL_PROFILES:
        raise ValueError(f"unknown kernel profile {name!r} (known: {', '.join(KERNEL_PROFILES)})")
    return ExampleBackend(KERNEL_PROFILES[name])
