"""Sharper checks that answer mutation-testing survivors of the reference mock (mutation/, docs/mutation.md).

Each test here kills mutants of vfio_mig_cts/backends/mock/*.py that the rest of the suite let through; the
mutants it answers are named in mutation/results.md and in its catalogue entry
(vfio_mig_cts/faults/book/mutation.py).
"""

from __future__ import annotations

import struct

import pytest

from vfio_mig_cts.backends.protocol import MigrationDevice, get_state
from vfio_mig_cts.judging.verdict import Verdict
from vfio_mig_cts.uapi.vfio import VFIO_DEVICE_FEATURE_GET as GET
from vfio_mig_cts.uapi.vfio import VFIO_DEVICE_FEATURE_SET as SET
from vfio_mig_cts.uapi.vfio import Feature, State

TAIL = bytes(range(0xA0, 0xA8))  # the caller's bytes past the 8-byte structure


def check_tail(verdict: Verdict, payload: bytes, what: str) -> None:
    tail = payload[8:]
    verdict.check("FEAT.COPY_BACK", tail == TAIL, expected=f"bytes 8..15 of the buffer kept as {TAIL.hex()}",
                  observed=tail.hex() or "(nothing)", context=what)


@pytest.mark.rule("FEAT.COPY_BACK")
@pytest.mark.parametrize("feature", (Feature.MIGRATION, Feature.MIG_DEVICE_STATE, Feature.MIG_DATA_SIZE),
                         ids=lambda f: f.name)
def test_get_copies_back_its_struct_only(flags: int, dut: MigrationDevice, verdict: Verdict,
                                         feature: Feature) -> None:
    """A GET with a buffer longer than the feature's structure leaves the bytes past it as they were.

    With a buffer of exactly the structure's size, nothing is written past it.

    (Answers mutants backend.NumberReplacer.19, .26, .27, .34, .35: the reply's tail taken from the wrong
    offset; backend.NumberReplacer.20: a byte written past an 8-byte buffer.)
    """
    reply = dut.feature(GET | feature, bytes(8) + TAIL)
    check_tail(verdict, reply.payload, f"GET {feature.name} with a 16-byte payload (argsz 24)")
    exact = dut.feature(GET | feature, bytes(8)).payload
    verdict.check("FEAT.COPY_BACK", len(exact) == 8, expected="8 bytes written back (the structure)",
                  observed=f"{len(exact)} bytes", context=f"GET {feature.name} with an 8-byte payload (argsz 16)")


@pytest.mark.rule("ARC.DATA_FD", "FEAT.COPY_BACK")
def test_set_without_session_reply(flags: int, dut: MigrationDevice, verdict: Verdict) -> None:
    """SET RUNNING -> STOP (no session starts) writes data_fd -1 over the caller's value, and leaves the
    bytes past struct vfio_device_feature_mig_state as they were.

    (Answers mutants backend.NumberReplacer.28, data_fd -2, and backend.NumberReplacer.31, the tail.)
    """
    reply = dut.feature(SET | Feature.MIG_DEVICE_STATE, struct.pack("<Ii", State.STOP, 0) + TAIL)
    verdict.check("ARC.DATA_FD", reply.stream is None, expected="no data session from RUNNING -> STOP",
                  observed="a data_fd was installed", context="SET RUNNING -> STOP")
    (fd,) = struct.unpack_from("<i", reply.payload, 4)
    verdict.check("ARC.DATA_FD", fd == -1, expected="data_fd -1 (no session started)", observed=f"data_fd {fd}",
                  context="SET RUNNING -> STOP with data_fd 0 in the caller's buffer")
    check_tail(verdict, reply.payload, "SET MIG_DEVICE_STATE RUNNING -> STOP with a 16-byte payload (argsz 24)")


@pytest.mark.rule("ARC.NO_ASYNC")
def test_first_calls_on_a_fresh_device(flags: int, dut: MigrationDevice, verdict: Verdict) -> None:
    """SET STOP as the very first call on a freshly opened device, then GET three times: STOP each time.

    (Answers mutant driver.ReplaceFalseWithTrue.1: a state drift armed at open, which the rest of the
    suite never saw because its first call was a GET in RUNNING.)
    """
    dut.feature(SET | Feature.MIG_DEVICE_STATE, struct.pack("<Ii", State.STOP, -1))
    seen = [get_state(dut) for _ in range(3)]
    verdict.check("ARC.NO_ASYNC", seen == [State.STOP] * 3, expected="GET reports STOP three times",
                  observed="GET reports " + ", ".join(State(s).name if s < len(State) else str(s) for s in seen),
                  context="SET STOP as the first call after open, then three GETs")
