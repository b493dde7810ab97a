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

import re
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
ROOT = Path(__file__).resolve().parents[2]  # node ids are relative to the repository


def glob_problem(pattern: str, root: Path = ROOT) -> str | None:
    """Why a ``tests`` glob can match no test of the suite (a typo), or None.

    Checked without collecting: the file part (before ``::``), unless it has a ``*``, must be a file
    of the repository, and the test's name (up to ``[`` or the next ``::``), unless it has a ``*``,
    must be a function or class that file defines. A glob without ``::`` or ``*`` names a file, not
    a test. Parameter ids are not checked here (they depend on the device's feature sets).
    """
    if "::" not in pattern:
        return None if "*" in pattern else f"{pattern!r} names no test (node ids look like FILE::TEST[ID]; add ::*)"
    file_part, rest = pattern.split("::", 1)
    if "*" in file_part:
        return None
    source = root / file_part
    if not source.is_file():
        return f"{pattern!r}: no file {file_part} in {root}"
    name = re.split(r"\[|::", rest, maxsplit=1)[0]
    if "*" in name or not name:
        return None
    if not re.search(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b", source.read_text(), re.M):
        return f"{pattern!r}: {file_part} has no test {name}"
    return None


def _optional_str(where: str, e: dict[str, object], key: str) -> str | None:
    value = e.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ExpectationError(f"{where}: {key} must be a non-empty string, not {_show(value)}")
    return value


def _show(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def load(path: Path) -> list[Expectation]:
    """Read and check an expectation file; every problem is one ``ExpectationError`` line."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ExpectationError(f"expectation file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ExpectationError(f"expectation file {path}: not a text file ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationError(f"expectation file {path}: not valid TOML: {exc}") from exc
    entries = data.get("expect", [])
    if set(data) - {"expect"} or not isinstance(entries, list):
        raise ExpectationError(f"expectation file {path}: only [[expect]] tables are allowed")
    out = []
    for i, e in enumerate(entries, 1):
        where = f"{path} entry {i}"
        if not isinstance(e, dict):
            raise ExpectationError(f"{where}: not an [[expect]] table but {_show(e)}")
        if set(e) - _KEYS:
            raise ExpectationError(f"{where}: unknown keys {sorted(set(e) - _KEYS)}; allowed: {sorted(_KEYS)}")
        if not isinstance(e.get("rule"), str) or e["rule"] not in RULES:
            raise ExpectationError(f"{where}: rule {e.get('rule')!r} is not in the registry")
        if not isinstance(e.get("reason"), str) or not e["reason"].strip():
            raise ExpectationError(f"{where}: a reason is required")
        tests = e.get("tests", ["*"])
        if isinstance(tests, str):
            tests = [tests]
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
            raise ExpectationError(f"{where}: tests must be a list of node-id globs")
        for t in tests:
            problem = glob_problem(t)
            if problem:
                raise ExpectationError(f"{where}: tests {problem}: copy the node id from a test report")
        if not isinstance(e.get("kernel_messages", False), bool):
            raise ExpectationError(f"{where}: kernel_messages must be true or false")
        driver, device = _optional_str(where, e, "driver"), _optional_str(where, e, "device")
        link = _optional_str(where, e, "link") or ""
        out.append(Expectation(rule=e["rule"], reason=e["reason"], driver=driver, device=device,
                               tests=tuple(tests), link=link, origin=f"{path.name}:{i}",
                               kernel_messages=e.get("kernel_messages", False)))
    return out
