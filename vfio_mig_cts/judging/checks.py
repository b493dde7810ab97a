"""Check helpers: one observation judged against the registry, as the suites judge it.

Each function takes what a test observed and records it on a ``Verdict`` under the same rule, with
the same expectation, as the fixed suites do (test_arcs, test_precopy, test_streams, test_resume). The
resume suites' own helpers (judging/resume_cases.py: ``reset_out_of``, ``check_dead``) are shared the
same way.
The stateful explorer (vfio_mig_cts/exploration/stateful.py) and the race suite call these instead of re-implementing
the judgement, so a device that breaks a rule is blamed for the same rule whichever test finds it;
the suites can move onto them one by one (each function names the test it was taken from).
"""

from __future__ import annotations

import errno

from vfio_mig_cts.backends.protocol import DataStream, PrecopyInfo, precopy_info
from vfio_mig_cts.judging.driving import LoadResult
from vfio_mig_cts.judging.verdict import Verdict, errno_name
from vfio_mig_cts.spec import model
from vfio_mig_cts.uapi.vfio import State, state_name

# --- SET / GET (suites/test_arcs.py) ---------------------------------------------------------------

def refusal_rule(flags: int, frm: int, to: int) -> str:
    """Which rule a refused request falls under: the first that applies (the arc suite, the stateful machine).

    ERROR as the target is ARC.ERROR_TARGET from every state, ERROR included ("ERROR cannot be specified as
    a device state", vfio.h:1171); any other request from ERROR is ARC.ERROR_EXIT (only a reset leaves it).
    """
    if to == State.ERROR:
        return "ARC.ERROR_TARGET"
    if frm == State.ERROR:
        return "ARC.ERROR_EXIT"
    if to >= len(State):
        return "ARC.OUT_OF_RANGE"
    if not model.supports(flags, to):
        return "ARC.UNSUPPORTED"
    return "ARC.BLOCKED"


def refused(flags: int, frm: int, to: int) -> bool:
    """Whether a correct driver refuses SET ``to`` from ``frm``: no path, or ERROR as the target."""
    return to == State.ERROR or not model.plan(flags, State(frm), to).ok


def judge_set(verdict: Verdict, flags: int, frm: State, to: int, err: int, got_fd: bool, after: int,
              context: str = "", trace: list[tuple[State, State]] | None = None) -> model.Plan:
    """A SET from ``frm`` to ``to`` against the model: same state, a legal path, or a refusal (test_arc).

    ``trace`` is what an ``ArcTrace`` backend says the driver executed; None where it cannot tell. Once a
    rule for this request is broken (and the verdict goes on: a warning, or a finding an expectation file
    tolerates), the rules that follow from the same observation are not judged: one deviation, one finding.
    """
    p = model.plan(flags, frm, to)
    path = "refused (ERROR cannot be specified as a device state)" if to == State.ERROR else p.describe()
    request = f"request: SET {frm.name} -> {state_name(to)}\nmodel path: {path}" + (f"\n{context}" if context else "")
    observed = f"{errno_name(err)}, data_fd {'returned' if got_fd else 'none'}, GET reports {state_name(after)}"
    if refused(flags, frm, to):
        judge_refusal(verdict, flags, frm, to, err, got_fd, after, request)
    elif frm == to:
        verdict.check("ARC.SAME_STATE", err == 0 and not got_fd and after == frm,
                      expected=f"success, no data_fd, GET reports {frm.name}", observed=observed, context=request)
    else:
        if not verdict.check("ARC.TRANSITION", err == 0 and after == to,
                             expected=f"success, GET reports {state_name(to)}", observed=observed, context=request):
            return p
        verdict.check("ARC.DATA_FD", got_fd == p.new_fd,
                      expected="a new data_fd" if p.new_fd else "no data_fd (data_fd -1)",
                      observed=observed, context=request)
        if trace is not None:
            check_path(verdict, p, trace, request)
    return p


def judge_refusal(verdict: Verdict, flags: int, frm: State, to: int, err: int, got_fd: bool, after: int,
                  request: str) -> None:
    """A request the header refuses: it fails (the refusal rule, must), with EINVAL outside ERROR
    (ARC.REFUSAL_ERRNO, a convention: the header says "return error"), leaving GET at the original state
    or ERROR (ARC.FAILED_STATE) and returning no data_fd (ARC.DATA_FD)."""
    observed = f"{errno_name(err)}, data_fd {'returned' if got_fd else 'none'}, GET reports {state_name(after)}"
    if not verdict.check(refusal_rule(flags, frm, to), err != 0, expected="the request fails (an errno)",
                         observed=observed, context=request):
        return
    if frm != State.ERROR:
        verdict.check("ARC.REFUSAL_ERRNO", err == errno.EINVAL,
                      expected="EINVAL (the core's vfio_mig_get_next_state())", observed=observed, context=request)
    allowed = {int(frm), int(State.ERROR)}
    if not verdict.check("ARC.FAILED_STATE", after in allowed,
                         expected=f"GET reports {frm.name} (a refused request has no path to walk) or ERROR",
                         observed=observed, context=request):
        return
    verdict.check("ARC.DATA_FD", not got_fd, expected="no data_fd", observed=observed, context=request)


