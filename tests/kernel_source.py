"""Files of Debian's ``linux-source-6.12``: the spec the suite's own tests compare against.

Looked up, in order: ``$VFIO_CTS_KERNEL_SRC`` (a source tree), the guest lane's extracted tree in the
cache, or the members extracted once from ``/usr/src/linux-source-6.12.tar.xz`` into the cache.
Without any of them the tests that need the source skip, saying how to install it.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from lane.kbuild import SOURCE_TARBALL, cache_root

NEEDED = (
    "include/uapi/linux/vfio.h",
    "include/uapi/linux/iommufd.h",
    "include/linux/vfio.h",
    "drivers/vfio/vfio_main.c",
    "samples/vfio-mdev/mtty.c",
    "drivers/vfio/pci/mlx5/main.c",  # the drivers the mock personalities model (tests/test_personalities.py)
    "drivers/vfio/pci/mlx5/cmd.c",
    "drivers/vfio/pci/hisilicon/hisi_acc_vfio_pci.c",
    "drivers/vfio/pci/pds/lm.c",
    "drivers/vfio/pci/pds/vfio_dev.c",
    "drivers/vfio/pci/pds/dirty.c",
    "drivers/vfio/pci/pds/cmds.c",
    "drivers/vfio/pci/pds/pci_drv.c",
    "drivers/crypto/intel/qat/qat_common/adf_gen4_vf_mig.c",
    "drivers/vfio/pci/qat/main.c",
    "tools/testing/kunit/kunit_parser.py",
    "tools/testing/kunit/kunit_printer.py",  # kunit_parser imports it
)


def _tree_has(tree: Path) -> bool:
    return all((tree / f).exists() for f in NEEDED[:4])


def source_tree() -> Path | None:
    env = os.environ.get("VFIO_CTS_KERNEL_SRC")
    if env and _tree_has(Path(env)):
        return Path(env)
    root = cache_root()
    for tree in sorted(root.glob("src/*/linux-source-6.12")):
        if _tree_has(tree) and (tree.parent / ".extracted").exists():
            return tree
    files = root / "spec-files" / "linux-source-6.12"
    if all((files / f).exists() for f in NEEDED):
        return files
    if not SOURCE_TARBALL.exists():
        return files if _tree_has(files) else None
    files.mkdir(parents=True, exist_ok=True)
    wanted = {f"linux-source-6.12/{f}" for f in NEEDED}
    with tarfile.open(SOURCE_TARBALL) as tar:
        for member in tar:
            if member.name in wanted:
                tar.extract(member, files.parent, filter="data")
    return files if _tree_has(files) else None


def require_source() -> Path:
    tree = source_tree()
    if tree is None:
        pytest.skip("needs Debian's linux-source-6.12 (apt-get install linux-source-6.12)")
    return tree
