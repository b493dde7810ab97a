"""The mutation-testing setup is wired right (mutation/, docs/mutation.md); it does not run mutation testing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mutation import quirk_only, runner

ROOT = Path(__file__).resolve().parent.parent


def test_config_names_the_mock_logic_and_the_suite() -> None:
    s = runner.load_settings()
    mock = "vfio_mig_cts/backends/mock"
    assert s.modules == [f"{mock}/driver.py", f"{mock}/streams.py", f"{mock}/backend.py", f"{mock}/paths.py"]
    for module in s.modules:
        assert (ROOT / module).is_file(), module
    assert "vfio_mig_cts/backends/mock/quirks.py" not in s.modules  # the fault knobs are not mutated
    assert re.search(r"-m pytest suites -x\b.*--strict-rules", s.test_command)
    assert 0 < s.timeout <= 120 and s.workers >= 1
    assert all(op.startswith("core/") for op in s.operators)


def test_tool_is_pinned() -> None:
    reqs = [ln for ln in (ROOT / "mutation/requirements.txt").read_text().splitlines()
            if ln and not ln.startswith("#")]
    assert reqs == ["cosmic-ray==8.7.0"]


def test_quirk_only_spans() -> None:
    src = (
        "def f(self, q, x):\n"
        "    if q.keep_old_state and x > 1:\n"
        "        x = x + 1\n"
        "    if not q.keep_old_state:\n"
        "        x = x - 1\n"
        "    return x + 2\n"
    )
    spans = quirk_only.quirk_only_spans(src)
    assert quirk_only.reason_for(spans, ((3, 8), (3, 17)))  # body of the knob's branch
    assert quirk_only.reason_for(spans, ((2, 30), (2, 31)))  # `>`: never evaluated after a falsy knob
    assert quirk_only.reason_for(spans, ((2, 7), (2, 23))) is None  # the knob test itself is mutated
    assert quirk_only.reason_for(spans, ((5, 8), (5, 17))) is None  # runs with every knob off
    assert quirk_only.reason_for(spans, ((6, 11), (6, 16))) is None


def test_quirk_only_chains_and_annotations() -> None:
    src = (
        "def f(self, q, x: int | None) -> int:\n"
        "    if x == 1 and q.keep_old_state and self.g(x):\n"
        "        pass\n"
        "    if not (q.keep_old_state or q.reset_keeps_state):\n"
        "        return 0\n"
        "    return 1\n"
    )
    spans = quirk_only.quirk_only_spans(src)
    assert quirk_only.reason_for(spans, ((2, 9), (2, 11)))  # `==` of a pure operand before the falsy knob
    assert quirk_only.reason_for(spans, ((2, 7), (2, 48)), "core/AddNot")  # `not` binds to that operand
    assert quirk_only.reason_for(spans, ((2, 7), (2, 48)), "core/ReplaceAndWithOr") is None
    assert quirk_only.reason_for(spans, ((4, 29), (4, 31)))  # `or` between two knobs: false either way
    assert quirk_only.reason_for(spans, ((4, 7), (4, 53)), "core/AddNot") is None  # negating the guard is not
    assert quirk_only.reason_for(spans, ((6, 11), (6, 12)))  # after `if not (knobs): return`
    assert quirk_only.reason_for(spans, ((1, 22), (1, 23)))  # the annotation `int | None`


def test_the_mock_modules_parse_for_the_filter() -> None:
    for module in runner.load_settings().modules:
        quirk_only.quirk_only_spans((ROOT / module).read_text())


def test_equivalent_list_entries_have_reasons() -> None:
    entries = runner.load_equivalent()
    assert entries, "mutation/equivalent.md lists no mutant"
    for mid, why in entries.items():
        assert re.fullmatch(r"(driver|streams|backend|paths)\.\w+\.\d+", mid), mid
        assert why, f"{mid}: no 'Why:' line"


def test_docs_name_the_command() -> None:
    doc = (ROOT / "docs/mutation.md").read_text()
    assert "python -m mutation" in doc


@pytest.mark.parametrize("argv", [["--help"], ["check", "--help"]])
def test_cli_parses(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        runner.main(argv)
    assert exc.value.code == 0
