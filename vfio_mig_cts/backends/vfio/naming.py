"""Device specs: how ``--vfio-device``, ``--vfio-peer`` and ``--vfio-incompatible`` name a device.

Accepted (case-insensitive, normalised to lower case):

- a PCI address ``DDDD:BB:DD.F`` (domain 4 to 8 hex digits), or ``BB:DD.F`` meaning domain 0000;
- an mdev UUID ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``;
- a VFIO cdev node ``/dev/vfio/devices/vfioN`` (or just ``vfioN``).

A group node (``/dev/vfio/N``) names a group, which may hold several devices: it is refused with
a message saying to name the device itself. Anything else is a ``BackendError`` with one line.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from vfio_mig_cts.backends.loader import BackendError


class SpecKind(enum.Enum):
    PCI = "pci"
    MDEV = "mdev"
    CDEV = "cdev"


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device spec: ``value`` is the PCI address, the UUID, or ``vfioN``."""

    kind: SpecKind
    value: str
    text: str  # what the user wrote

    def __str__(self) -> str:
        return self.value


_PCI = re.compile(r"^(?:(?P<domain>[0-9a-f]{4,8}):)?(?P<bus>[0-9a-f]{2}):(?P<dev>[0-9a-f]{1,2})\.(?P<fn>[0-7])$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CDEV = re.compile(r"^(?:/dev/vfio/devices/)?(?P<name>vfio\d+)$")
_GROUP = re.compile(r"^/dev/vfio/(?P<group>\d+|noiommu-\d+)$")

USAGE = ("name a device as a PCI address (0000:3b:00.1 or 3b:00.1), an mdev UUID, "
         "or /dev/vfio/devices/vfioN")


def parse_spec(text: str) -> DeviceSpec:
    """Parse one device spec; ``BackendError`` (one line) when it is none of the accepted forms."""
    raw = text.strip()
    low = raw.lower()
    if not low:
        raise BackendError(f"empty device name: {USAGE}")
    m = _PCI.match(low)
    if m:
        dev = int(m["dev"], 16)
        if dev > 0x1F:
            raise BackendError(f"bad PCI address {raw!r}: the device number is 00..1f; {USAGE}")
        domain = m["domain"] or "0000"
        return DeviceSpec(SpecKind.PCI, f"{domain}:{m['bus']}:{dev:02x}.{m['fn']}", raw)
    if _UUID.match(low):
        return DeviceSpec(SpecKind.MDEV, low, raw)
    m = _CDEV.match(raw)
    if m:
        return DeviceSpec(SpecKind.CDEV, m["name"], raw)
    if _GROUP.match(raw) or raw == "/dev/vfio/vfio":
        raise BackendError(f"{raw} is a VFIO group or container node, not a device: {USAGE}")
    raise BackendError(f"cannot read device name {raw!r}: {USAGE}")
