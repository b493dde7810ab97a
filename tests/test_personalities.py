"""Mock personalities: each one run with --strict and its expectation file yields exactly that file.

The file is what the regeneration tool renders from a plain ``--strict`` run (so a changed rule id, force
or finding shows as a diff: regenerate with ``python -m vfio_mig_cts.backends.mock.personalities.regen``),
and a run with ``expectations/<name>.toml`` exits 0 (no finding the file does not list, no listed test
that passes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel_source import require_source
from vfio_mig_cts.backends.mock.personalities import PERSONALITIES, lookup
from vfio_mig_cts.backends.mock.personalities.base import Capability, Personality, source_link
from vfio_mig_cts.backends.mock.personalities.regen import expectation_path, explain, render, run
from vfio_mig_cts.backends.protocol import ArcTrace, DeviceProfile, DmaWriter, ErrorInjection, RaceWindow, Role
from vfio_mig_cts.spec.registry import RULES

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(PERSONALITIES))
def test_personality_yields_its_expectation_file(name: str, tmp_path: Path) -> None:
    """The file is what a plain --strict run finds (rendered the regeneration tool's way), and a run with
    it exits 0: no finding it does not list, no test it lists that passes."""
    p = PERSONALITIES[name]
    path = expectation_path(p)
    assert path.is_file(), f"no {path.name}: python -m vfio_mig_cts.backends.mock.personalities.regen {name}"
    plain = run(p, tmp_path / "plain")
    explained = explain(p, plain.results)
    assert explained.ok, explained.report(name)
    rendered = render(p, explained, [r["nodeid"] for r in plain.results])
    assert rendered == path.read_text(), (f"{path.name} is not what the run gives: regenerate it with "
                                          f"python -m vfio_mig_cts.backends.mock.personalities.regen {name}")
    known = run(p, tmp_path / "known", "--expectations", str(path))
    assert known.returncode == 0, known.output[-4000:]
    assert not [r for r in known.results if r["outcome"] in ("failed", "error", "xpassed")]


@pytest.mark.parametrize("name", sorted(PERSONALITIES))
def test_personality_record(name: str) -> None:
    """Every deviation names a registry rule, tests, a reason, and a non-blank line of the 6.12 source."""
    p = PERSONALITIES[name]
    assert p.deviations, f"{name}: no deviation listed"
    for d in p.deviations:
        assert d.rule in RULES, f"{name}: {d.rule} is not a registry rule"
        assert d.link.startswith("https://elixir.bootlin.com/linux/v6.12/source/")
        assert d.reason and d.tests


@pytest.mark.parametrize("name", sorted(PERSONALITIES))
def test_deviation_sources_exist(name: str) -> None:
    tree = require_source()
    for d in PERSONALITIES[name].deviations:
        path, _, line = d.source.rpartition(":")
        lines = (tree / path).read_text(errors="replace").splitlines()
        assert int(line) <= len(lines) and lines[int(line) - 1].strip(), f"{name}: {d.source} is no source line"


@pytest.mark.parametrize("name", sorted(PERSONALITIES))
def test_capabilities(name: str) -> None:
    """A personality's device has the capabilities its record lists, and no other optional one."""
    p = PERSONALITIES[name]
    dev = p.device_class()(p.config(Role.DUT))
    assert dev.driver == p.driver
    assert isinstance(dev, DeviceProfile) == (Capability.PROFILE in p.capabilities)
    assert isinstance(dev, ErrorInjection) == (Capability.ERROR in p.capabilities)
    assert isinstance(dev, DmaWriter) == (Capability.DMA_WRITES in p.capabilities)
    assert not isinstance(dev, ArcTrace) and not isinstance(dev, RaceWindow)


@pytest.mark.parametrize("name", sorted(PERSONALITIES))
def test_documented(name: str) -> None:
    """docs/driver-models.md has a section per personality naming each deviation's rule and source line."""
    doc = (ROOT / "docs" / "driver-models.md").read_text()
    sections = {part.split(" ", 1)[0]: part for part in doc.split("\n## ")[1:]}
    assert name in sections, f"docs/driver-models.md has no section '## {name} (...)'"
    for d in PERSONALITIES[name].deviations:
        path, _, line = d.source.rpartition(":")
        assert d.rule in sections[name], f"{name}: {d.rule} is not in its section of docs/driver-models.md"
        assert f"{Path(path).name}:{line}" in sections[name], f"{name}: {d.source} is not in its section"


@pytest.mark.parametrize(("args", "says"), [
    (["--personality", "nosuchdriver"], "unknown personality 'nosuchdriver'"),
    (["--personality", "mtty", "--fault", "state-drifts"], "--fault and --personality"),
    (["--personality", "mtty", "--backend", "vfio"], "--personality shapes the mock"),
])
def test_bad_personality_options_are_usage_errors(args: list[str], says: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", "--reports",
                           str(tmp_path), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0], proc.stderr


def test_lookup_and_links() -> None:
    assert isinstance(lookup("mtty"), Personality)
    with pytest.raises(KeyError, match="known: "):
        lookup("virtio")
    assert source_link("samples/vfio-mdev/mtty.c:909") == \
        "https://elixir.bootlin.com/linux/v6.12/source/samples/vfio-mdev/mtty.c#L909"
    with pytest.raises(ValueError):
        source_link("mtty.c")
