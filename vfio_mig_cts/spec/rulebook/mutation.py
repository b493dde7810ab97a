"""Rules added to answer mutation-testing survivors of the reference mock (mutation/, docs/mutation.md)."""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule

C = "drivers/vfio/vfio_main.c"

RULES_PART: tuple[Rule, ...] = (
    Rule("FEAT.COPY_BACK", Family.PLUMBING, Force.MUST, f"{C}:965",
         "if (copy_to_user(arg, &data_size, sizeof(data_size)))",
         "a GET of a migration feature copies back its structure and nothing more (the core's handlers "
         "copy sizeof the struct: vfio_main.c:936, 965, 987): the caller's bytes past it stay as they were"),
)