def check_path(verdict: Verdict, p: model.Plan, trace: list[tuple[State, State]], context: str) -> None:
    """The arcs the driver executed against the model's path (used by suites/test_arcs.py and the stateful machine)."""
    seen = " -> ".join([trace[0][0].name, *(b.name for _, b in trace)]) if trace else "no arcs"
    interior = [b for _, b in trace[:-1]]
    starts_and_ends_saving = p.cur in model.SAVING_GROUP and p.new in model.SAVING_GROUP
    bad_interior = [s for s in interior if s in model.SAVING_GROUP] if not starts_and_ends_saving else []
    through = ", ".join(s.name for s in bad_interior)
    verdict.check("ARC.NO_SAVING_INTERIOR", not bad_interior, expected=f"path {p.describe()}",
                  observed=f"path {seen} (through {through})", context=context)
    verdict.check("ARC.SHORTEST_PATH", tuple(trace) == p.arcs,
                  expected=f"path {p.describe()}", observed=f"path {seen}", context=context)


def check_get(verdict: Verdict, want: int, fd: int, again: list[int], context: str = "") -> None:
    """GET returns data_fd -1 and the same state on repeated calls (test_get_reports_no_fd_and_stays)."""
    verdict.check("ARC.GET_FD", fd == -1, expected="data_fd -1", observed=f"data_fd {fd}",
                  context=f"GET in {state_name(want)}" + (f"; {context}" if context else ""))
    verdict.check("ARC.NO_ASYNC", all(s == want for s in again),
                  expected=f"GET reports {state_name(want)} {len(again)} times",
                  observed=f"GET reports {', '.join(state_name(s) for s in again)}",
                  context=f"repeated GET in {state_name(want)}" + (f"; {context}" if context else ""))


# --- VFIO_MIG_GET_PRECOPY_INFO (suites/test_precopy.py) ---------------------------------------------

def precopy_info_or_fail(stream: DataStream, verdict: Verdict, when: str) -> PrecopyInfo:
    """GET_PRECOPY_INFO in a PRE_COPY state, which a PRE_COPY driver must support (info_or_fail)."""
    try:
        return precopy_info(stream)
    except OSError as exc:
        verdict.check("PRECOPY.MANDATORY", False, expected="GET_PRECOPY_INFO succeeds in a PRE_COPY state",
                      observed=f"it failed with {errno_name(exc.errno)}", context=when)
        raise


def check_entry_counters(verdict: Verdict, info: PrecopyInfo, context: str) -> None:
    """On entering PRE_COPY: initial_bytes non-zero, dirty_bytes zero (test_counters_on_entry)."""
    verdict.check("PRECOPY.INITIAL_BYTES", info.initial_bytes > 0, expected="initial_bytes > 0",
                  observed=f"initial_bytes {info.initial_bytes}", context=context)
    verdict.check("PRECOPY.DIRTY_STARTS_ZERO", info.dirty_bytes == 0, expected="dirty_bytes 0",
                  observed=f"dirty_bytes {info.dirty_bytes}", context=context)


def check_initial_not_growing(verdict: Verdict, info: PrecopyInfo, last: PrecopyInfo, context: str) -> None:
    """initial_bytes never grows as data is read (test_initial_bytes_drain)."""
    verdict.check("PRECOPY.INITIAL_BYTES", info.initial_bytes <= last.initial_bytes,
                  expected=f"initial_bytes <= {last.initial_bytes} (it decreases as data is read)",
                  observed=f"initial_bytes {info.initial_bytes}", context=context)


def check_precopy_end(verdict: Verdict, last: PrecopyInfo, err: int, context: str) -> None:
    """A read in PRE_COPY gave no data: only at the temporary end (both counters 0), and there ENOMSG
    rather than 0 (test_initial_bytes_drain). ``last``: the counters right before that read."""
    remaining = last.initial_bytes + last.dirty_bytes
    verdict.check("EOS.PRECOPY_NOT_EARLY", remaining == 0,
                  expected=f"data (the counters said initial_bytes {last.initial_bytes}, "
                           f"dirty_bytes {last.dirty_bytes})",
                  observed=f"read() gave {'0 (end of stream)' if not err else errno_name(err)}", context=context)
    verdict.check("EOS.PRECOPY_ENOMSG", err == errno.ENOMSG,
                  expected="read() fails with ENOMSG at the temporary end of stream",
                  observed="read() returned 0" if not err else f"read() failed with {errno_name(err)}",
                  context=context)


