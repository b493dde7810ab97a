"""Expectation files: known failures of a driver, strict (a fix shows up as an unexpected pass).

Format (TOML)::

    [[expect]]
    rule = "EOS.PRECOPY_ENOMSG"             # a registry rule id (required)
    driver = "mtty"                         # match by driver name, or
    device = "0000:3b:00.1"                 # by device name (either, both, or neither = any)
    tests = ["suites/test_precopy.py::*"]   # node-id globs (default: every test checking the rule)
    reason = "mtty returns 0 at the temporary end of stream"   # required
    link = "https://lore.kernel.org/..."    # where the bug is discussed (optional)
    kernel_messages = true                  # the bug logs kernel messages (an oops, a WARN) (optional)

A test matched by an entry that breaks that entry's rule (and no other) is an expected failure;
one that passes is reported as an unexpected pass, a failure. Kernel messages logged during a test
make it an ERROR (fixtures/health.py), unless it is an expected failure by an entry with
``kernel_messages = true``: the messages are then quoted in the expected failure's reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from vfio_mig_cts.judging import globs
from vfio_mig_cts.spec.registry import RULES


class ExpectationError(ValueError):
    """A malformed expectation file; the message names the file and entry."""


@dataclass(frozen=True)
class Expectation:
    rule: str
    reason: str
    driver: str | None = None
    device: str | None = None
    tests: tuple[str, ...] = ("*",)
    link: str = ""
    origin: str = ""
    kernel_messages: bool = False

    def applies(self, nodeid: str, driver: str, device: str, checked: list[str]) -> bool:
        if self.driver is not None and self.driver != driver:
            return False
        if self.device is not None and self.device != device:
            return False
        if self.rule not in checked:
            return False
        return any(globs.match(nodeid, pat) for pat in self.tests)

    def describe(self) -> str:
        where = f" ({self.link})" if self.link else ""
        return f"{self.rule}: {self.reason}{where} [{self.origin}]"


_KEYS = {"rule", "reason", "driver", "device", "tests", "link", "kernel_messages"}


def load(path: Path) -> list[Expectation]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ExpectationError(f"expectation file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationError(f"expectation file {path}: not valid TOML: {exc}") from exc
    entries = data.get("expect", [])
    if set(data) - {"expect"} or not isinstance(entries, list):
        raise ExpectationError(f"expectation file {path}: only [[expect]] tables are allowed")
    out = []
    for i, e in enumerate(entries, 1):
        where = f"{path} entry {i}"
        if not isinstance(e, dict) or set(e) - _KEYS:
            raise ExpectationError(f"{where}: unknown keys {sorted(set(e) - _KEYS)}; allowed: {sorted(_KEYS)}")
        if e.get("rule") not in RULES:
            raise ExpectationError(f"{where}: rule {e.get('rule')!r} is not in the registry")
        if not isinstance(e.get("reason"), str) or not e["reason"].strip():
            raise ExpectationError(f"{where}: a reason is required")
        tests = e.get("tests", ["*"])
        if isinstance(tests, str):
            tests = [tests]
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise ExpectationError(f"{where}: tests must be a list of node-id globs")
        if not isinstance(e.get("kernel_messages", False), bool):
            raise ExpectationError(f"{where}: kernel_messages must be true or false")
        out.append(Expectation(rule=e["rule"], reason=e["reason"], driver=e.get("driver"),
                               device=e.get("device"), tests=tuple(tests), link=e.get("link", ""),
                               origin=f"{path.name}:{i}", kernel_messages=e.get("kernel_messages", False)))
    return out
