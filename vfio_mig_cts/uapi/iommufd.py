"""The part of ``include/uapi/linux/iommufd.h`` the cdev open path needs (Linux 6.12).

``IOMMUFD_TYPE`` is ``';'`` like VFIO's; the commands start at ``IOMMUFD_CMD_BASE = 0x80``, so
they do not collide with VFIO's (``VFIO_BASE = 100``). Every command is ``_IO(IOMMUFD_TYPE, nr)``
and its argument struct starts with ``__u32 size``.
"""

from __future__ import annotations

import ctypes

from vfio_mig_cts.uapi.vfio import _IO

IOMMUFD_TYPE = ord(";")
IOMMUFD_CMD_BASE = 0x80
IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE
IOMMUFD_CMD_IOAS_ALLOC = 0x81

IOMMU_DESTROY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)
IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)


class iommu_destroy(ctypes.Structure):  # noqa: N801 - header names
    _fields_ = [("size", ctypes.c_uint32), ("id", ctypes.c_uint32)]


class iommu_ioas_alloc(ctypes.Structure):  # noqa: N801
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("out_ioas_id", ctypes.c_uint32)]


# For the header test (tests/test_uapi_header.py style): name -> value / ctypes type.
CHECKED_CONSTANTS: dict[str, int] = {
    "IOMMUFD_TYPE": IOMMUFD_TYPE,
    "IOMMUFD_CMD_BASE": IOMMUFD_CMD_BASE,
    "IOMMUFD_CMD_DESTROY": IOMMUFD_CMD_DESTROY,
    "IOMMUFD_CMD_IOAS_ALLOC": IOMMUFD_CMD_IOAS_ALLOC,
    "IOMMU_DESTROY": IOMMU_DESTROY,
    "IOMMU_IOAS_ALLOC": IOMMU_IOAS_ALLOC,
}
CHECKED_STRUCTS: dict[str, type[ctypes.Structure]] = {
    "iommu_destroy": iommu_destroy,
    "iommu_ioas_alloc": iommu_ioas_alloc,
}
