"""Fault catalogue parts, one module per rule family added after the foundation.

Each module defines ``FAULTS_PART: tuple[Fault, ...]``; ``vfio_mig_cts.faults.catalogue`` assembles them.
"""

from __future__ import annotations

from vfio_mig_cts.faults.book import concurrency, dma, mutation, operation, precopy, resume

PARTS = (precopy.FAULTS_PART, resume.FAULTS_PART, dma.FAULTS_PART, concurrency.FAULTS_PART, mutation.FAULTS_PART,
         operation.FAULTS_PART)
