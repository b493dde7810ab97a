"""The stateful explorer finds the catalogue's faults that its steps can reach, each under a rule of the
fault's own family (or its ``also``): the same blame the fixed suites give, from random sequences."""

from __future__ import annotations

import pytest

from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.protocol import Role
from vfio_mig_cts.exploration.stateful import Explorer, Judge
from vfio_mig_cts.exploration.walk import Exploration, explore
from vfio_mig_cts.faults.catalogue import CATALOGUE
from vfio_mig_cts.spec.registry import RULES

# Two seeds: steps whose outcome depends on timing (poll and its timeout) can steer the generated
# sequences differently on a heavily loaded machine; a fault must be found under one of them.
SEEDS, EXAMPLES, STEPS = (7, 8), 40, 40
# Faults of the rules the explorer's steps check. The others are out of its reach by design: the
# plumbing (malformed feature calls), DMA logging and races have suites of their own; invalid or
# incompatible streams are the resume suites' (the explorer only resumes streams it saved); argsz,
# seeking, poll and read-size faults need calls the explorer does not make.
# The sequences depend only on the seed and the options, not on what else the process imported or ran
# (one random.Random per exploration): a fault found when this file runs alone is found inside the whole
# tests/ run under xdist too.
FOUND = (
    "accepts-blocked-arc", "accepts-error-target", "accepts-unsupported-state", "data-size-fails-resuming",
    "dirty-bytes-start-nonzero", "ended-fd-still-reads", "fd-where-none-due", "fds-bidirectional",
    "get-returns-fd", "initial-bytes-never-zero", "initial-bytes-stuck", "initial-bytes-zero", "keeps-old-state",
    "leaves-error-without-reset", "load-not-applied", "no-fd-on-session-start", "passes-through-saving-state",
    "precopy-early-enomsg", "precopy-end-returns-zero", "precopy-info-in-any-state", "precopy-ioctl-missing",
    "refused-request-moves", "reset-ignored-in-resuming", "reset-keeps-fds", "reset-keeps-state",
    "same-state-new-session", "split-header-refused", "state-drifts", "stopcopy-enomsg", "takes-longer-path",
)


@pytest.mark.parametrize("name", FOUND)
def test_explorer_finds_fault(name: str) -> None:
    fault = CATALOGUE[name]
    backend = MockBackend(quirks=fault.quirks(), profile=fault.profile or "debian-6.12.117")
    tried = []
    for seed, flags in ((seed, flags) for seed in SEEDS for flags in (7, 5, 3, 1)):  # richest set first
        def make(flags: int = flags) -> Explorer:
            return Explorer(backend.open(Role.DUT, flags), flags, Judge(), backend.kernel_profile(),
                            reset_at_end=False, hazard_timeout=2.0)

        out = explore(Exploration(make, lambda ex, failed: None), EXAMPLES, STEPS, seed)
        tried.append(f"seed {seed} flags {flags}: {out.runs} sequences, {out.steps} steps")
        if out.finding is None:
            continue
        broken = out.finding.rule.id
        assert RULES[broken].family is fault.family or broken in fault.also, \
            f"{name} found as {broken}, outside family {fault.family.value}:\n{out.finding.message()}"
        assert len(out.sequence) <= 6, out.sequence
        return
    pytest.fail(f"{name} not found with seeds {SEEDS}: {'; '.join(tried)}")
