"""Resume: compatibility surfaces on the final load; a second session is checked again; recovery.

The uAPI (vfio.h, RESUMING -> STOP): the driver "should" perform "final validity and consistency
checking" (RESUME.FINAL_CHECK, a should: mlx5 does none) and, if the data "is found to be" incomplete,
inconsistent, or otherwise invalid, must fail the SET_STATE ioctl (RESUME.FINAL_LOAD: judged where the
driver itself refused a write() of the data, and the load still succeeds, as mtty's header hole does);
"To abort a RESUMING session the device must be reset."

Each invalid stream is written, then the final load requested. What counts is what write() took: if
those bytes are exactly the saved stream (a driver that refused appended bytes at write() took no
more), the load must succeed; otherwise it fails (must where a write() was refused, should where none
was). Where the failure surfaced (a write() or the
final load) and its errno go into the verdict and into the test's ``surfaced`` property. After a
refused load: the state is one the path allows, a reset returns RUNNING, the old resuming fd is dead
and a fresh valid resume works. Flipped bits inside the payload need not be detected (the uAPI asks
for no checksum): what the driver does there is recorded, not judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from fixtures.plugin import backend_of, feature_set_id
from vfio_mig_cts.backends.protocol import DeviceProfile, MigrationDevice
from vfio_mig_cts.judging.checks import check_load_refused
from vfio_mig_cts.judging.driving import Session, walk
from vfio_mig_cts.judging.resume_cases import (
    Attempt,
    Live,
    Saved,
    attempt,
    careless_chunks,
    check_dead,
    check_loaded,
    check_refused_state,
    check_resumed,
    reset_out_of,
    save_source,
    sources_for,
)
from vfio_mig_cts.judging.verdict import Verdict
from vfio_mig_cts.uapi.vfio import State

S = State
APPENDED = b"\xa5" * 64


def _flip_header(s: Saved, other: bytes) -> list[bytes]:
    return [bytes(b ^ 0xFF for b in s.data[:8]) + s.data[8:]]


def _flip_payload(s: Saved, other: bytes) -> list[bytes]:
    mid = len(s.data) // 2
    return [s.data[:mid] + bytes([s.data[mid] ^ 0x01]) + s.data[mid + 1:]]


# kind -> (the chunks written, one write() each, from the saved stream and the incompatible one; what it is)
KINDS: dict[str, tuple[Callable[[Saved, bytes], list[bytes]], str]] = {
    "incompatible": (lambda s, other: [other], "a stream saved from an incompatible device"),
    "cut-at-precopy-end": (lambda s, other: [s.data[:s.precopy_len]], "the stream cut where PRE_COPY ended"),
    "cut-in-middle": (lambda s, other: [s.data[:len(s.data) // 2]], "the first half of the stream"),
    "one-byte-short": (lambda s, other: [s.data[:-1]], "the stream without its last byte"),
    "empty": (lambda s, other: [], "nothing written"),
    "header-damaged": (_flip_header, "the stream with its first 8 bytes inverted"),
    "bytes-appended": (lambda s, other: [s.data, APPENDED], "the stream, then 64 more bytes in a second write()"),
    "second-copy-appended": (lambda s, other: [s.data, s.data], "the stream, then a second copy of it"),
    "payload-bit-flipped": (_flip_payload, "the stream with one bit flipped in its middle (information only)"),
}
INFO_ONLY = frozenset({"payload-bit-flipped"})
CARELESS = ("incompatible", "header-damaged", "bytes-appended")
COMBINED = ("cut-in-middle", "header-damaged", "second-copy-appended")
PRIOR_SESSIONS = (0, 1, 2)  # resume sessions that loaded before the invalid one, in the same open


@dataclass(frozen=True)
class ResumeCase:
    flags: int
    source: str  # "stop_copy" or "pre_copy": how the stream was saved
    kind: str = ""
    careless: bool = False  # the writer ignores write() errors and goes on
    target: State = S.STOP  # STOP, or RUNNING for a combination request through STOP
    prior: int = 0  # successful resume sessions of the same open before this one

    @property
    def id(self) -> str:
        parts = [feature_set_id(self.flags), f"saved_{self.source}"]
        if self.kind:
            parts.append(self.kind)
        if self.careless:
            parts.append("careless")
        parts.append(f"to-{self.target.name}")
        if self.prior:
            parts.append(f"session{self.prior + 1}")
        return "-".join(parts)

    def describe(self) -> str:
        what = KINDS[self.kind][1] if self.kind else "the complete stream"
        writer = "; a careless writer goes on after refused write() calls" if self.careless else ""
        nth = f", as resume session {self.prior + 1} of the open after {self.prior} that loaded" if self.prior else ""
        return f"{what} (saved via {self.source}), then RESUMING -> {self.target.name}{writer}{nth}"


def invalid_cases(flag_sets: list[int]) -> list[ResumeCase]:
    cases = []
    for f in flag_sets:
        for source in sources_for(f):
            for kind in KINDS:
                if kind == "cut-at-precopy-end" and source != "pre_copy":
                    continue
                if kind == "empty" and source != "stop_copy":
                    continue  # nothing written: how it was saved does not matter
                # every check that holds for a session holds for every session of one open: the same
                # kinds again as the second and third resume session, after sessions that loaded
                cases += [ResumeCase(f, source, kind, prior=n) for n in PRIOR_SESSIONS]
        cases += [ResumeCase(f, "stop_copy", k, careless=True) for k in CARELESS]
        cases += [ResumeCase(f, "stop_copy", k, target=S.RUNNING) for k in COMBINED]
    return cases


def compatible_cases(flag_sets: list[int], targets: tuple[State, ...]) -> list[ResumeCase]:
    return [ResumeCase(f, source, target=t) for f in flag_sets for source in sources_for(f) for t in targets]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrized as ``arc``: the plugin takes the feature set of a test so parametrized from
    # ``arc.flags`` instead of crossing every case with every feature set. Tests use ``case``.
    if "arc" not in metafunc.fixturenames:
        return
    sets = backend_of(metafunc.config).feature_sets()
    name = metafunc.function.__name__
    if name == "test_invalid_stream_refused":
        cases = invalid_cases(sets)
    elif name == "test_compatible_resume":
        cases = compatible_cases(sets, (S.STOP, S.RUNNING))
    else:
        cases = compatible_cases(sets, (S.STOP,))
    metafunc.parametrize("arc", cases, ids=[c.id for c in cases])


@pytest.fixture
def case(arc: ResumeCase) -> ResumeCase:
    return arc


def _record(request: pytest.FixtureRequest, att: Attempt) -> None:
    """Where a failure surfaced, for the reports: ``write:EINVAL``, ``final-load:EINVAL`` or ``none``."""
    request.node.user_properties.append(("surfaced", att.surfaced))


def _recover(dut: MigrationDevice, flags: int, verdict: Verdict, session: Session, saved: Saved,
             att: Attempt, context: str) -> None:
    """After a refused load: a state the path allows, a reset to RUNNING, a dead old fd, a fresh valid resume."""
    check_refused_state(verdict, flags, att, context)
    reset_out_of(dut, verdict, f"{context}: aborting the refused session")
    check_dead(verdict, "RESET.DEAD_FDS", Live("resuming", att.stream), f"{context}: after the reset")
    session.close_all()
    fresh = attempt(dut, flags, verdict, session, [saved.data])
    check_resumed(verdict, dut, fresh, saved, f"{context}: a fresh resume of the valid stream after the reset",
                  f"{context}: after the fresh resume")


def _resume_and_run(dev: MigrationDevice, case: ResumeCase, verdict: Verdict, session: Session, saved: Saved,
                    request: pytest.FixtureRequest, context: str, after: str) -> None:
    """A compatible resume loads and restores the saved state (RESUME.COMPATIBLE, STREAM.ROUND_TRIP); the
    resumed device then runs. ``after``: the context of the state comparison."""
    att = attempt(dev, case.flags, verdict, session, [saved.data], case.target)
    _record(request, att)
    check_resumed(verdict, dev, att, saved, context, after)
    session.close_all()
    walk(dev, case.flags, verdict, session, S.RUNNING, "the resumed device runs")


@pytest.mark.rule("RESUME.FINAL_LOAD", "RESUME.FINAL_CHECK", "RESUME.COMPATIBLE", "ARC.FAILED_STATE",
                  "RESET.ABORT_RESUMING", "RESET.DEAD_FDS")
def test_invalid_stream_refused(case: ResumeCase, dut: MigrationDevice, verdict: Verdict, session: Session,
                                request: pytest.FixtureRequest) -> None:
    """An invalid stream (or what write() took of it) is refused at the final load at the latest; the
    device then recovers by reset and takes a valid stream."""
    flags = case.flags
    saved = save_source(dut, flags, verdict, session, case.source, seed=11)
    other = b""
    if case.kind == "incompatible":
        stranger: MigrationDevice = request.getfixturevalue("incompatible")
        own = Session()
        try:
            other = save_source(stranger, flags, verdict, own, case.source, seed=13).data
        finally:
            own.close_all()
    for n in range(1, case.prior + 1):
        ok = attempt(dut, flags, verdict, session, [saved.data])
        check_resumed(verdict, dut, ok, saved, f"resume session {n} of this open (the complete stream)",
                      f"after resume session {n} of this open")
        session.close_all()
    chunks = KINDS[case.kind][0](saved, other)
    if case.careless:
        chunks = careless_chunks(chunks)
    att = attempt(dut, flags, verdict, session, chunks, case.target, careless=case.careless)
    _record(request, att)
    context = f"resuming {case.describe()}"
    if bytes(att.accepted) == saved.data:
        # write() refused what went beyond the stream and took exactly the stream: it must load.
        check_loaded(verdict, att, f"{context}; the bytes taken are exactly the saved stream", refusals_ok=True)
        return
    if case.kind in INFO_ONLY:
        request.node.user_properties.append(
            ("payload-flip", f"detected: {att.surfaced}" if att.surfaced != "none" else "not detected: it loaded"))
        if att.loaded:
            return
    else:
        short = f"the {len(att.accepted)} bytes taken are not the {len(saved.data)}-byte stream saved from a " \
                "compatible device"
        check_load_refused(verdict, att.loaded, bool(att.refusals), short, att.describe(), context)
    if att.loaded:
        return  # (a should finding above): the device took the data; there is no refused load to recover from
    _recover(dut, flags, verdict, session, saved, att, context)


@pytest.mark.rule("RESUME.FINAL_LOAD", "RESUME.FINAL_CHECK", "RESUME.COMPATIBLE", "RESET.ABORT_RESUMING")
def test_second_session(flags: int, dut: MigrationDevice, verdict: Verdict, session: Session,
                        request: pytest.FixtureRequest) -> None:
    """Validation is per session: in one open, valid, invalid, (reset), valid, valid, invalid."""
    saved = save_source(dut, flags, verdict, session, "stop_copy", seed=21)
    half = [saved.data[:len(saved.data) // 2]]
    surfaced = []
    for n, valid in enumerate((True, False, True, True, False), start=1):
        att = attempt(dut, flags, verdict, session, [saved.data] if valid else half)
        context = f"resume session {n} of this open ({'the complete stream' if valid else 'its first half'})"
        if valid:
            check_resumed(verdict, dut, att, saved, context, context)
        else:
            surfaced.append(f"session {n}: {att.surfaced}")
            check_load_refused(verdict, att.loaded, bool(att.refusals), "half a stream", att.describe(), context)
            reset_out_of(dut, verdict, f"{context}: aborting the refused session")
        session.close_all()
    request.node.user_properties.append(("surfaced", "; ".join(surfaced)))


@pytest.mark.rule("RESUME.COMPATIBLE", "STREAM.ROUND_TRIP")
def test_compatible_resume(case: ResumeCase, dut: MigrationDevice, verdict: Verdict, session: Session,
                           request: pytest.FixtureRequest) -> None:
    """The device's own stream, saved with or without PRE_COPY, loads after the device moved on, and
    restores the saved state; RESUMING -> RUNNING in one request loads too."""
    flags = case.flags
    saved = save_source(dut, flags, verdict, session, case.source, seed=31)
    walk(dut, flags, verdict, session, S.RUNNING, "the source runs on after saving")
    if isinstance(dut, DeviceProfile):
        dut.dirty(33)
    _resume_and_run(dut, case, verdict, session, saved, request,
                    f"resuming {case.describe()} on the device that saved it", f"after resuming {case.describe()}")


@pytest.mark.rule("RESUME.COMPATIBLE", "STREAM.ROUND_TRIP")
def test_compatible_resume_on_peer(case: ResumeCase, dut: MigrationDevice, peer: MigrationDevice,
                                   verdict: Verdict, session: Session, request: pytest.FixtureRequest) -> None:
    """A stream saved on the device under test loads on a compatible second device, which then holds
    the source's state."""
    saved = save_source(dut, case.flags, verdict, session, case.source, seed=41)
    own = Session()
    try:
        _resume_and_run(peer, case, verdict, own, saved, request, f"resuming {case.describe()} on a compatible device",
                        f"after resuming {case.describe()} on a compatible device")
    finally:
        own.close_all()
