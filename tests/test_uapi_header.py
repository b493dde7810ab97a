"""The uAPI bindings against the real 6.12 header: every number, struct size and field offset."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.kernel_source import require_source
from vfio_mig_cts.uapi import vfio as uapi


def _program() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/vfio.h>", "int main(void) {"]
    for name in uapi.CHECKED_CONSTANTS:
        lines.append(f'  printf("const {name} %llu\\n", (unsigned long long)({name}));')
    for name, ctype in uapi.CHECKED_STRUCTS.items():
        lines.append(f'  printf("size {name} %zu\\n", sizeof(struct {name}));')
        for field in (f[0] for f in ctype._fields_):
            lines.append(f'  printf("offset {name}.{field} %zu\\n", offsetof(struct {name}, {field}));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def header_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    tree = require_source()
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc (apt-get install gcc)")
    work = tmp_path_factory.mktemp("uapi")
    (work / "linux").mkdir()
    shutil.copy(tree / "include/uapi/linux/vfio.h", work / "linux/vfio.h")  # 6.12's, ahead of the system's
    (work / "check.c").write_text(_program())
    subprocess.run(["gcc", "-D__user=", "-I", str(work), "-o", str(work / "check"), str(work / "check.c")], check=True)
    out = subprocess.run([str(work / "check")], check=True, capture_output=True, text=True).stdout
    return {f"{kind} {name}": int(value) for kind, name, value in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("name", sorted(uapi.CHECKED_CONSTANTS))
def test_constant(header_facts: dict[str, int], name: str) -> None:
    assert int(uapi.CHECKED_CONSTANTS[name]) == header_facts[f"const {name}"]


@pytest.mark.parametrize("name", sorted(uapi.CHECKED_STRUCTS))
def test_struct_layout(header_facts: dict[str, int], name: str) -> None:
    ctype = uapi.CHECKED_STRUCTS[name]
    assert ctypes.sizeof(ctype) == header_facts[f"size {name}"], f"sizeof(struct {name})"
    for field in (f[0] for f in ctype._fields_):
        assert getattr(ctype, field).offset == header_facts[f"offset {name}.{field}"], f"{name}.{field}"


def test_every_migration_feature_is_bound() -> None:
    """Every VFIO_DEVICE_FEATURE_* id of the 6.12 header's migration part has a binding."""
    text = (require_source() / "include/uapi/linux/vfio.h").read_text()
    for name in ("MIGRATION", "MIG_DEVICE_STATE", "DMA_LOGGING_START", "DMA_LOGGING_STOP",
                 "DMA_LOGGING_REPORT", "MIG_DATA_SIZE"):
        assert f"#define VFIO_DEVICE_FEATURE_{name} " in text
        assert f"VFIO_DEVICE_FEATURE_{name}" in uapi.CHECKED_CONSTANTS


def test_precopy_info_v2_is_7_1_only() -> None:
    """MIG_PRECOPY_INFOv2 (12) is bound from 7.1 and is not in the 6.12 header."""
    text = (require_source() / "include/uapi/linux/vfio.h").read_text()
    assert "PRECOPY_INFOv2" not in text
    assert int(uapi.Feature.MIG_PRECOPY_INFOv2) == 12


def test_ioctl_encoding_is_the_kernels() -> None:
    assert uapi.VFIO_DEVICE_FEATURE == 0x3B75
    assert uapi.VFIO_MIG_GET_PRECOPY_INFO == 0x3B79
    assert uapi.VFIO_DEVICE_RESET == 0x3B6F
    assert Path(uapi.__file__).name == "vfio.py"
    assert Path(uapi.__file__).parent.name == "uapi"
