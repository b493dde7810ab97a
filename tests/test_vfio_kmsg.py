"""Reading new kernel trouble: records after the seek position, matching lines, taint changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vfio_mig_cts.backends.vfio.kmsg import KernelLogReader, parse_record, split_records

UUID = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"


def record(text: str, seq: int = 1, device: str | None = None) -> str:
    rec = f"4,{seq},123456,-;{text}\n"
    if device:
        rec += f" SUBSYSTEM=mdev\n DEVICE=+mdev:{device}\n"
    return rec


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, Path]:
    kmsg, tainted = tmp_path / "kmsg", tmp_path / "tainted"
    kmsg.write_text(record("WARNING: old, before the run", 1))
    tainted.write_text("0\n")
    return kmsg, tainted


def test_parse_record_keeps_the_text_and_names_the_device() -> None:
    assert parse_record(b"4,7,1,-;BUG: kernel NULL pointer dereference") == "BUG: kernel NULL pointer dereference"
    raw = record("mtty: something", device=UUID).rstrip("\n").encode()
    assert parse_record(raw) == f"mtty: something [device +mdev:{UUID}]"


def test_split_records_keeps_continuation_lines() -> None:
    chunk = (record("a", 1, device=UUID) + record("b", 2)).encode()
    recs = split_records(chunk)
    assert len(recs) == 2 and recs[0].count(b"\n") == 2


def test_only_new_trouble_lines_are_taken(log: tuple[Path, Path]) -> None:
    kmsg, tainted = log
    reader = KernelLogReader(kmsg, tainted)
    assert reader.take() == []  # what was there before is not ours
    with kmsg.open("a") as f:
        f.write(record("mtty: harmless info", 2))
        f.write(record("WARNING: CPU: 0 PID: 9 at drivers/vfio/vfio_main.c:838 vfio_mig_get_next_state", 3))
        f.write(record("BUG: kernel NULL pointer dereference, address: 0000000000000008", 4, device=UUID))
        f.write(record("Oops: 0000 [#1] PREEMPT SMP", 5))
        f.write(record("general protection fault, probably for non-canonical address", 6))
        f.write(record("Call Trace:", 7))
    got = reader.take()
    assert got == [
        "WARNING: CPU: 0 PID: 9 at drivers/vfio/vfio_main.c:838 vfio_mig_get_next_state",
        f"BUG: kernel NULL pointer dereference, address: 0000000000000008 [device +mdev:{UUID}]",
        "Oops: 0000 [#1] PREEMPT SMP",
        "general protection fault, probably for non-canonical address",
        "Call Trace:",
    ]
    assert reader.take() == []
    reader.close()


def test_a_taint_change_is_reported_once(log: tuple[Path, Path]) -> None:
    kmsg, tainted = log
    reader = KernelLogReader(kmsg, tainted)
    tainted.write_text("512\n")
    assert reader.take() == ["tainted changed from 0 to 512"]
    assert reader.take() == []
    reader.close()


def test_without_kmsg_only_the_taint_is_watched(tmp_path: Path) -> None:
    tainted = tmp_path / "tainted"
    tainted.write_text("0")
    reader = KernelLogReader(tmp_path / "missing", tainted)
    assert reader.unavailable is not None and "missing" in reader.unavailable
    tainted.write_text("1")
    assert reader.take() == ["tainted changed from 0 to 1"]
