"""Device specs: the accepted forms, their normalisation, and one-line errors for the rest."""

from __future__ import annotations

import pytest

from vfio_mig_cts.backends.loader import BackendError
from vfio_mig_cts.backends.vfio.naming import DeviceSpec, SpecKind, parse_spec

UUID = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("0000:3b:00.1", SpecKind.PCI, "0000:3b:00.1"),
    ("3b:00.1", SpecKind.PCI, "0000:3b:00.1"),
    ("0000:3B:1F.7", SpecKind.PCI, "0000:3b:1f.7"),
    ("10000:00:02.0", SpecKind.PCI, "10000:00:02.0"),
    ("3b:0.1", SpecKind.PCI, "0000:3b:00.1"),
    (" 0000:3b:00.1 ", SpecKind.PCI, "0000:3b:00.1"),
    (UUID, SpecKind.MDEV, UUID),
    (UUID.upper(), SpecKind.MDEV, UUID),
    ("/dev/vfio/devices/vfio0", SpecKind.CDEV, "vfio0"),
    ("/dev/vfio/devices/vfio12", SpecKind.CDEV, "vfio12"),
    ("vfio3", SpecKind.CDEV, "vfio3"),
])
def test_valid_specs(text: str, kind: SpecKind, value: str) -> None:
    spec = parse_spec(text)
    assert spec == DeviceSpec(kind, value, text.strip())
    assert str(spec) == value


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty device name"),
    ("   ", "empty device name"),
    ("0000:3b:20.1", "device number is 00..1f"),
    ("0000:3b:00.8", "cannot read device name"),
    ("3b:00", "cannot read device name"),
    ("000:3b:00.1", "cannot read device name"),
    ("83b8f4f2-509f-382f-3c1e-e6bfe0fa100", "cannot read device name"),
    ("/dev/vfio/3", "group or container node, not a device"),
    ("/dev/vfio/vfio", "group or container node, not a device"),
    ("/dev/vfio/devices/vfio", "cannot read device name"),
    ("eth0", "cannot read device name"),
])
def test_invalid_specs_say_what_to_do_in_one_line(text: str, says: str) -> None:
    with pytest.raises(BackendError) as info:
        parse_spec(text)
    message = str(info.value)
    assert says in message
    assert "\n" not in message
    assert "PCI address" in message or "device number" in message
