"""The mtty profile against a model of mtty's UART registers (samples/vfio-mdev/mtty.c)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest

from vfio_mig_cts.backends.vfio.ioctl import RegionInfo
from vfio_mig_cts.backends.vfio.profiles import PROFILES, MttyProfile, profile_for
from vfio_mig_cts.uapi.vfio import State

UART_RX, UART_IER, UART_IIR, UART_LCR, UART_MCR, UART_LSR, UART_MSR, UART_SCR = range(8)


@dataclass
class Port:
    """``struct serial_port``: what mtty migrates."""

    uart_reg: list[int] = field(default_factory=lambda: [0] * 8)
    fifo: list[int] = field(default_factory=list)
    dlab: bool = False
    divisor: int = 0
    overrun: bool = False
    max_fifo_size: int = 1


class FakeMtty:
    """A RegionAccess over an mtty model: handle_bar_write() / handle_bar_read() for the registers."""

    def __init__(self, ports: int = 1, state: int = State.RUNNING) -> None:
        self.ports = [Port() for _ in range(ports)]
        self.state = state
        self.reads: list[tuple[int, int]] = []
        self.writes: list[tuple[int, int, int]] = []

    def region_info(self, index: int) -> RegionInfo:
        size = 8 if index < len(self.ports) else 0
        return RegionInfo(index=index, flags=3, size=size, offset=index << 40)

    def region_write(self, index: int, offset: int, data: bytes) -> None:
        p, v = self.ports[index], data[0]
        self.writes.append((index, offset, v))
        if offset == UART_RX:
            if p.dlab:
                p.divisor |= v
            elif len(p.fifo) < p.max_fifo_size:
                p.fifo.append(v)
            else:
                p.overrun = True
        elif offset == UART_IER:
            if p.dlab:
                p.divisor |= v << 8
            else:
                p.uart_reg[offset] = v
        elif offset == UART_IIR:  # FCR
            p.fifo.clear()
        elif offset == UART_LCR:
            p.dlab = bool(v & 0x80)
            p.uart_reg[offset] = v
        elif offset in (UART_MCR, UART_SCR):
            p.uart_reg[offset] = v

    def region_read(self, index: int, offset: int, size: int) -> bytes:
        p = self.ports[index]
        self.reads.append((index, offset))
        if offset == UART_RX:
            return bytes([p.fifo.pop(0) if p.fifo else 0])
        if offset == UART_IER:
            return bytes([(p.divisor >> 8) & 0xFF if p.dlab else p.uart_reg[UART_IER] & 0x0F])
        if offset == UART_LSR:
            return bytes([(0x01 if p.fifo else 0x60) | (0x02 if p.overrun else 0)])
        if offset == UART_MSR:
            return bytes([0xB0 | (0x11 if len(p.fifo) < p.max_fifo_size else 0)])
        return bytes([p.uart_reg[offset]])

    def current_state(self) -> int:
        return self.state


def test_mtty_is_registered() -> None:
    assert "mtty" in PROFILES
    assert isinstance(profile_for("mtty"), MttyProfile)
    assert profile_for("vfio-pci") is None


def test_dirty_changes_the_digest_every_time() -> None:
    dev, prof = FakeMtty(), MttyProfile()
    seen = {prof.state_digest(dev)}
    for seed in (1, 2, 2, 3, 0, -5):
        prof.dirty(dev, seed)
        seen.add(prof.state_digest(dev))
    assert len(seen) == 7  # even the repeated seed changed something


def test_dirty_writes_only_side_effect_free_registers_of_port_0() -> None:
    dev, prof = FakeMtty(ports=2), MttyProfile()
    prof.dirty(dev, 123)
    assert {(i, reg) for i, reg, _ in dev.writes} == {(0, UART_SCR), (0, UART_LCR)}
    assert all(not v & 0x80 for _, reg, v in dev.writes if reg == UART_LCR)  # DLAB stays clear
    assert dev.ports[0].fifo == [] and not dev.ports[0].dlab


def test_digest_reads_no_register_with_a_side_effect() -> None:
    dev, prof = FakeMtty(ports=2), MttyProfile()
    dev.ports[0].fifo.append(0x41)
    before = copy.deepcopy(dev.ports)
    digest = prof.state_digest(dev)
    assert prof.state_digest(dev) == digest
    assert dev.ports == before
    assert {reg for _, reg in dev.reads}.isdisjoint({UART_RX, UART_IIR})
    assert {i for i, _ in dev.reads} == {0, 1}  # both ports of a 2-port type


def test_equal_state_gives_equal_digest_and_port_1_counts() -> None:
    src, prof = FakeMtty(ports=2), MttyProfile()
    prof.dirty(src, 9)
    dst = FakeMtty(ports=2)
    dst.ports = copy.deepcopy(src.ports)  # what a correct migration does
    assert MttyProfile().state_digest(dst) == prof.state_digest(src)
    dst.ports[1].uart_reg[UART_SCR] ^= 1
    assert MttyProfile().state_digest(dst) != prof.state_digest(src)


@pytest.mark.parametrize("state", [State.STOP, State.STOP_COPY, State.RESUMING, State.ERROR])
def test_dirty_does_nothing_outside_running_states(state: State) -> None:
    dev, prof = FakeMtty(state=state), MttyProfile()
    prof.dirty(dev, 5)
    assert dev.writes == []


@pytest.mark.parametrize("state", [State.RUNNING, State.RUNNING_P2P, State.PRE_COPY, State.PRE_COPY_P2P])
def test_dirty_works_in_running_states(state: State) -> None:
    dev, prof = FakeMtty(state=state), MttyProfile()
    prof.dirty(dev, 5)
    assert dev.writes
