"""Guest-side smoke check: the devices exist and answer a migration ioctl on both open paths.

Used by ``python -m lane --smoke`` to prove the lane end to end without the vfio backend: the
device under test is opened through the legacy group path (container, group, type1 IOMMU,
``VFIO_GROUP_GET_DEVICE_FD``), the incompatible one through the cdev path (``/dev/iommu``,
``VFIO_DEVICE_BIND_IOMMUFD``, ``IOMMU_IOAS_ALLOC``, ``VFIO_DEVICE_ATTACH_IOMMUFD_PT``), and each
is asked for its migration flags, state and stop-copy size.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lane.mdev import DevicePlan, PlannedDevice, Sysfs
from vfio_mig_cts.uapi import vfio as uapi

IOMMUFD_TYPE = ord(";")
IOMMU_IOAS_ALLOC = (IOMMUFD_TYPE << 8) | 0x81  # _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)


def _feature_get(fd: int, feature: int, payload: int) -> bytes:
    argsz = uapi.FEATURE_HEADER_SIZE + payload
    buf = bytearray(struct.pack("=II", argsz, uapi.VFIO_DEVICE_FEATURE_GET | feature) + bytes(payload))
    fcntl.ioctl(fd, uapi.VFIO_DEVICE_FEATURE, buf, True)
    return bytes(buf[uapi.FEATURE_HEADER_SIZE:])


def query(fd: int) -> dict[str, Any]:
    """Migration flags, the current state and the stop-copy size of an open device fd."""
    (flags,) = struct.unpack("=Q", _feature_get(fd, uapi.Feature.MIGRATION, 8))
    state, _ = struct.unpack("=Ii", _feature_get(fd, uapi.Feature.MIG_DEVICE_STATE, 8))
    (size,) = struct.unpack("=Q", _feature_get(fd, uapi.Feature.MIG_DATA_SIZE, 8))
    names = "|".join(f.name or "?" for f in uapi.MigFlag if flags & f)
    return {"migration_flags": flags, "migration_flags_names": names,
            "state": uapi.state_name(state), "stop_copy_length": size}


def group_of(fs: Sysfs, dev_uuid: str) -> int:
    return int(os.path.basename(os.readlink(fs.device(dev_uuid) / "iommu_group")))


def cdev_of(fs: Sysfs, dev_uuid: str) -> Path:
    names = sorted(p.name for p in (fs.device(dev_uuid) / "vfio-dev").iterdir())
    return Path("/dev/vfio/devices") / names[0]


def open_legacy(stack: ExitStack, fs: Sysfs, dev_uuid: str) -> int:
    container = os.open("/dev/vfio/vfio", os.O_RDWR | os.O_CLOEXEC)
    stack.callback(os.close, container)
    group = os.open(f"/dev/vfio/{group_of(fs, dev_uuid)}", os.O_RDWR | os.O_CLOEXEC)
    stack.callback(os.close, group)
    status = uapi.vfio_group_status(argsz=ctypes.sizeof(uapi.vfio_group_status))
    fcntl.ioctl(group, uapi.VFIO_GROUP_GET_STATUS, status, True)
    if not status.flags & uapi.VFIO_GROUP_FLAGS_VIABLE:
        raise OSError(f"group {group_of(fs, dev_uuid)} not viable")
    fcntl.ioctl(group, uapi.VFIO_GROUP_SET_CONTAINER, bytearray(struct.pack("=i", container)), True)
    fcntl.ioctl(container, uapi.VFIO_SET_IOMMU, uapi.VFIO_TYPE1v2_IOMMU)
    fd = int(fcntl.ioctl(group, uapi.VFIO_GROUP_GET_DEVICE_FD, bytearray(dev_uuid.encode() + b"\0"), True))
    stack.callback(os.close, fd)
    return fd


def open_cdev(stack: ExitStack, fs: Sysfs, dev_uuid: str) -> int:
    fd = os.open(cdev_of(fs, dev_uuid), os.O_RDWR | os.O_CLOEXEC)
    stack.callback(os.close, fd)
    iommufd = os.open("/dev/iommu", os.O_RDWR | os.O_CLOEXEC)
    stack.callback(os.close, iommufd)
    bind = uapi.vfio_device_bind_iommufd(argsz=ctypes.sizeof(uapi.vfio_device_bind_iommufd), iommufd=iommufd)
    fcntl.ioctl(fd, uapi.VFIO_DEVICE_BIND_IOMMUFD, bind, True)
    alloc = bytearray(struct.pack("=III", 12, 0, 0))
    fcntl.ioctl(iommufd, IOMMU_IOAS_ALLOC, alloc, True)
    (ioas,) = struct.unpack_from("=I", alloc, 8)
    attach = uapi.vfio_device_attach_iommufd_pt(argsz=ctypes.sizeof(uapi.vfio_device_attach_iommufd_pt),
                                                pt_id=ioas)
    fcntl.ioctl(fd, uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach, True)
    return fd


def _probe(fs: Sysfs, d: PlannedDevice, path: str) -> dict[str, Any]:
    info: dict[str, Any] = {"role": d.role, "type": d.mdev_type, "uuid": d.uuid, "open_path": path,
                            "group": f"/dev/vfio/{group_of(fs, d.uuid)}", "cdev": str(cdev_of(fs, d.uuid))}
    try:
        with ExitStack() as stack:
            fd = open_legacy(stack, fs, d.uuid) if path == "legacy" else open_cdev(stack, fs, d.uuid)
            info.update(query(fd))
    except OSError as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def run(fs: Sysfs, plan: DevicePlan) -> list[dict[str, Any]]:
    """Check every planned device's nodes; open the first DUT by legacy and the incompatible one by cdev."""
    found: list[dict[str, Any]] = []
    for d in plan.devices:
        if d.role == "dut" and d.index == 0:
            found.append(_probe(fs, d, "legacy"))
        elif d.role == "incompatible":
            found.append(_probe(fs, d, "cdev"))
        else:
            ok = Path(f"/dev/vfio/{group_of(fs, d.uuid)}").exists() and cdev_of(fs, d.uuid).exists()
            found.append({"role": d.role, "type": d.mdev_type, "uuid": d.uuid, "nodes": ok})
    return found
