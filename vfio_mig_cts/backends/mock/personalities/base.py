"""A personality: the mock in the shape of one upstream driver, as data plus that driver's small behaviours.

Rules:

- A personality is a ``Personality`` record: the driver's name as a real device reports it (expectation
  files match it), its migration flags (one feature set, as a real device has), whether it has DMA
  logging, the mock ``Quirks`` that already model some of its behaviour, the capabilities a run on it
  offers, and a ``MockDriver`` subclass that replaces the driver's own parts (its saving and resuming
  files, its final load, what reset does to its state, its MIG_DATA_SIZE answer). The core's plumbing,
  the FSM walk, sessions ending, DMA logging and reopen stay the mock's (vfio_mig_cts/backends/mock/).
- Capabilities: a personality's device has what the vfio backend's devices have (``KernelLog``, ``Reopen``,
  a second open) plus the ones its record lists: ``DeviceProfile`` (the model can change and digest its
  state), ``ErrorInjection`` only for a driver that goes to ERROR by itself, ``DmaWriter`` only for a
  driver whose device logs DMA. None has the mock's ``ArcTrace`` or ``RaceWindow``.
- ``deviations`` are the findings the suite reports on the personality, each with the driver code behind
  it (``path:line`` in Linux 6.12) and the tests it concerns; ``expectations/<driver>.toml`` is generated
  from them and a run (vfio_mig_cts/backends/mock/personalities/regen.py).
- Where the kernel hands the data to firmware (mlx5, pds), what the firmware checks is not in the kernel
  source: each such module states what it assumes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cache

from vfio_mig_cts.backends.mock.backend import (
    DmaWriteHook,
    ErrorHook,
    MockBackend,
    MockDeviceBase,
    ProfileHook,
)
from vfio_mig_cts.backends.mock.driver import MockConfig, MockDriver
from vfio_mig_cts.backends.mock.quirks import Quirks
from vfio_mig_cts.backends.protocol import (
    DEFAULT_PROFILE,
    KERNEL_PROFILES,
    KernelProfile,
    Role,
    Unavailable,
    flags_name,
)

SOURCE_URL = "https://elixir.bootlin.com/linux/v6.12/source/{path}#L{line}"
INCOMPATIBLE_IDENTITY = 0xBAD


class Capability(enum.Enum):
    """An optional capability beyond what a real device offers through the vfio backend."""

    PROFILE = ProfileHook  # DeviceProfile
    ERROR = ErrorHook  # ErrorInjection
    DMA_WRITES = DmaWriteHook  # DmaWriter


def source_link(ref: str) -> str:
    """``drivers/vfio/pci/mlx5/main.c:1175`` -> its elixir.bootlin.com address in v6.12."""
    path, _, line = ref.rpartition(":")
    if not path or not line.isdigit():
        raise ValueError(f"a source reference is path:line, not {ref!r}")
    return SOURCE_URL.format(path=path, line=line)


@dataclass(frozen=True)
class Deviation:
    """A finding of the suite on this personality: the rule, the tests (node-id globs, matched against the
    test ids of a run), why the driver breaks it, and where (``path:line``)."""

    rule: str
    tests: tuple[str, ...]
    reason: str
    source: str
    kernel_messages: bool = False

    @property
    def link(self) -> str:
        return source_link(self.source)


@dataclass(frozen=True)
class Personality:
    """One upstream driver's observable migration behaviour (see the module docstring)."""

    name: str
    driver: str  # the driver's name on a real device: what expectation files match
    flags: int
    summary: str
    driver_class: type[MockDriver]
    state_size: int  # bytes of migratable device state the model carries
    incompatible_state_size: int  # the same, for a device whose streams this one refuses
    dma_logging: bool
    capabilities: frozenset[Capability]
    quirks: Quirks = field(default_factory=Quirks)
    deviations: tuple[Deviation, ...] = ()

    def config(self, role: Role, kernel: KernelProfile = KERNEL_PROFILES[DEFAULT_PROFILE]) -> MockConfig:
        """The device of ``role`` on ``kernel``: an incompatible device differs in identity and state size."""
        incompatible = role is Role.INCOMPATIBLE
        return MockConfig(flags=self.flags, profile=kernel, quirks=self.quirks,
                          state_size=self.incompatible_state_size if incompatible else self.state_size,
                          identity=INCOMPATIBLE_IDENTITY if incompatible else MockConfig.identity,
                          dma_logging=self.dma_logging, driver_class=self.driver_class, driver_name=self.driver)

    def device_class(self) -> type[MockDeviceBase]:
        return _device_class(self.name, tuple(c.value for c in Capability if c in self.capabilities))


@cache
def _device_class(name: str, hooks: tuple[type[MockDeviceBase], ...]) -> type[MockDeviceBase]:
    """The device class of a personality: the mock's base device with exactly these capability hooks."""
    return type(f"{name.title().replace('_', '')}Device", (*hooks, MockDeviceBase), {})


class PersonalityBackend(MockBackend):
    """``--backend mock --personality NAME``: devices of one driver, in its one feature set."""

    def __init__(self, personality: Personality, profile: str = DEFAULT_PROFILE) -> None:
        super().__init__(quirks=personality.quirks, profile=profile)
        self.personality = personality

    def feature_sets(self) -> list[int]:
        return [self.personality.flags]

    def config(self, role: Role, flags: int) -> MockConfig:
        return self.personality.config(role, self.profile)

    def open(self, role: Role, flags: int) -> MockDeviceBase:
        p = self.personality
        if flags != p.flags:
            raise Unavailable(f"{p.name} devices have the migration flags {flags_name(p.flags)} only")
        return p.device_class()(self.config(role, flags), name=f"{p.name}-{role.value}")
