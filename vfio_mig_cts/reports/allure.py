"""Allure results (``reports/allure-results/``), drawn from the result record.

Written with ``allure_commons`` (allure-pytest's own writer and model), not by allure-pytest's hooks:
the status, message, category and labels of a test are the record's.

Rules:

- Status: passed (passed, warning), failed (failed, unexpected pass), broken (error), skipped
  (skipped, hazard not run, known failure; a known failure has ``known``). The message starts with
  the outcome's tag (``FAIL``, ``XPASS``, ``ERROR``, ``KERNEL``, ``WARNING``, ``XFAIL``, ``HAZARD``,
  ``SKIP``) and goes on with the findings (rule, force, expected, observed); the trace is the whole
  message.
- Categories (``categories.json`` for Allure 2, ``allurerc.json`` for Allure 3) match that tag, so
  each outcome lands in the category that says what it is: driver violates a must; unexpected pass;
  kernel messages; environment or suite error; should/convention warning; known failure; hazard not
  run.
- Labels: ``parentSuite`` the device, ``suite`` the suite file, ``feature`` each broken-or-checked
  rule's family, ``story`` each rule, ``outcome``, ``device``, ``driver``, ``host``; a link to every
  rule's source; the description quotes each rule.
- ``environment.properties`` states the run record, each key prefixed with the host, so merged
  reports of several hosts keep every run's environment.
- The matrix images are global attachments.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from allure_commons.logger import AllureFileLogger
from allure_commons.model2 import (
    GlobalAttachment,
    Globals,
    Label,
    Link,
    Parameter,
    Status,
    StatusDetails,
    TestResult,
)

from vfio_mig_cts.reports.junit import run_properties
from vfio_mig_cts.reports.record import Outcome, RunResults, TestRecord
from vfio_mig_cts.spec.registry import RULES

STATUS = {Outcome.PASSED: Status.PASSED, Outcome.WARNING: Status.PASSED, Outcome.FAILED: Status.FAILED,
          Outcome.XPASSED: Status.FAILED, Outcome.ERROR: Status.BROKEN, Outcome.SKIPPED: Status.SKIPPED,
          Outcome.HAZARD: Status.SKIPPED, Outcome.XFAILED: Status.SKIPPED}
TAG = {Outcome.FAILED: "FAIL", Outcome.XPASSED: "XPASS", Outcome.ERROR: "ERROR", Outcome.WARNING: "WARNING",
       Outcome.XFAILED: "XFAIL", Outcome.HAZARD: "HAZARD", Outcome.SKIPPED: "SKIP"}

# name, description, statuses, the message tag
CATEGORIES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("driver violates a must", "a must rule of the uAPI is broken: a driver bug", ("failed",), "FAIL"),
    ("unexpected pass", "an expectation file says this breaks, but it passed: the driver was fixed, update the file",
     ("failed",), "XPASS"),
    ("kernel messages", "the kernel logged WARNING/BUG/Oops during the test: see the test's KERNEL lines",
     ("broken",), "KERNEL"),
    ("environment or suite error", "the device, the host or the suite failed (not a driver finding)",
     ("broken",), "ERROR"),
    ("should/convention warning", "a should rule or an upstream convention is broken (a failure under "
     "--strict-rules)", ("passed",), "WARNING"),
    ("known failure", "an expectation-file entry (with its reason and link)", ("skipped",), "XFAIL"),
    ("hazard not run", "a request known to hang or crash some kernels, not run here (--run-hazards runs it)",
     ("skipped",), "HAZARD"),
)


def tag(t: TestRecord) -> str:
    if t.outcome is Outcome.ERROR and t.kernel_messages:
        return "KERNEL"
    return TAG.get(t.outcome, "")


def message(t: TestRecord) -> str:
    """The tag, then the findings (one line each), else the record's first line."""
    lines = [f.summary() for f in t.findings if t.outcome is not Outcome.XPASSED] or [t.headline]
    return f"{tag(t)}: " + "\n".join(line for line in lines if line)


def allure2_categories() -> list[dict[str, Any]]:
    return [{"name": name, "description": description, "matchedStatuses": list(statuses),
             "messageRegex": f"(?s)^{tag_}\\b.*"} for name, description, statuses, tag_ in CATEGORIES]


