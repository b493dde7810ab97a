"""Rule registry parts, one module per rule family.

Each module defines ``RULES_PART: tuple[Rule, ...]``; ``vfio_mig_cts.spec.registry`` registers them all.
"""

from __future__ import annotations

from vfio_mig_cts.spec.rulebook import concurrency, core, dma, mutation, operation, precopy, resume

PARTS = (core.RULES_PART, precopy.RULES_PART, resume.RULES_PART, dma.RULES_PART, concurrency.RULES_PART,
         mutation.RULES_PART, operation.RULES_PART)
