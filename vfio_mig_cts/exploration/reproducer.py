"""A stateful finding as a standalone script: the minimal sequence, replayed on the same backend.

``script()`` writes one ``ex.<step>(...)`` line per step of the sequence (a SET says which state in a
comment) inside ``with reproduce(<target>) as ex:``; a maintainer runs it, or pastes the lines into
``with reproduce(...)`` of their own. ``reproduce()`` opens the target through the backend loader, as
``--backend`` does (so this module knows no backend: a mock with quirks no catalogue entry names gets
them through ``BackendOptions.extra["quirks"]``, which the mock's factory reads), gives the steps an
``Explorer`` and says whether a rule broke again: exit 1 and the finding when it did, 0 when every step
passed. Findings of the ``known`` rules are printed and gone past, as the exploration did.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfio_mig_cts.backends.loader import BackendOptions, load_backend
from vfio_mig_cts.backends.protocol import Backend, MigrationDevice, Role, get_state
from vfio_mig_cts.exploration.stateful import Explorer, Judge, Step
from vfio_mig_cts.judging.verdict import Finding, RuleViolation
from vfio_mig_cts.uapi.vfio import State, state_name

ROOT = Path(__file__).resolve().parents[2]  # the checkout a script imports the suite from


@dataclass(frozen=True)
class Target:
    """How to get the device a run explored again: the backend and its options."""

    backend: str = "mock"
    flags: int = 7
    fault: str | None = None
    personality: str | None = None  # the mock as an upstream driver's model
    kernel_profile: str | None = None
    devices: tuple[str, ...] = ()
    open_path: str = "auto"
    ioctl_timeout: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)  # BackendOptions.extra: the backend's own knobs
    hazard_timeout: float = 5.0
    run_hazards: bool = False
    known: tuple[str, ...] = ()  # rules the judge tolerates (known findings of the driver)

    def call_args(self) -> str:
        """The keywords that make this target again, as Python source (defaults left out)."""
        default = Target()
        parts = [f"backend={self.backend!r}", f"flags={self.flags:#x}"]
        for name in ("fault", "personality", "kernel_profile", "devices", "open_path", "ioctl_timeout", "extra",
                     "hazard_timeout", "run_hazards", "known"):
            value = getattr(self, name)
            if value != getattr(default, name) or name == "hazard_timeout":
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)

    def options(self) -> BackendOptions:
        return BackendOptions(kernel_profile=self.kernel_profile, devices=self.devices, open_path=self.open_path,
                              ioctl_timeout=self.ioctl_timeout, fault=self.fault, personality=self.personality,
                              extra=dict(self.extra))


def _describe_step(step: Step) -> str:
    name, args = step
    if name == "set_state" and args:
        return f"  # SET {state_name(int(args[0]))}"
    return ""


def script(target: Target, steps: list[Step], finding: Finding, origin: str) -> str:
    """A standalone Python script that replays ``steps`` on ``target``: exit 1 when a rule breaks again."""
    lines = [
        f"#!{sys.executable}",
        '"""vfio-mig-cts stateful reproducer.',
        "",
        f"{origin}",
        f"Breaks {finding.rule.id} ({finding.rule.force.value}, {finding.rule.source}) in {len(steps)} step(s):",
        f"  {finding.rule.quote}",
        "Exit status 1 when the rule breaks again (the finding is printed), 0 when every step passes.",
        *([f"Known findings of the driver, recorded and gone past: {', '.join(target.known)}."]
          if target.known else []),
        '"""',
        "import sys",
        "",
        f"sys.path.insert(0, {str(ROOT)!r})",
        "",
        "from vfio_mig_cts.exploration.reproducer import reproduce  # noqa: E402",
        "",
        f"with reproduce({target.call_args()}) as ex:",
    ]
    for name, args in steps:
        call = f"    ex.{name}({', '.join(repr(a) for a in args)})"
        lines.append(call + _describe_step((name, args)))
    if not steps:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def open_target(target: Target) -> tuple[Backend, MigrationDevice]:
    """The backend and a device in RUNNING for ``target``."""
    backend = load_backend(target.backend, target.options())
    return backend, backend.open(Role.DUT, target.flags)


@contextmanager
def reproduce(exit: bool = True, **kwargs: Any) -> Iterator[Explorer]:
    """Open the target, give the steps an ``Explorer``, and say whether a rule broke again.

    Exits the process (status 1 reproduced, 0 not) unless ``exit=False``; then ``RuleViolation``
    propagates to the caller as it happened. Findings of the ``known`` rules are printed and gone past,
    as the exploration did."""
    target = Target(**kwargs)
    backend, dev = open_target(target)
    real = bool(getattr(backend, "real", True))  # a backend that does not say is real (backends/protocol.py)
    judge = Judge(frozenset(target.known))
    ex = Explorer(dev, target.flags, judge, backend.kernel_profile(), reset_at_end=real,
                  hazard_timeout=target.hazard_timeout, run_hazards=target.run_hazards, real=real)
    code = 0
    try:
        try:
            yield ex
            ex.finish()
        except RuleViolation as exc:
            _print_known(judge)
            if not exit:
                raise
            print(f"REPRODUCED after {len(ex.log)} step(s):\n{exc.finding.message()}")
            code = 1
        else:
            _print_known(judge)
            print(f"not reproduced: all {len(ex.log)} step(s) passed")
    finally:
        ex.close_all()
        try:
            if get_state(dev) != State.RUNNING:
                dev.reset()
        except OSError:
            pass
        dev.close()
        backend.close()
    if exit:
        sys.exit(code)


def _print_known(judge: Judge) -> None:
    for f in judge.findings:
        if f.rule.id in judge.tolerated:
            print(f"known finding, gone past: {f.rule.id}: {f.observed}")