def allure3_config(name: str = "vfio-mig-cts") -> dict[str, Any]:
    """``allurerc.json`` for Allure 3: the same categories; one HTML file that opens from disk."""
    cats = [{"id": n.replace("/", "-").replace(" ", "-"), "name": n, "description": d,
             "matchers": [{"statuses": list(s), "message": f"^{t}\\b"}]} for n, d, s, t in CATEGORIES]
    awesome = {"options": {"reportName": name, "singleFile": True, "groupBy": ["parentSuite", "suite", "subSuite"]}}
    return {"name": name, "categories": cats, "plugins": {"awesome": awesome}}


def description(t: TestRecord) -> str:
    parts = [t.description.strip()] if t.description.strip() else []
    for rid in t.rules:
        r = RULES.get(rid)
        if r is not None:
            parts.append(f"**{r.id}** ({r.force.value}, {r.family.value}), [{r.source}]({r.link}):\n\n> {r.quote}\n\n"
                         f"{r.summary}")
    return "\n\n".join(parts)


def _result(t: TestRecord, host: str) -> TestResult:
    history = hashlib.md5(f"{t.nodeid}@{t.device}".encode()).hexdigest()
    labels = [Label("parentSuite", t.device or "?"), Label("suite", t.suite), Label("outcome", t.outcome.value),
              Label("device", t.device), Label("driver", t.driver), Label("host", host),
              Label("framework", "vfio-mig-cts")]
    links = []
    for rid in t.rules:
        r = RULES.get(rid)
        if r is None:
            continue
        labels += [Label("feature", r.family.value), Label("story", rid), Label("rule_force", r.force.value)]
        links.append(Link("link", r.link, f"{rid}: {r.source}"))
    params = [Parameter("device", t.device)] + ([Parameter("feature set", t.feature_set)] if t.feature_set else [])
    start = int(t.start * 1000)
    return TestResult(
        uuid=str(uuid.uuid4()), historyId=history, testCaseId=hashlib.md5(t.nodeid.encode()).hexdigest(),
        name=t.name, fullName=t.nodeid, status=STATUS[t.outcome],
        statusDetails=StatusDetails(message=message(t), trace=t.message or None,
                                    known=t.outcome is Outcome.XFAILED or None),
        description=description(t) or None, labels=labels, links=links, parameters=params,
        start=start, stop=start + int(t.duration * 1000), stage="finished")


def _escape(text: str, key: bool = False) -> str:
    out = str(text).replace("\\", "\\\\").replace("\n", "\\n")
    if key:
        for ch in (" ", ":", "="):
            out = out.replace(ch, "\\" + ch)
    return out


def environment(results: RunResults) -> dict[str, str]:
    run = results.run
    env = {k: v for k, v in run_properties(run) if v}
    for i, (name, driver) in enumerate(run.devices, 1):
        env[f"device.{i}"] = name
        env[f"device.{i}.driver"] = driver or "?"
    env["feature_sets"] = ", ".join(run.feature_sets)
    env.update(dict(run.options))
    host = run.host or "host"
    return {f"{host}.{k}": v for k, v in env.items()}


def write(results: RunResults, folder: Path, images: list[Path]) -> None:
    """Every test's result, the environment, the categories and the images into ``folder`` (made anew)."""
    logger = AllureFileLogger(str(folder), clean=True)
    for t in results.tests:
        logger.report_result(_result(t, results.run.host))
    attachments = []
    for image in images:
        source = f"{uuid.uuid4()}-attachment.svg"
        shutil.copyfile(image, folder / source)
        attachments.append(GlobalAttachment(name=image.stem, source=source, type="image/svg+xml"))
    if attachments:
        logger.report_globals(Globals(attachments=attachments))
    env = environment(results)
    (folder / "environment.properties").write_text(
        "".join(f"{_escape(k, key=True)}={_escape(v)}\n" for k, v in env.items()))
    (folder / "categories.json").write_text(json.dumps(allure2_categories(), indent=1) + "\n")


def main(argv: list[str]) -> int:
    """``python -m vfio_mig_cts.reports.allure allurerc FILE``: the Allure 3 config scripts/allure-report uses."""
    if len(argv) == 2 and argv[0] == "allurerc":
        Path(argv[1]).write_text(json.dumps(allure3_config(), indent=1) + "\n")
        return 0
    print("usage: python -m vfio_mig_cts.reports.allure allurerc FILE", file=sys.stderr)
    return 4


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
