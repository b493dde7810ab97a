"""Ioctl argument bytes, guarded buffers, errno preservation, and the iommufd numbers against the header."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator

import pytest

from tests.kernel_source import require_source
from vfio_mig_cts.backends.vfio import opening
from vfio_mig_cts.backends.vfio.ioctl import (
    GuardedBuffer,
    device_feature,
    feature_arg,
    feature_payload,
    ioctl,
    parse_region_info,
    precopy_info,
    region_info_arg,
    returned_data_fd,
)
from vfio_mig_cts.uapi import iommufd
from vfio_mig_cts.uapi import vfio as uapi
from vfio_mig_cts.uapi.vfio import Feature

GET, SET, PROBE = uapi.VFIO_DEVICE_FEATURE_GET, uapi.VFIO_DEVICE_FEATURE_SET, uapi.VFIO_DEVICE_FEATURE_PROBE
libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


# --- VFIO_DEVICE_FEATURE arguments -----------------------------------------------------------------

def test_feature_arg_is_header_then_payload() -> None:
    arg = feature_arg(SET | Feature.MIG_DEVICE_STATE, struct.pack("<Ii", 3, -1))
    assert arg == bytes.fromhex("10000000" "02000200" "03000000" "ffffffff")


def test_feature_arg_default_argsz_counts_header_and_payload() -> None:
    assert feature_arg(GET | Feature.MIGRATION, bytes(8))[:4] == struct.pack("<I", 16)
    assert feature_arg(PROBE | Feature.MIGRATION) == struct.pack("<II", 8, PROBE | 1)


@pytest.mark.parametrize("argsz", [0, 7, 9, 4096, 0xFFFFFFFF])
def test_feature_arg_passes_any_argsz(argsz: int) -> None:
    arg = feature_arg(GET | Feature.MIGRATION, bytes(8), argsz)
    assert struct.unpack_from("<I", arg)[0] == argsz
    assert len(arg) == 16  # the buffer stays what the caller gave


def test_feature_arg_masks_to_32_bits() -> None:
    assert feature_arg(0x1_0000_0001, b"", -1)[:8] == struct.pack("<II", 0xFFFFFFFF, 1)


def test_feature_payload_drops_the_header() -> None:
    assert feature_payload(b"\x10\0\0\0\x02\0\x02\0ABCD") == b"ABCD"


@pytest.mark.parametrize(("flags", "payload", "fd"), [
    (SET | Feature.MIG_DEVICE_STATE, struct.pack("<Ii", 3, 7), 7),
    (SET | Feature.MIG_DEVICE_STATE, struct.pack("<Ii", 3, -1), None),
    (GET | Feature.MIG_DEVICE_STATE, struct.pack("<Ii", 3, 7), None),
    (PROBE | SET | Feature.MIG_DEVICE_STATE, struct.pack("<Ii", 3, 7), None),
    (SET | Feature.DMA_LOGGING_START, struct.pack("<Ii", 3, 7), None),
    (SET | Feature.MIG_DEVICE_STATE, b"\3\0\0\0", None),
])
def test_returned_data_fd_only_from_a_successful_set_state(flags: int, payload: bytes, fd: int | None) -> None:
    assert returned_data_fd(flags, payload) == fd


# --- other argument structs -------------------------------------------------------------------------

def test_region_info_arg_and_parse() -> None:
    arg = region_info_arg(1)
    assert arg == struct.pack("<IIIIQQ", 32, 0, 1, 0, 0, 0)
    info = parse_region_info(struct.pack("<IIIIQQ", 32, 3, 1, 0, 8, 1 << 40))
    assert (info.index, info.flags, info.size, info.offset) == (1, 3, 8, 1 << 40)


def test_open_path_arguments() -> None:
    assert opening.bind_iommufd_arg(5) == struct.pack("<IIiI", 16, 0, 5, 0)
    assert opening.ioas_alloc_arg() == struct.pack("<III", 12, 0, 0)
    assert opening.attach_pt_arg(2) == struct.pack("<III", 12, 0, 2)
    assert opening.group_status_arg() == struct.pack("<II", 8, 0)
    assert opening.device_name_arg("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001").endswith(b"1001\0")


def test_iommufd_numbers() -> None:
    assert iommufd.IOMMU_DESTROY == 0x3B80
    assert iommufd.IOMMU_IOAS_ALLOC == 0x3B81
    assert ctypes.sizeof(iommufd.iommu_ioas_alloc) == 12
    assert iommufd.iommu_ioas_alloc.out_ioas_id.offset == 8


def test_iommufd_bindings_match_the_612_header(tmp_path: os.PathLike[str]) -> None:
    tree = require_source()
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc (apt-get install gcc)")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/types.h>", "#include \"iommufd.h\"",
             "int main(void) {"]
    for name in iommufd.CHECKED_CONSTANTS:
        lines.append(f'  printf("{name} %llu\\n", (unsigned long long)({name}));')
    for name, ctype in iommufd.CHECKED_STRUCTS.items():
        lines.append(f'  printf("sizeof.{name} %zu\\n", sizeof(struct {name}));')
        for entry in ctype._fields_:
            field = entry[0]
            lines.append(f'  printf("{name}.{field} %zu\\n", offsetof(struct {name}, {field}));')
    lines += ["  return 0;", "}"]
    work = str(tmp_path)
    shutil.copy(tree / "include/uapi/linux/iommufd.h", os.path.join(work, "iommufd.h"))
    with open(os.path.join(work, "c.c"), "w") as f:
        f.write("\n".join(lines) + "\n")
    subprocess.run(["gcc", "-I", work, "-o", os.path.join(work, "c"), os.path.join(work, "c.c")], check=True)
    out = subprocess.run([os.path.join(work, "c")], check=True, capture_output=True, text=True).stdout
    facts = {k: int(v) for k, v in (ln.split() for ln in out.splitlines())}
    for name, value in iommufd.CHECKED_CONSTANTS.items():
        assert facts[name] == value, name
    for name, ctype in iommufd.CHECKED_STRUCTS.items():
        assert facts[f"sizeof.{name}"] == ctypes.sizeof(ctype)
        for entry in ctype._fields_:
            field = entry[0]
            assert facts[f"{name}.{field}"] == getattr(ctype, field).offset


# --- guarded buffers and errno --------------------------------------------------------------------------

def test_guarded_buffer_holds_the_bytes_and_faults_past_them(pipe: tuple[int, int]) -> None:
    _, w = pipe
    with GuardedBuffer(b"abcd") as buf:
        assert buf.read() == b"abcd"
        assert libc.write(w, ctypes.c_void_p(buf.address), 4) == 4
        assert libc.write(w, ctypes.c_void_p(buf.address), 5) == -1  # one byte into the guard page
        assert ctypes.get_errno() == errno.EFAULT


def test_guarded_buffer_larger_than_a_page() -> None:
    data = bytes(range(256)) * 40
    with GuardedBuffer(data) as buf:
        assert buf.read() == data


def test_kernel_errno_is_preserved(pipe: tuple[int, int]) -> None:
    r, _ = pipe
    with pytest.raises(OSError) as info:
        device_feature(r, GET | Feature.MIGRATION, bytes(8))  # a pipe is no VFIO device
    assert info.value.errno == errno.ENOTTY
    assert "VFIO_DEVICE_FEATURE" in str(info.value)
    with pytest.raises(OSError) as bad:
        ioctl(-1, uapi.VFIO_DEVICE_RESET, 0, "VFIO_DEVICE_RESET")
    assert bad.value.errno == errno.EBADF
    with pytest.raises(OSError) as pre:
        precopy_info(r, bytes(24))
    assert pre.value.errno == errno.ENOTTY
