"""Resolving a device spec through sysfs: IOMMU group, cdev node, driver.

Rules (paths are relative to a configurable sysfs root, ``/sys`` by default, and dev root, ``/dev``):

- PCI ``ADDR``: ``bus/pci/devices/ADDR``; mdev ``UUID``: ``bus/mdev/devices/UUID``; cdev ``vfioN``:
  ``class/vfio-dev/vfioN/device`` (then as the PCI device or mdev it points to).
- The legacy group node is ``/dev/vfio/<basename of the iommu_group link>``; the cdev node is
  ``/dev/vfio/devices/<the vfioN entry under vfio-dev/>``.
- The driver is the basename of the ``driver`` link; for an mdev without one, the prefix of its
  ``mdev_type`` (``mtty-2`` -> ``mtty``), else its parent device's driver.
- A PCI device is bound to a VFIO driver when it has a ``vfio-dev/vfioN`` entry or its driver's
  name contains ``vfio`` (vfio-pci and the variant drivers); an mdev when it has any driver.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.vfio.naming import DeviceSpec, SpecKind

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class ResolvedDevice:
    """Everything the open paths need to know about one device."""

    spec: DeviceSpec
    kind: SpecKind  # PCI or MDEV (a cdev spec resolves to one of them)
    name: str  # PCI address or mdev UUID: how reports and VFIO_GROUP_GET_DEVICE_FD name it
    sysfs_path: Path
    driver: str
    iommu_group: str | None
    group_node: Path | None
    cdev_node: Path | None


def _link_name(path: Path) -> str | None:
    """The basename of a symlink's target (dangling links too), or None."""
    try:
        return os.path.basename(os.readlink(path).rstrip("/"))
    except OSError:
        return None


class Sysfs:
    """Device lookups against a sysfs tree (a fake one in tests)."""

    def __init__(self, root: Path = Path("/sys"), dev_root: Path = Path("/dev")) -> None:
        self.root = Path(root)
        self.dev_root = Path(dev_root)

    def device_dir(self, spec: DeviceSpec) -> tuple[SpecKind, str, Path]:
        """(kind, name, sysfs directory) of the device; ``BackendError`` when there is none."""
        if spec.kind is SpecKind.PCI:
            path = self.root / "bus/pci/devices" / spec.value
            if not path.exists():
                raise BackendError(f"no such PCI device {spec.value} (not in {path.parent}): check the "
                                   "address with lspci -D")
            return SpecKind.PCI, spec.value, path
        if spec.kind is SpecKind.MDEV:
            path = self.root / "bus/mdev/devices" / spec.value
            if not path.exists():
                raise BackendError(f"no such mdev {spec.value} (not in {path.parent}): create it by writing "
                                   "the UUID to /sys/class/mdev_bus/PARENT/mdev_supported_types/TYPE/create")
            return SpecKind.MDEV, spec.value, path
        link = self.root / "class/vfio-dev" / spec.value / "device"
        if not link.exists():
            raise BackendError(f"no such VFIO device {spec.text} (nothing at {link}): list them with "
                               f"ls {self.root}/class/vfio-dev")
        path = link.resolve()
        subsystem = _link_name(path / "subsystem")
        if subsystem == "mdev" or (subsystem is None and _UUID.match(path.name)):
            return SpecKind.MDEV, path.name, path
        return SpecKind.PCI, path.name, path

    def driver_of(self, kind: SpecKind, path: Path) -> str | None:
        drv = _link_name(path / "driver")
        if drv or kind is not SpecKind.MDEV:
            return drv
        mtype = _link_name(path / "mdev_type")
        if mtype:
            return mtype.split("-", 1)[0]
        return _link_name(path.resolve().parent / "driver")

    def resolve(self, spec: DeviceSpec) -> ResolvedDevice:
        """Find the device, its driver and its nodes; ``BackendError`` (one line) when unusable."""
        kind, name, path = self.device_dir(spec)
        driver = self.driver_of(kind, path)
        group = _link_name(path / "iommu_group")
        cdev_name = None
        vfio_dev = path / "vfio-dev"
        if vfio_dev.is_dir():
            cdev_name = next((p.name for p in sorted(vfio_dev.iterdir()) if p.name.startswith("vfio")), None)
        if driver is None:
            how = ("bind it to vfio-pci (echo vfio-pci > .../driver_override; echo ADDR > "
                   "/sys/bus/pci/drivers_probe) or to its VFIO variant driver") if kind is SpecKind.PCI \
                else "load its parent driver's module (e.g. mtty)"
            raise BackendError(f"device {name} is not bound to any driver: {how}")
        if kind is SpecKind.PCI and cdev_name is None and "vfio" not in driver:
            raise BackendError(f"device {name} is bound to {driver}, not to a VFIO driver: unbind it and bind "
                               "vfio-pci or the driver's VFIO variant (e.g. mlx5_vfio_pci)")
        if group is None and cdev_name is None:
            raise BackendError(f"device {name} (driver {driver}) has neither an IOMMU group nor a vfio-dev node: "
                               "enable the IOMMU (intel_iommu=on / amd_iommu=on) or check the VFIO driver")
        return ResolvedDevice(
            spec=spec, kind=kind, name=name, sysfs_path=path, driver=driver, iommu_group=group,
            group_node=self.dev_root / "vfio" / group if group else None,
            cdev_node=self.dev_root / "vfio/devices" / cdev_name if cdev_name else None,
        )
