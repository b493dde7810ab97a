"""Opening a VFIO device: cdev + iommufd, or the legacy container + group.

Rules:

- ``auto`` takes cdev + iommufd when the device has a ``/dev/vfio/devices/vfioN`` node and
  ``/dev/iommu`` exists, else the legacy group path. ``cdev`` / ``legacy`` force one; a forced path
  the device lacks is a ``BackendError`` naming the missing node.
- cdev: open ``/dev/iommu`` and the cdev node, ``VFIO_DEVICE_BIND_IOMMUFD``, ``IOMMU_IOAS_ALLOC``,
  ``VFIO_DEVICE_ATTACH_IOMMUFD_PT`` to the new IOAS (the device fd answers nothing before that).
- legacy: open ``/dev/vfio/vfio`` (``VFIO_GET_API_VERSION`` must be 0), open the group node,
  ``VFIO_GROUP_GET_STATUS`` must say viable, ``VFIO_GROUP_SET_CONTAINER``, ``VFIO_SET_IOMMU`` with
  type1v2 (else type1: emulated-IOMMU devices such as mdevs accept either), then
  ``VFIO_GROUP_GET_DEVICE_FD`` with the device's name.
- Every failure closes what was opened and becomes a ``BackendError`` naming the node and the fix.
- Closing a handle closes the device fd first (that unbinds / releases the device), then the rest.
- A second open of an open device (``open_again``) uses the handle's own group on the legacy path
  (``VFIO_GROUP_GET_DEVICE_FD`` again: a group opens once, its device many times); on the cdev path
  it opens the node and binds again, which the 6.12 core refuses with EINVAL ("Only the group path
  allows the device to be opened multiple times", ``vfio_df_open``). Its errors stay ``OSError``s:
  a refusal is an answer, not a broken setup.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.vfio.errors import open_error
from vfio_mig_cts.backends.vfio.ioctl import (
    RegionInfo,
    call_with_buffer,
    device_feature,
    device_reset,
    get_region_info,
    ioctl,
)
from vfio_mig_cts.backends.vfio.sysfs import ResolvedDevice
from vfio_mig_cts.uapi import iommufd
from vfio_mig_cts.uapi import vfio as uapi

VFIO_TYPE1_IOMMU = 1


class OpenPath(enum.Enum):
    CDEV = "cdev"
    LEGACY = "legacy"


@dataclass
class DeviceHandle:
    """An open device fd and the fds that keep it usable (iommufd, or group + container)."""

    fd: int
    path: OpenPath
    keep: list[int] = field(default_factory=list)
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self.fd, *self.keep):
            try:
                os.close(fd)
            except OSError:
                pass


# --- argument builders (pure: the unit tests compare their bytes) ---------------------------------

def bind_iommufd_arg(iommufd_fd: int) -> bytes:
    return bytes(uapi.vfio_device_bind_iommufd(argsz=ctypes.sizeof(uapi.vfio_device_bind_iommufd),
                                               flags=0, iommufd=iommufd_fd))


def ioas_alloc_arg() -> bytes:
    return bytes(iommufd.iommu_ioas_alloc(size=ctypes.sizeof(iommufd.iommu_ioas_alloc), flags=0))


def attach_pt_arg(pt_id: int) -> bytes:
    return bytes(uapi.vfio_device_attach_iommufd_pt(argsz=ctypes.sizeof(uapi.vfio_device_attach_iommufd_pt),
                                                    flags=0, pt_id=pt_id))


def group_status_arg() -> bytes:
    return bytes(uapi.vfio_group_status(argsz=ctypes.sizeof(uapi.vfio_group_status), flags=0))


def device_name_arg(name: str) -> bytes:
    """The NUL-terminated name ``VFIO_GROUP_GET_DEVICE_FD`` takes."""
    return name.encode() + b"\0"


# --- path choice ------------------------------------------------------------------------------------

def choose_path(dev: ResolvedDevice, wanted: str, dev_root: Path) -> OpenPath:
    has_cdev = dev.cdev_node is not None and dev.cdev_node.exists() and (dev_root / "iommu").exists()
    if wanted == "cdev":
        if dev.cdev_node is None:
            raise BackendError(f"--open-path cdev: device {dev.name} has no vfio-dev node (kernel without "
                               "CONFIG_VFIO_DEVICE_CDEV?): use --open-path legacy or auto")
        return OpenPath.CDEV
    if wanted == "legacy":
        if dev.group_node is None:
            raise BackendError(f"--open-path legacy: device {dev.name} has no IOMMU group: use --open-path cdev "
                               "or auto")
        return OpenPath.LEGACY
    if wanted != "auto":
        raise BackendError(f"unknown --open-path {wanted!r}: use auto, cdev or legacy")
    if has_cdev or dev.group_node is None:
        return OpenPath.CDEV
    return OpenPath.LEGACY


# --- the two paths ------------------------------------------------------------------------------------

def _open_node(node: Path, dev: ResolvedDevice, opened: list[int]) -> int:
    try:
        fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise open_error(exc, str(node), dev.name) from None
    opened.append(fd)
    return fd


def open_cdev(dev: ResolvedDevice, dev_root: Path) -> DeviceHandle:
    assert dev.cdev_node is not None
    opened: list[int] = []
    try:
        iommu = _open_node(dev_root / "iommu", dev, opened)
        fd = _open_node(dev.cdev_node, dev, opened)
        node = str(dev.cdev_node)
        try:
            call_with_buffer(fd, uapi.VFIO_DEVICE_BIND_IOMMUFD, bind_iommufd_arg(iommu), "VFIO_DEVICE_BIND_IOMMUFD")
            raw = call_with_buffer(iommu, iommufd.IOMMU_IOAS_ALLOC, ioas_alloc_arg(), "IOMMU_IOAS_ALLOC")
            ioas = iommufd.iommu_ioas_alloc.from_buffer_copy(raw).out_ioas_id
            call_with_buffer(fd, uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach_pt_arg(ioas),
                             "VFIO_DEVICE_ATTACH_IOMMUFD_PT")
        except OSError as exc:
            raise open_error(exc, node, dev.name) from None
        return DeviceHandle(fd, OpenPath.CDEV, [iommu])
    except BaseException:
        for f in reversed(opened):
            os.close(f)
        raise


def open_legacy(dev: ResolvedDevice, dev_root: Path) -> DeviceHandle:
    assert dev.group_node is not None
    opened: list[int] = []
    try:
        container = _open_node(dev_root / "vfio/vfio", dev, opened)
        try:
            version = ioctl(container, uapi.VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION")
        except OSError as exc:
            raise open_error(exc, str(dev_root / "vfio/vfio"), dev.name) from None
        if version != uapi.VFIO_API_VERSION:
            raise BackendError(f"VFIO API version {version} (expected {uapi.VFIO_API_VERSION}): this kernel's "
                               "legacy VFIO interface is not supported; try --open-path cdev")
        group = _open_node(dev.group_node, dev, opened)
        node = str(dev.group_node)
        try:
            status = call_with_buffer(group, uapi.VFIO_GROUP_GET_STATUS, group_status_arg(), "VFIO_GROUP_GET_STATUS")
            (flags,) = struct.unpack_from("<I", status, 4)
            if not flags & uapi.VFIO_GROUP_FLAGS_VIABLE:
                raise BackendError(f"IOMMU group {dev.iommu_group} of device {dev.name} is not viable: bind every "
                                   f"device in /sys/kernel/iommu_groups/{dev.iommu_group}/devices to a VFIO "
                                   "driver (or unbind it)")
            arg = ctypes.c_int(container)
            ioctl(group, uapi.VFIO_GROUP_SET_CONTAINER, ctypes.addressof(arg), "VFIO_GROUP_SET_CONTAINER")
            for kind in (uapi.VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU):
                if ioctl(container, uapi.VFIO_CHECK_EXTENSION, kind, "VFIO_CHECK_EXTENSION") > 0:
                    ioctl(container, uapi.VFIO_SET_IOMMU, kind, "VFIO_SET_IOMMU")
                    break
            else:
                raise BackendError("the VFIO container offers no type1 IOMMU (vfio_iommu_type1 not loaded?): "
                                   "load it or use --open-path cdev")
            name = ctypes.create_string_buffer(device_name_arg(dev.name))
            fd = ioctl(group, uapi.VFIO_GROUP_GET_DEVICE_FD, ctypes.addressof(name), "VFIO_GROUP_GET_DEVICE_FD")
        except OSError as exc:
            raise open_error(exc, node, dev.name) from None
        return DeviceHandle(fd, OpenPath.LEGACY, [group, container])
    except BaseException:
        for f in reversed(opened):
            os.close(f)
        raise


def open_again(handle: DeviceHandle, dev: ResolvedDevice, dev_root: Path) -> DeviceHandle:
    """A second open of the device ``handle`` has open (see the module rules); closing it closes only it."""
    if handle.path is OpenPath.LEGACY:
        name = ctypes.create_string_buffer(device_name_arg(dev.name))
        fd = ioctl(handle.keep[0], uapi.VFIO_GROUP_GET_DEVICE_FD, ctypes.addressof(name), "VFIO_GROUP_GET_DEVICE_FD")
        return DeviceHandle(fd, OpenPath.LEGACY)
    assert dev.cdev_node is not None
    opened: list[int] = []
    try:
        iommu = os.open(dev_root / "iommu", os.O_RDWR | os.O_CLOEXEC)
        opened.append(iommu)
        fd = os.open(dev.cdev_node, os.O_RDWR | os.O_CLOEXEC)
        opened.append(fd)
        call_with_buffer(fd, uapi.VFIO_DEVICE_BIND_IOMMUFD, bind_iommufd_arg(iommu), "VFIO_DEVICE_BIND_IOMMUFD")
        raw = call_with_buffer(iommu, iommufd.IOMMU_IOAS_ALLOC, ioas_alloc_arg(), "IOMMU_IOAS_ALLOC")
        ioas = iommufd.iommu_ioas_alloc.from_buffer_copy(raw).out_ioas_id
        call_with_buffer(fd, uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach_pt_arg(ioas), "VFIO_DEVICE_ATTACH_IOMMUFD_PT")
    except BaseException:
        for f in reversed(opened):
            os.close(f)
        raise
    return DeviceHandle(fd, OpenPath.CDEV, [iommu])


def open_device(dev: ResolvedDevice, wanted: str, dev_root: Path) -> DeviceHandle:
    """Open ``dev`` by the chosen path (see the module rules)."""
    path = choose_path(dev, wanted, dev_root)
    return open_cdev(dev, dev_root) if path is OpenPath.CDEV else open_legacy(dev, dev_root)


# --- the device fd's operations (no deadlines here: ``device`` adds them) ------------------------------

class KernelDeviceIO:
    """The raw operations on an open device fd; every error is ``OSError`` with the kernel's errno."""

    def __init__(self, handle: DeviceHandle) -> None:
        self.handle = handle

    @property
    def fd(self) -> int:
        return self.handle.fd

    def feature(self, flags: int, payload: bytes, argsz: int | None) -> bytes:
        return device_feature(self.handle.fd, flags, payload, argsz)

    def reset(self) -> None:
        device_reset(self.handle.fd)

    def region_info(self, index: int) -> RegionInfo:
        return get_region_info(self.handle.fd, index)

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.handle.fd, size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        n = os.pwrite(self.handle.fd, data, offset)
        if n != len(data):
            raise OSError(errno.EIO, f"short region write: {n} of {len(data)} bytes")
        return n

    def close(self) -> None:
        self.handle.close()
