"""The driver personalities' behaviours the suite's findings do not pin, driven directly through the protocol."""

from __future__ import annotations

import errno

import pytest

from vfio_mig_cts.backends.mock.backend import MockDeviceBase
from vfio_mig_cts.backends.mock.personalities import lookup
from vfio_mig_cts.backends.mock.personalities.mlx5 import RECORD
from vfio_mig_cts.backends.protocol import (
    POLLIN,
    DataStream,
    Role,
    data_size,
    get_state,
    precopy_info,
    set_state,
)
from vfio_mig_cts.judging.driving import read_all, read_available
from vfio_mig_cts.uapi.vfio import State

S = State


def device(name: str, role: Role = Role.DUT) -> MockDeviceBase:
    p = lookup(name)
    return p.device_class()(p.config(role))


def to(dev: MockDeviceBase, *states: State) -> DataStream | None:
    stream = None
    for s in states:
        stream = set_state(dev, s) or stream
    return stream


def save(dev: MockDeviceBase) -> bytes:
    stream = to(dev, S.STOP, S.STOP_COPY)
    assert stream is not None
    data = read_all(stream)
    to(dev, S.STOP)
    return data


def test_mlx5_read_gives_enomsg_while_its_save_is_in_flight_and_poll_waits_for_it() -> None:
    dev = device("mlx5")
    stream = to(dev, S.PRE_COPY)
    assert stream is not None
    assert read_available(stream)
    dev.drv.dirty(1)
    info = precopy_info(stream)
    assert info.dirty_bytes > 0  # reported, and the incremental SAVE started
    with pytest.raises(OSError) as exc:
        stream.read(4096)
    assert exc.value.errno == errno.ENOMSG
    assert stream.poll(POLLIN, 1000) & POLLIN
    # dirty_bytes is the firmware's image size (main.c:543); the record header before it is not counted
    assert len(stream.read(4096)) == info.dirty_bytes + RECORD.size


def test_mlx5_data_size_is_a_full_image_in_every_state() -> None:
    dev = device("mlx5")
    sizes = {data_size(dev)}
    to(dev, S.PRE_COPY)
    sizes.add(data_size(dev))
    assert len(sizes) == 1 and sizes.pop() > 0


def test_hisi_acc_matches_once_per_device() -> None:
    """match_done is never cleared: after one matching resume, a foreign stream passes write()."""
    dut, stranger = device("hisi_acc"), device("hisi_acc", Role.INCOMPATIBLE)
    own, foreign = save(dut), save(stranger)
    resume = to(dut, S.RESUMING)
    assert resume is not None and resume.write(own) == len(own)
    to(dut, S.STOP)
    resume = to(dut, S.RESUMING)
    assert resume is not None and resume.write(foreign) == len(foreign)
    fresh = device("hisi_acc")
    resume = to(fresh, S.STOP, S.RESUMING)
    assert resume is not None
    with pytest.raises(OSError) as exc:
        resume.write(foreign)
    assert exc.value.errno == errno.EFAULT


def test_qat_reset_forgets_the_setup_and_keeps_the_buffer() -> None:
    dev = device("qat")
    data = save(dev)
    dev.reset()
    assert (dev.drv.setup_size, dev.drv.remote_setup_size) == (0, 0)  # type: ignore[attr-defined]
    resume = to(dev, S.STOP, S.RESUMING)
    assert resume is not None
    resume.write(data[:100])
    to(dev, S.STOP)  # the rest comes from the buffer's earlier copy
    assert get_state(dev) == S.STOP


def test_pds_error_ends_sessions_and_logging_and_refuses_every_set_with_eio() -> None:
    dev = device("pds")
    stream = to(dev, S.RUNNING_P2P, S.STOP, S.STOP_COPY)
    assert stream is not None
    dev.drv.dma.on = True
    dev.inject_error()  # type: ignore[attr-defined]
    assert not dev.drv.dma.on
    with pytest.raises(OSError) as exc:
        stream.read(16)
    assert exc.value.errno == errno.ENODEV
    for target in (S.RUNNING, S.ERROR, 8):
        with pytest.raises(OSError) as exc:
            set_state(dev, target)
        assert exc.value.errno == errno.EIO
    dev.reset()
    assert get_state(dev) == S.RUNNING


def test_pds_logging_stops_when_stop_copy_ends() -> None:
    dev = device("pds")
    to(dev, S.RUNNING_P2P, S.STOP, S.STOP_COPY)
    dev.drv.dma.on = True
    to(dev, S.STOP)
    assert not dev.drv.dma.on


def test_mtty_reset_keeps_the_uart_state() -> None:
    dev = device("mtty")
    dev.drv.dirty(7)
    before = dev.drv.digest()
    to(dev, S.STOP)
    dev.reset()
    assert get_state(dev) == S.RUNNING and dev.drv.digest() == before


@pytest.mark.parametrize("name", ["hisi_acc", "qat", "mtty", "pds"])
def test_buffer_files_end_with_zero_and_poll_readable(name: str) -> None:
    """No ENOMSG anywhere, and no poll method: the VFS's default mask says readable at once."""
    dev = device(name)
    stream = to(dev, S.STOP, S.STOP_COPY) if name == "pds" else to(dev, S.PRE_COPY)
    assert stream is not None
    read_available(stream)
    assert stream.read(16) == b""
    assert stream.poll(POLLIN, 0) == POLLIN
