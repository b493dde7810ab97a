"""Device profiles: per-driver knowledge the uAPI cannot give (how to change and compare device state).

Rules:

- A profile is registered under the driver's name (``ResolvedDevice.driver``, e.g. ``mtty``) with
  ``@register("name")``; ``profile_for(driver)`` returns a new instance or None.
- A profile works only through ``RegionAccess`` (region info, pread/pwrite of the device fd at a
  region's offset, the current migration state), so it is testable with a fake device.
- ``dirty(seed)`` changes migrated device state as a running guest would. It does nothing outside
  the running states (RUNNING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P), like the mock, and it always
  changes something (the value written differs from the one there).
- ``state_digest()`` reads only registers whose reads have no side effects and whose values come
  from migrated state, and hashes them; equal on source and target after a correct round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol, TypeVar

from vfio_mig_cts.backends.vfio.ioctl import RegionInfo
from vfio_mig_cts.uapi.vfio import State

RUNNING_STATES = frozenset({State.RUNNING, State.RUNNING_P2P, State.PRE_COPY, State.PRE_COPY_P2P})


class RegionAccess(Protocol):
    """What a profile may do with a device."""

    def region_info(self, index: int) -> RegionInfo: ...

    def region_read(self, index: int, offset: int, size: int) -> bytes: ...

    def region_write(self, index: int, offset: int, data: bytes) -> None: ...

    def current_state(self) -> int: ...


class DriverProfile(Protocol):
    def dirty(self, dev: RegionAccess, seed: int) -> None: ...

    def state_digest(self, dev: RegionAccess) -> bytes: ...


PROFILES: dict[str, Callable[[], DriverProfile]] = {}


F = TypeVar("F", bound=Callable[[], DriverProfile])


def register(driver: str) -> Callable[[F], F]:
    """Class decorator: ``@register("mtty")`` makes the class the profile of driver ``mtty``."""

    def add(factory: F) -> F:
        PROFILES[driver] = factory
        return factory
    return add


def profile_for(driver: str) -> DriverProfile | None:
    factory = PROFILES.get(driver)
    return factory() if factory is not None else None


def _seed_byte(seed: int, salt: bytes) -> int:
    return hashlib.sha256(salt + seed.to_bytes(16, "little", signed=True)).digest()[0]


# --- mtty (samples/vfio-mdev/mtty.c) -----------------------------------------------------------------

# 16550 register offsets (include/uapi/linux/serial_reg.h) within a port's 8-byte I/O BAR.
UART_IER, UART_IIR, UART_LCR, UART_MCR, UART_LSR, UART_MSR, UART_SCR = 1, 2, 3, 4, 5, 6, 7
UART_LCR_DLAB = 0x80


@register("mtty")
class MttyProfile:
    """mtty: one 16550 UART per port, port N behind VFIO region N (BAR0, and BAR1 for 2-port types).

    Migrated (``struct serial_port``): ``uart_reg[8]``, the loopback FIFO, ``dlab``, ``overrun``,
    ``divisor``, ``fcr``, ``max_fifo_size``, ``intr_trigger_level``.

    - ``dirty`` writes port 0's scratch register (SCR: stored in ``uart_reg``, no side effect) and
      its LCR with DLAB clear (stored in ``uart_reg``; clears ``dlab``). It writes no TX byte (that
      fills the FIFO), no FCR (clears the FIFO) and no IER/MCR (may raise an interrupt).
    - ``state_digest`` reads, per port, IER, LCR, MCR, LSR, MSR, SCR: each is computed from migrated
      fields without changing them. RX is never read (it pops the FIFO).
    """

    DIGEST_REGS = (UART_IER, UART_LCR, UART_MCR, UART_LSR, UART_MSR, UART_SCR)

    def __init__(self) -> None:
        self._ports: list[RegionInfo] | None = None

    def ports(self, dev: RegionAccess) -> list[RegionInfo]:
        if self._ports is None:
            ports = [dev.region_info(0)]
            second = dev.region_info(1)
            if second.size:
                ports.append(second)
            self._ports = [p for p in ports if p.size]
        return self._ports

    def _write(self, dev: RegionAccess, port: RegionInfo, reg: int, value: int) -> None:
        dev.region_write(port.index, reg, bytes([value & 0xFF]))

    def _read(self, dev: RegionAccess, port: RegionInfo, reg: int) -> int:
        return dev.region_read(port.index, reg, 1)[0]

    def dirty(self, dev: RegionAccess, seed: int) -> None:
        if dev.current_state() not in RUNNING_STATES:
            return
        port = self.ports(dev)[0]
        for reg, salt, mask in ((UART_SCR, b"scr", 0xFF), (UART_LCR, b"lcr", 0xFF & ~UART_LCR_DLAB)):
            value = _seed_byte(seed, salt) & mask
            if value == self._read(dev, port, reg):
                value ^= mask
            self._write(dev, port, reg, value)

    def state_digest(self, dev: RegionAccess) -> bytes:
        h = hashlib.sha256(b"mtty")
        for port in self.ports(dev):
            h.update(bytes(self._read(dev, port, reg) for reg in self.DIGEST_REGS))
        return h.digest()
