"""The result record: one typed record per test and one per run, from which every report is drawn.

Rules:

- A test has exactly one outcome (``Outcome``), decided once, where the test ran: the worst of its
  setup, call and teardown, with a broken *should*/*convention* rule a ``warning`` (a ``failed``
  under ``--strict-rules``), an expectation-file match an ``xfailed`` (or ``xpassed`` when the test
  held), a skip of a hazardous request a ``hazard``, and an error of the environment or the suite an
  ``error`` (never a driver's finding).
- Findings are data: rule id, force, quote, source location, expected, observed, context. Nothing
  downstream parses a message to recover them.
- The run record says how the run ended (``RunStatus``): ``complete`` (every collected test
  reported), ``interrupted`` (a signal or Ctrl-C ended it: what finished is there), ``aborted`` (it
  stopped before running tests: a usage or collection error).
- ``results.json`` is this record as JSON (``to_json``/``from_json`` round-trip exactly); its
  ``schema`` names the layout.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "vfio-mig-cts/results/2"


class Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    WARNING = "warning"
    XFAILED = "xfailed"
    XPASSED = "xpassed"
    SKIPPED = "skipped"
    HAZARD = "hazard"
    ERROR = "error"

    @property
    def bad(self) -> bool:
        """Whether this outcome fails a run (a failure, an unexpected pass, an error)."""
        return self in (Outcome.FAILED, Outcome.XPASSED, Outcome.ERROR)

    @property
    def executed(self) -> bool:
        """Whether the test ran its checks (it was not skipped before them)."""
        return self not in (Outcome.SKIPPED, Outcome.HAZARD)


class RunStatus(enum.Enum):
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Finding:
    """One broken rule, as the judge saw it."""

    rule: str
    force: str  # must | should | convention
    source: str  # include/uapi/linux/vfio.h:1094
    quote: str
    expected: str
    observed: str
    context: str = ""

    def headline(self) -> str:
        return f"[{self.rule} {self.force}] {self.source}: \"{self.quote}\""

    def summary(self) -> str:
        """``RULE (force): expected ...; observed ...`` on one line."""
        return f"{self.rule} ({self.force}): expected {self.expected}; observed {self.observed}"

    def text(self) -> str:
        lines = [self.headline()]
        lines += [f"  {line}" for line in self.context.splitlines()]
        lines += [f"  expected: {self.expected}", f"  observed: {self.observed}"]
        return "\n".join(lines)


@dataclass(frozen=True)
class Case:
    """What a parametrized test exercised, as data: the arc (from-state, requested state) when it is one."""

    from_state: str = ""
    to_state: str = ""


@dataclass(frozen=True)
class ExpectationMatch:
    """The expectation-file entry that matched the test (``file.toml:N``)."""

    rule: str
    reason: str
    origin: str
    link: str = ""


@dataclass
class TestRecord:
    """One test's result, made once by the judge's side of the plugin."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: Outcome
    when: str = "call"  # the phase that decided the outcome: setup | call | teardown
    message: str = ""  # why, in one paragraph: the finding(s), the skip reason, the error
    device: str = ""
    driver: str = ""
    feature_set: str = ""
    case: Case | None = None
    rules: tuple[str, ...] = ()  # declared or judged
    judged: tuple[str, ...] = ()  # judged before the test ended
    findings: tuple[Finding, ...] = ()
    expectation: tuple[ExpectationMatch, ...] = ()
    kernel_messages: tuple[str, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()  # facts the test recorded (a seed, where a failure surfaced)
    start: float = 0.0  # seconds since the epoch, when its setup began
    duration: float = 0.0  # setup + call + teardown
    worker: str = ""
    description: str = ""  # the test's docstring

    @property
    def broken(self) -> tuple[str, ...]:
        return tuple(sorted({f.rule for f in self.findings}))

    @property
    def suite(self) -> str:
        """The suite file's stem: ``test_arcs``."""
        return Path(self.nodeid.split("::", 1)[0]).stem

    @property
    def name(self) -> str:
        """The test's name inside its file: ``test_arc[stop_copy-RUNNING->STOP]``."""
        return self.nodeid.split("::", 1)[1].replace("::", ".") if "::" in self.nodeid else self.nodeid

    @property
    def headline(self) -> str:
        """The first line of the message."""
        return next((ln.strip() for ln in self.message.splitlines() if ln.strip()), "")


@dataclass
class RunRecord:
    """How the run went, as every report's header states it."""

    status: RunStatus = RunStatus.COMPLETE
    exit_status: int = 0
    command: tuple[str, ...] = ()
    backend: str = ""
    devices: tuple[tuple[str, str], ...] = ()  # (name, driver)
    feature_sets: tuple[str, ...] = ()
    kernel_profile: str = ""
    kernel_release: str = ""
    host: str = ""
    start: float = 0.0
    end: float = 0.0
    collected: int = 0
    strict_rules: bool = False
    expectations: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # other settings worth stating (name, value)


@dataclass
class RunResults:
    run: RunRecord
    tests: list[TestRecord] = field(default_factory=list)

    def counts(self) -> Counter[Outcome]:
        return Counter(t.outcome for t in self.tests)


# --- JSON ---------------------------------------------------------------------------------------------------

def test_to_json(t: TestRecord) -> dict[str, Any]:
    d = asdict(t)
    d["outcome"] = t.outcome.value
    d["broken"] = list(t.broken)
    return d


def to_json(results: RunResults) -> dict[str, Any]:
    run = asdict(results.run)
    run["status"] = results.run.status.value
    return {"schema": SCHEMA, "run": run, "results": [test_to_json(t) for t in results.tests]}


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(tuple(v) if isinstance(v, list) else v for v in (value or ()))


def test_from_json(d: Mapping[str, Any]) -> TestRecord:
    case = d.get("case")
    return TestRecord(
        nodeid=str(d["nodeid"]), outcome=Outcome(d["outcome"]), when=str(d.get("when", "call")),
        message=str(d.get("message", "")), device=str(d.get("device", "")), driver=str(d.get("driver", "")),
        feature_set=str(d.get("feature_set", "")), case=Case(**case) if case else None,
        rules=tuple(d.get("rules", ())), judged=tuple(d.get("judged", ())),
        findings=tuple(Finding(**f) for f in d.get("findings", ())),
        expectation=tuple(ExpectationMatch(**e) for e in d.get("expectation", ())),
        kernel_messages=tuple(d.get("kernel_messages", ())), properties=_tuple(d.get("properties")),
        start=float(d.get("start", 0.0)), duration=float(d.get("duration", 0.0)),
        worker=str(d.get("worker", "")), description=str(d.get("description", "")))


def from_json(data: Mapping[str, Any]) -> RunResults:
    """The record back from ``to_json``'s output (``ValueError`` when it is not one)."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} results file (schema {data.get('schema')!r})")
    r = dict(data["run"])
    run = RunRecord(
        status=RunStatus(r.get("status", "complete")), exit_status=int(r.get("exit_status", 0)),
        command=tuple(r.get("command", ())), backend=str(r.get("backend", "")),
        devices=_tuple(r.get("devices")), feature_sets=tuple(r.get("feature_sets", ())),
        kernel_profile=str(r.get("kernel_profile", "")), kernel_release=str(r.get("kernel_release", "")),
        host=str(r.get("host", "")), start=float(r.get("start", 0.0)), end=float(r.get("end", 0.0)),
        collected=int(r.get("collected", 0)), strict_rules=bool(r.get("strict_rules", False)),
        expectations=tuple(r.get("expectations", ())), options=_tuple(r.get("options")))
    return RunResults(run, [test_from_json(t) for t in data.get("results", ())])


def load(path: Path) -> RunResults:
    """A ``results.json`` (``ValueError`` with the path when unreadable or not ours)."""
    try:
        return from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a vfio-mig-cts results file: {exc}") from exc


def by_nodeid(tests: Iterable[TestRecord]) -> dict[str, TestRecord]:
    return {t.nodeid: t for t in tests}
