"""fixtures/hazards.py: one place decides where a hazardous request runs; rule ids are checked at collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_reports_agree as agree
from vfio_mig_cts.backends.protocol import KERNEL_PROFILES, Hazard
from vfio_mig_cts.reports.record import Outcome, load

SUITE = '''
import pytest

from vfio_mig_cts.backends.protocol import Hazard


@pytest.mark.hazard("spins forever without the loop fix", kind=Hazard.BLOCKED_ARC)
def test_blocked(dut):
    pass


@pytest.mark.hazard("the driver oopses", kind=Hazard.DRIVER)
def test_oops(dut):
    pass
'''


def _run(tmp_path: Path, suite: str, *args: str) -> tuple[int, str, Path]:
    saved = agree.SUITE
    agree.SUITE = suite
    try:
        return agree.run_session(tmp_path, "-k", "stop_copy", *args)
    finally:
        agree.SUITE = saved


@pytest.mark.parametrize(("args", "blocked", "oops"), [
    ((), Outcome.PASSED, Outcome.HAZARD),  # the default profile has the loop fix: only the driver's oops is skipped
    (("--kernel-profile", "6.12-unfixed"), Outcome.HAZARD, Outcome.HAZARD),
    (("--run-hazards",), Outcome.PASSED, Outcome.PASSED),
], ids=["fixed-kernel", "unfixed-kernel", "run-hazards"])
def test_the_kernel_profile_decides_which_hazards_run(tmp_path: Path, args: tuple[str, ...], blocked: Outcome,
                                                      oops: Outcome) -> None:
    code, out, reports = _run(tmp_path, SUITE, *args)
    assert code == 0, out[-3000:]
    by = {t.name.split("[")[0]: t for t in load(reports / "results.json").tests}
    assert by["test_blocked"].outcome is blocked and by["test_oops"].outcome is oops
    if oops is Outcome.HAZARD:
        assert by["test_oops"].message == "hazard not run: the driver oopses; --run-hazards runs it"
        assert by["test_oops"].when == "setup"


def test_profiles_say_what_is_hazardous() -> None:
    assert not KERNEL_PROFILES["debian-6.12.117"].hazardous(Hazard.BLOCKED_ARC)
    assert KERNEL_PROFILES["6.12-unfixed"].hazardous(Hazard.BLOCKED_ARC)
    assert all(p.hazardous(Hazard.DRIVER) for p in KERNEL_PROFILES.values())


def test_a_rule_id_typo_is_a_collection_error(tmp_path: Path) -> None:
    suite = 'import pytest\n\n\n@pytest.mark.rule("ARC.TRANSITON")\ndef test_typo(dut):\n    pass\n'
    code, out, _ = _run(tmp_path, suite)
    assert code == 4, out[-2000:]
    assert "rule ids that are not in the registry" in out and "'ARC.TRANSITON'" in out
    assert "Traceback" not in out
