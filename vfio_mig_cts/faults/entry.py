"""One fault catalogue entry: a faulty mock as data (see vfio_mig_cts/faults/catalogue.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vfio_mig_cts.backends.mock.quirks import Quirks, with_changes
from vfio_mig_cts.spec.registry import RULES, Family


@dataclass(frozen=True)
class Fault:
    name: str
    rule: str
    description: str
    changes: dict[str, Any] = field(default_factory=dict)
    kills: tuple[str, ...] = ()  # node-id globs of tests that must fail against this fault
    profile: str | None = None  # a kernel profile this fault needs (core faults)
    # Further rules the fault necessarily breaks too, outside its family (a counter that lies about
    # the data left also makes the end of stream come early); the self-test allows exactly these.
    also: tuple[str, ...] = ()

    def quirks(self) -> Quirks:
        return with_changes(self.changes)

    @property
    def family(self) -> Family:
        return RULES[self.rule].family
