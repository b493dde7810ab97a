"""What a rule is: its id, family, force, source line and quote (the registry is ``spec/registry.py``).

Each quote is the kernel's own text (Linux 6.12 as Debian ships it); ``tests/test_rules.py`` finds
every quote at its cited line in ``linux-source-6.12``. The force is the text's own modal verb:
``must`` is a failure; ``should`` a warning (a failure under ``--strict-rules``); ``convention`` is what
every upstream driver does though the header does not state it (a warning).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Force(enum.Enum):
    MUST = "must"
    SHOULD = "should"
    CONVENTION = "convention"


class Family(enum.Enum):
    """Rule families, as reports group them."""

    ARCS = "arcs"
    PLUMBING = "plumbing"
    PRECOPY = "precopy"
    END_OF_STREAM = "end of stream"
    FD_LIFECYCLE = "fd lifecycle"
    DATA_SIZE = "data size"
    INTEGRITY = "integrity"
    RESUME = "resume validation"
    RESET = "reset"
    CLOSE_REOPEN = "close/reopen"
    DMA_LOGGING = "dma logging"
    CONCURRENCY = "concurrency"


@dataclass(frozen=True)
class Rule:
    id: str
    family: Family
    force: Force
    source: str  # "include/uapi/linux/vfio.h:1024"
    quote: str
    summary: str

    @property
    def path(self) -> str:
        return self.source.rsplit(":", 1)[0]

    @property
    def line(self) -> int:
        return int(self.source.rsplit(":", 1)[1])

    @property
    def link(self) -> str:
        """Where to read the rule (the 6.12 source on the kernel's own web view)."""
        return f"https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git/tree/{self.path}?h=linux-6.12.y#n{self.line}"

    def headline(self) -> str:
        return f"[{self.id} {self.force.value}] {self.source}: \"{self.quote}\""
