"""The mtty device plan and its sysfs handling (on a fake sysfs tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lane import mdev
from lane.errors import LaneError, LaneFailure


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_plan_roles_and_types(workers: int) -> None:
    p = mdev.plan("cdev", workers)
    duts = p.of_role("dut")
    assert [d.index for d in duts] == list(range(workers))
    assert {d.mdev_type for d in duts} == {"mtty-2"}
    (peer,) = p.of_role("peer")
    (incompatible,) = p.of_role("incompatible")
    assert peer.mdev_type == duts[0].mdev_type  # a compatible resume target: the same type
    assert incompatible.mdev_type != duts[0].mdev_type  # 1-port streams vs 2-port devices
    assert len({d.uuid for d in p.devices}) == workers + 2
    assert p.ports == 2 * workers + 2 + 1


def test_plan_is_deterministic_per_run_and_distinct_across_runs() -> None:
    assert mdev.plan("cdev", 2) == mdev.plan("cdev", 2)
    cdev, legacy = mdev.plan("cdev", 2), mdev.plan("legacy", 2)
    assert not {d.uuid for d in cdev.devices} & {d.uuid for d in legacy.devices}


def test_plan_pytest_args() -> None:
    p = mdev.plan("cdev", 2)
    d0, d1 = p.of_role("dut")
    assert p.pytest_args() == ["--vfio-device", d0.uuid, "--vfio-device", d1.uuid,
                               "--vfio-peer", p.of_role("peer")[0].uuid,
                               "--vfio-incompatible", p.of_role("incompatible")[0].uuid]


def test_plan_limits() -> None:
    assert mdev.plan("x", 10).ports == 23
    with pytest.raises(LaneError) as exc:
        mdev.plan("x", 11)  # 25 ports > the pool's 24
    assert exc.value.code is LaneFailure.USAGE
    with pytest.raises(LaneError):
        mdev.plan("x", 0)


def fake_sysfs(root: Path, instances: int = 24) -> mdev.Sysfs:
    fs = mdev.Sysfs(root)
    for t in ("mtty-1", "mtty-2"):
        d = fs.type_dir(t)
        d.mkdir(parents=True)
        (d / "available_instances").write_text(f"{instances}\n")
        (d / "create").write_text("")
    (root / "bus/mdev/devices").mkdir(parents=True)
    return fs


def test_missing_parent_is_no_mtty(tmp_path: Path) -> None:
    with pytest.raises(LaneError) as exc:
        mdev.create(mdev.Sysfs(tmp_path), mdev.plan("cdev", 2))
    assert exc.value.code is LaneFailure.NO_MTTY
    assert "CONFIG_SAMPLE_VFIO_MDEV_MTTY" in str(exc.value)


def test_too_few_instances(tmp_path: Path) -> None:
    fs = fake_sysfs(tmp_path, instances=2)
    with pytest.raises(LaneError) as exc:
        mdev.create(fs, mdev.plan("cdev", 2))  # three mtty-2 devices wanted
    assert exc.value.code is LaneFailure.GUEST_SETUP


def test_create_writes_uuids_and_checks_the_device_appears(tmp_path: Path) -> None:
    fs = fake_sysfs(tmp_path)
    p = mdev.plan("cdev", 1)
    with pytest.raises(LaneError) as exc:  # the fake kernel makes no device
        mdev.create(fs, p)
    assert exc.value.code is LaneFailure.GUEST_SETUP
    assert (fs.type_dir("mtty-2") / "create").read_text() == p.devices[0].uuid
    for d in p.devices:
        fs.device(d.uuid).mkdir()
    mdev.create(fs, p)
    assert (fs.type_dir("mtty-1") / "create").read_text() == p.of_role("incompatible")[0].uuid


def test_remove_writes_1_to_existing_devices(tmp_path: Path) -> None:
    fs = fake_sysfs(tmp_path)
    p = mdev.plan("cdev", 2)
    present = p.devices[:2]
    for d in present:
        fs.device(d.uuid).mkdir()
    assert mdev.remove(fs, p) == []
    assert [(fs.device(d.uuid) / "remove").read_text() for d in present] == ["1", "1"]
    (fs.device(present[0].uuid) / "remove").unlink()
    (fs.device(present[0].uuid) / "remove").mkdir()  # a write that fails
    problems = mdev.remove(fs, p)
    assert len(problems) == 1 and present[0].uuid in problems[0]
