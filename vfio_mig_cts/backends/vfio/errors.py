"""Errors of the vfio backend, and the one-line messages for a device that cannot be used.

Rules:

- Bad input or a device that cannot be used is ``BackendError`` (a usage error: pytest exit 4) with
  ONE line saying what is wrong and what to do.
- A device that goes bad during the run is ``DeviceQuarantined`` (not an ``OSError``: no test may
  take it for a kernel errno); every later test that asks for it errors with the same reason.
- Kernel errnos stay ``OSError`` with the errno; ``IoctlHang`` (in ``timeouts``) is the one
  ``OSError`` the backend makes up (ETIMEDOUT).
"""

from __future__ import annotations

import errno

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.protocol import DeviceUnusable


class DeviceQuarantined(DeviceUnusable):
    """The device failed a health check or hung; the run does not use it again."""


def open_error(exc: OSError, node: str, device: str) -> BackendError:
    """A ``BackendError`` for a failure to open or set up ``node`` (belonging to ``device``)."""
    code = exc.errno or 0
    if code == errno.ENOENT:
        return BackendError(f"{node} does not exist (device {device}): load the vfio modules and check "
                            "that udev created the node, or use --open-path to pick the other open path")
    if code == errno.EBUSY:
        return BackendError(f"device {device} is busy ({node}: EBUSY): another process (a VM, another run) "
                            "has it open; stop it or name another device")
    if code in (errno.EACCES, errno.EPERM):
        return BackendError(f"permission denied opening {node} (device {device}): run as root or give "
                            "this user the vfio device nodes (and /dev/iommu)")
    if code == errno.ENODEV:
        return BackendError(f"device {device} went away ({node}: ENODEV): check that it still exists and "
                            "is bound to its VFIO driver")
    name = errno.errorcode.get(code, str(code))
    return BackendError(f"cannot set up device {device}: {exc.strerror or exc} ({name})")


def no_migration(device: str, driver: str) -> BackendError:
    return BackendError(f"device {device} (driver {driver}) has no migration support: "
                        "VFIO_DEVICE_FEATURE_MIGRATION returns ENOTTY; name a device whose driver "
                        "implements VFIO migration")
