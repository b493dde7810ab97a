"""Mock personalities: the mock in the shape of an upstream driver (``--backend mock --personality NAME``).

Each module models one Linux 6.12 driver as its source shows it (docs/driver-models.md); ``base.py`` says
what a personality is. ``PERSONALITIES`` is the registry, by the name ``--personality`` takes.
"""

from __future__ import annotations

from vfio_mig_cts.backends.mock.personalities.base import Personality
from vfio_mig_cts.backends.mock.personalities.hisi_acc import HISI_ACC
from vfio_mig_cts.backends.mock.personalities.mlx5 import MLX5
from vfio_mig_cts.backends.mock.personalities.mtty import MTTY
from vfio_mig_cts.backends.mock.personalities.pds import PDS
from vfio_mig_cts.backends.mock.personalities.qat import QAT

PERSONALITIES: dict[str, Personality] = {p.name: p for p in (HISI_ACC, MLX5, MTTY, PDS, QAT)}


def lookup(name: str) -> Personality:
    """The personality called ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return PERSONALITIES[name]
    except KeyError:
        raise KeyError(f"unknown personality {name!r} (known: {', '.join(sorted(PERSONALITIES))})") from None


__all__ = ["PERSONALITIES", "Personality", "lookup"]
