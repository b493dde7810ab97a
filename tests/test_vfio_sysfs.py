"""Sysfs resolution against fake sysfs trees; the builders here are used by the other vfio tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.vfio.naming import SpecKind, parse_spec
from vfio_mig_cts.backends.vfio.sysfs import Sysfs

UUID = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def make_pci(root: Path, addr: str, driver: str | None = "vfio-pci", group: str | None = "42",
             cdev: str | None = "vfio3") -> Path:
    """A PCI device as the kernel lays it out under /sys (links relative, as there)."""
    dev = root / "devices/pci0000:3a/0000:3a:00.0" / addr
    dev.mkdir(parents=True)
    _link(root / "bus/pci/devices" / addr, dev)
    (root / "bus/pci").mkdir(parents=True, exist_ok=True)
    _link(dev / "subsystem", root / "bus/pci")
    if driver:
        (root / "bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
        _link(dev / "driver", root / "bus/pci/drivers" / driver)
    if group:
        (root / "kernel/iommu_groups" / group).mkdir(parents=True, exist_ok=True)
        _link(dev / "iommu_group", root / "kernel/iommu_groups" / group)
    if cdev:
        (dev / "vfio-dev" / cdev).mkdir(parents=True)
        _link(root / "class/vfio-dev" / cdev / "device", dev)
    return dev


def make_mdev(root: Path, uuid: str = UUID, driver: str | None = "mtty", mtype: str = "mtty-2",
              group: str | None = "7", cdev: str | None = "vfio0") -> Path:
    """An mdev under a class parent, as mtty creates them."""
    parent = root / "devices/virtual/mtty/mtty"
    types = parent / "mdev_supported_types" / mtype
    types.mkdir(parents=True, exist_ok=True)
    dev = parent / uuid
    dev.mkdir(parents=True)
    _link(root / "bus/mdev/devices" / uuid, dev)
    (root / "bus/mdev").mkdir(parents=True, exist_ok=True)
    _link(dev / "subsystem", root / "bus/mdev")
    _link(dev / "mdev_type", types)
    if driver:
        (root / "bus/mdev/drivers" / driver).mkdir(parents=True, exist_ok=True)
        _link(dev / "driver", root / "bus/mdev/drivers" / driver)
    if group:
        (root / "kernel/iommu_groups" / group).mkdir(parents=True, exist_ok=True)
        _link(dev / "iommu_group", root / "kernel/iommu_groups" / group)
    if cdev:
        (dev / "vfio-dev" / cdev).mkdir(parents=True)
        _link(root / "class/vfio-dev" / cdev / "device", dev)
    return dev


@pytest.fixture
def sysfs(tmp_path: Path) -> Sysfs:
    return Sysfs(tmp_path / "sys", tmp_path / "dev")


def test_pci_device_bound_to_vfio_pci(sysfs: Sysfs, tmp_path: Path) -> None:
    make_pci(sysfs.root, "0000:3b:00.1")
    dev = sysfs.resolve(parse_spec("3b:00.1"))
    assert (dev.kind, dev.name, dev.driver, dev.iommu_group) == (SpecKind.PCI, "0000:3b:00.1", "vfio-pci", "42")
    assert dev.group_node == tmp_path / "dev/vfio/42"
    assert dev.cdev_node == tmp_path / "dev/vfio/devices/vfio3"


def test_variant_driver_without_cdev_counts_as_vfio(sysfs: Sysfs) -> None:
    make_pci(sysfs.root, "0000:3b:00.2", driver="mlx5_vfio_pci", cdev=None)
    dev = sysfs.resolve(parse_spec("0000:3b:00.2"))
    assert dev.driver == "mlx5_vfio_pci"
    assert dev.cdev_node is None and dev.group_node is not None


def test_mdev_driver_from_its_driver_link(sysfs: Sysfs, tmp_path: Path) -> None:
    make_mdev(sysfs.root)
    dev = sysfs.resolve(parse_spec(UUID))
    assert (dev.kind, dev.name, dev.driver) == (SpecKind.MDEV, UUID, "mtty")
    assert dev.group_node == tmp_path / "dev/vfio/7"
    assert dev.cdev_node == tmp_path / "dev/vfio/devices/vfio0"


def test_mdev_driver_from_its_type_when_there_is_no_driver_link(sysfs: Sysfs) -> None:
    path = make_mdev(sysfs.root, driver="mtty")
    (path / "driver").unlink()
    assert sysfs.driver_of(SpecKind.MDEV, path) == "mtty"


def test_cdev_spec_resolves_to_the_device_behind_it(sysfs: Sysfs) -> None:
    make_pci(sysfs.root, "0000:3b:00.1", cdev="vfio3")
    make_mdev(sysfs.root, cdev="vfio0")
    assert sysfs.resolve(parse_spec("/dev/vfio/devices/vfio3")).name == "0000:3b:00.1"
    mdev = sysfs.resolve(parse_spec("/dev/vfio/devices/vfio0"))
    assert (mdev.kind, mdev.name, mdev.driver) == (SpecKind.MDEV, UUID, "mtty")


@pytest.mark.parametrize(("spec", "build", "says"), [
    ("0000:3b:00.1", None, "no such PCI device 0000:3b:00.1"),
    (UUID, None, "no such mdev"),
    ("/dev/vfio/devices/vfio9", None, "no such VFIO device"),
    ("0000:3b:00.1", {"driver": None, "cdev": None}, "not bound to any driver"),
    ("0000:3b:00.1", {"driver": "mlx5_core", "cdev": None}, "bound to mlx5_core, not to a VFIO driver"),
    ("0000:3b:00.1", {"group": None, "cdev": None, "driver": "vfio-pci"}, "neither an IOMMU group"),
])
def test_unusable_devices_fail_with_one_line(sysfs: Sysfs, spec: str, build: dict[str, str | None] | None,
                                             says: str) -> None:
    if build is not None:
        make_pci(sysfs.root, "0000:3b:00.1", **build)
    with pytest.raises(BackendError) as info:
        sysfs.resolve(parse_spec(spec))
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_unbound_mdev(sysfs: Sysfs) -> None:
    path = make_mdev(sysfs.root)
    (path / "driver").unlink()
    (path / "mdev_type").unlink()
    with pytest.raises(BackendError, match="not bound to any driver"):
        sysfs.resolve(parse_spec(UUID))