def check_info_outside_precopy(verdict: Verdict, err: int, where: str) -> None:
    """GET_PRECOPY_INFO outside the PRE_COPY states gives EINVAL (test_precopy._expect_einval)."""
    verdict.check("PRECOPY.EINVAL_OUTSIDE", err == errno.EINVAL, expected="EINVAL", observed=errno_name(err),
                  context=f"GET_PRECOPY_INFO {where}")


# --- data fds and streams (suites/test_streams.py, suites/test_resume.py) ---------------------------

def check_stopcopy_read(verdict: Verdict, err: int, data: bytes | None, ended: bool, context: str) -> None:
    """A read() in STOP_COPY: never ENOMSG; after the end, 0 again and again (test_stopcopy_end_of_stream,
    driving.read_all). ``ended``: an earlier read already returned 0."""
    verdict.check("EOS.STOPCOPY_NO_ENOMSG", err != errno.ENOMSG, expected="not ENOMSG", observed=errno_name(err),
                  context=context)
    if ended:
        verdict.check("EOS.STOPCOPY_ZERO", err == 0 and data == b"", expected="read() returns 0",
                      observed=errno_name(err) if err else f"{len(data or b'')} bytes", context=context)
    else:
        verdict.check("EOS.STOPCOPY_ZERO", err == 0, expected="data, then read() returning 0",
                      observed=f"read() failed with {errno_name(err)}", context=context)


def check_saving_group_read(verdict: Verdict, err: int, context: str) -> None:
    """The fd of a session that moved within the saving group reads on (test_saving_group_keeps_one_fd,
    driving.drain_in_group)."""
    verdict.check("FD.SAVING_GROUP", err in (0, errno.ENOMSG), expected="the session's fd reads",
                  observed=errno_name(err), context=context)


def check_direction(verdict: Verdict, err: int, what: str) -> None:
    """A saving fd cannot be written and a resuming fd cannot be read (test_fd_direction)."""
    verdict.check("FD.DIRECTION", err == errno.EBADF, expected="EBADF", observed=errno_name(err), context=what)


def check_no_seek(verdict: Verdict, err: int, what: str) -> None:
    """Data fds are streams: lseek, pread and pwrite give ESPIPE (test_fd_not_seekable)."""
    verdict.check("FD.NO_SEEK", err == errno.ESPIPE, expected="ESPIPE", observed=errno_name(err), context=what)


def check_data_size(verdict: Verdict, err: int, state: int) -> None:
    """GET MIG_DATA_SIZE succeeds in every state (test_data_size_in_every_state)."""
    verdict.check("SIZE.ANY_STATE", err == 0, expected="success", observed=errno_name(err),
                  context=f"GET MIG_DATA_SIZE in {state_name(state)}")


def check_loaded(verdict: Verdict, rule: str, res: LoadResult, what: str = "",
                 expected: str = "the stream loads: writes accepted, RESUMING -> STOP succeeds") -> None:
    """A stream that must load did: writes accepted, RESUMING -> STOP succeeded, under ``rule``
    (test_resume_accepts_any_split, test_round_trip, test_closing_fds_early, test_precopy_is_optional)."""
    verdict.check(rule, res.ok, expected=expected, observed=res.describe(), context=what)


def check_digest(verdict: Verdict, want: bytes, got: bytes, context: str, label: str = "device state digest",
                 rule: str = "STREAM.ROUND_TRIP") -> None:
    """After a resume the device state equals the source's (test_round_trip, test_qemu_sequence; under
    ``rule`` where the stream was read some particular way, test_read_sizes_do_not_change_the_stream)."""
    verdict.check(rule, got == want, expected=f"{label} {want.hex()[:16]}",
                  observed=f"{label} {got.hex()[:16]}", context=context)


# --- resume sessions (suites/test_resume.py) --------------------------------------------------------

def check_load_refused(verdict: Verdict, loaded: bool, found_invalid: bool, why: str, observed: str,
                       context: str) -> None:
    """Leaving RESUMING fails when what write() took is not one complete valid stream from a compatible
    device (test_invalid_stream_refused, test_second_session). ``why``: how the bytes taken fall short.

    Where the driver itself found the data invalid (``found_invalid``: it refused a write()), the load must
    fail (RESUME.FINAL_LOAD, vfio.h:1094); where no write() was refused, the final check that would catch
    it is the header's should (RESUME.FINAL_CHECK, vfio.h:1092).
    """
    if found_invalid:
        verdict.check("RESUME.FINAL_LOAD", not loaded,
                      expected=f"leaving RESUMING fails: a write() of this data was refused ({why})",
                      observed=observed, context=context)
    else:
        verdict.check("RESUME.FINAL_CHECK", not loaded, expected=f"leaving RESUMING fails: {why}",
                      observed=observed, context=context)
