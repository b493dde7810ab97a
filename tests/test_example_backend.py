"""The example third-party backend (tests/example_backend.py) passes the conformance suite as a user runs it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "example_backend.py"
SPEC = "tests.example_backend:create"
ALLOWED_PROJECT_IMPORTS = {"vfio_mig_cts.backends.protocol", "vfio_mig_cts.uapi.vfio"}
PROJECT_PACKAGES = {"fixtures", "vfio_mig_cts", "lane", "suites", "tests", "benchmarks", "conftest"}


def _run_suite(backend: str, reports: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "suites", "--backend", backend, "-q", "-p", "no:cacheprovider",
           "--reports", str(reports), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_suite_passes_against_example_backend(tmp_path: Path) -> None:
    proc = _run_suite(SPEC, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    calls = [r for r in results if r["when"] == "call"]
    outcomes = {r["nodeid"]: r["outcome"] for r in results}
    bad = {n: o for n, o in outcomes.items() if o in ("failed", "error", "xpassed")}
    assert not bad, bad
    passed = [r for r in calls if r["outcome"] == "passed"]
    assert len(passed) >= 50, f"only {len(passed)} tests passed: {outcomes}"
    # Both suites ran against the example's one feature set.
    assert any(r["nodeid"].startswith("suites/test_arcs.py::test_arc[stop_copy-") for r in passed)
    assert any(r["nodeid"].startswith("suites/test_plumbing.py::") for r in passed)
    assert all(r["driver"] in ("example", "") for r in results)


def test_example_imports_only_the_backend_protocol() -> None:
    tree = ast.parse(EXAMPLE.read_text(), filename=str(EXAMPLE))
    project: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import at line {node.lineno}"
            names = [node.module or ""]
            if node.module in ("vfio_mig_cts", "vfio_mig_cts.uapi"):  # `from X import vfio` names submodules
                names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT_PACKAGES:
                project.add(name)
            else:
                assert top in sys.stdlib_module_names, f"{name} is neither the standard library nor the project"
    assert project <= ALLOWED_PROJECT_IMPORTS, project - ALLOWED_PROJECT_IMPORTS
    assert project, "the example is expected to use vfio_mig_cts.backends.protocol"


@pytest.mark.parametrize("spec", ["tests.no_such_module:create", "tests.example_backend:nope"])
def test_broken_backend_spec_is_a_one_line_usage_error(tmp_path: Path, spec: str) -> None:
    proc = _run_suite(spec, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, output[-4000:]
    assert spec in errors[0]


def test_example_streams_follow_the_uapi() -> None:
    """What the example's docstrings promise about data streams, checked directly."""
    import errno

    from tests.example_backend import FLAGS, create
    from vfio_mig_cts.backends.protocol import Role, data_size, get_state, set_state
    from vfio_mig_cts.uapi.vfio import State

    backend = create(type("Opts", (), {"kernel_profile": None})())
    src, dst = backend.open(Role.DUT, FLAGS), backend.open(Role.PEER, FLAGS)
    src.dirty(3)
    save = set_state(src, State.STOP_COPY)  # RUNNING -> STOP -> STOP_COPY
    assert save is not None and get_state(src) == State.STOP_COPY
    image = save.read(1 << 20)
    assert len(image) == data_size(src) and save.read(1 << 20) == b""
    for op, code in ((lambda: save.write(b"x"), errno.EBADF), (lambda: save.pread(1, 0), errno.ESPIPE),
                     (lambda: save.lseek(0, 0), errno.ESPIPE), (lambda: save.precopy_info(bytes(24)), errno.ENOTTY)):
        with pytest.raises(OSError) as exc:
            op()
        assert exc.value.errno == code
    assert set_state(src, State.STOP) is None
    with pytest.raises(OSError) as exc:
        save.read(1)
    assert exc.value.errno == errno.ENODEV  # the session ended with STOP_COPY -> STOP
    resume = set_state(dst, State.RESUMING)
    assert resume is not None
    resume.write(image[:-1])
    with pytest.raises(OSError) as exc:
        set_state(dst, State.RUNNING)
    assert exc.value.errno == errno.EINVAL and get_state(dst) == State.RESUMING  # a short stream is refused
    resume.write(image[-1:])
    with pytest.raises(OSError) as exc:
        resume.read(1)
    assert exc.value.errno == errno.EBADF
    assert set_state(dst, State.RUNNING) is None and get_state(dst) == State.RUNNING
    assert dst.state_digest() == src.state_digest()
    with pytest.raises(OSError) as exc:
        resume.write(b"x")
    assert exc.value.errno == errno.ENODEV
    with pytest.raises(OSError) as exc:
        set_state(dst, State.ERROR)
    assert exc.value.errno == errno.EINVAL and get_state(dst) == State.RUNNING
