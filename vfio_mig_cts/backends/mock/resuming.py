"""The mock driver's final load, and closing and reopening the device (the resume quirks of issue 5).

A correct driver: the final load (RESUMING -> STOP) takes exactly one complete stream of its own
identity and size; a refused load leaves RESUMING (the session stays open until reset); close ends
every data session; open starts in RUNNING. The quirks bend each of these (vfio_mig_cts/backends/mock/quirks.py).

mtty 6.12.117 (``close_drops_resuming_file``): close in RESUMING releases the resuming file but
leaves the state RESUMING; the next SET out of RESUMING dereferences the NULL file, the task oopses
holding the state mutex and the ioctl never returns. The mock logs the oops and fails that SET with
ETIMEDOUT (what the vfio backend's watchdog reports); unlike the real device, it is not lost: its
reset recovers, so the run goes on.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from vfio_mig_cts.backends.mock.streams import (
    HEADER,
    REC_DATA,
    REC_END,
    RECORD,
    ResumeStream,
    check_header,
    parse,
)
from vfio_mig_cts.uapi.vfio import State

SAVING_STATES = frozenset({State.PRE_COPY, State.PRE_COPY_P2P, State.STOP_COPY})

if TYPE_CHECKING:
    from vfio_mig_cts.backends.mock.driver import MockDriver, ResumingFile

OOPS = (
    "BUG: kernel NULL pointer dereference, address: 0000000000000000",
    "Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "RIP: 0010:mtty_set_state+0x1a5/0x4b0",
    "Call Trace: vfio_ioctl_device_feature_mig_device_state+0x9b/0x1a0",
)


def _err(code: int, text: str = "") -> OSError:
    return OSError(code, text or errno.errorcode.get(code, str(code)))


@dataclass
class ResumeBook:
    """What the driver remembers about loads: per reset, per open, and a dangling RESUMING."""

    loads_since_reset: int = 0  # final loads attempted since the last reset or open
    validated: bool = False  # a final load succeeded in this open
    dangling: bool = False  # closed in RESUMING with the resuming file dropped (mtty's bug)
    dangling_saving: bool = False  # closed in a saving state, the state kept (the reopen_saving_hangs fault)


def salvage(data: bytes) -> tuple[list[tuple[int, bytes]], str]:
    """The complete DATA records after the header, and how the stream ends: "end" (exactly at its END
    record), "trailing" (bytes after END), "short" (runs out before END) or "bad" (a malformed record)."""
    pos = HEADER.size
    records: list[tuple[int, bytes]] = []
    while True:
        if pos + RECORD.size > len(data):
            return records, "short"
        kind, off, length = RECORD.unpack_from(data, pos)
        pos += RECORD.size
        if kind == REC_END:
            return records, "end" if pos == len(data) else "trailing"
        if kind != REC_DATA:
            return records, "bad"
        if pos + length > len(data):
            return records, "short"
        records.append((off, data[pos:pos + length]))
        pos += length


def _lenient(drv: MockDriver, data: bytes) -> list[tuple[int, bytes]] | None:
    """The records a faulty driver takes from a stream a correct one refuses; None: refused too."""
    q, book = drv.q, drv.resume_book
    if q.load_validates_once and book.validated:
        return salvage(data)[0] if len(data) >= HEADER.size else []
    if not data:
        return [] if q.load_accepts_empty else None
    if q.header_hole and len(data) >= HEADER.size and salvage(data)[1] == "end":
        # mtty_load_state(): "magic and version already tested by resume write fn"
        return [(off, chunk) for off, chunk in salvage(data)[0] if off + len(chunk) <= drv.cfg.state_size]
    if len(data) < HEADER.size or check_header(data, drv.cfg.identity, drv.cfg.state_size):
        return None
    records, how = salvage(data)
    records = [(off, chunk) for off, chunk in records if off + len(chunk) <= drv.cfg.state_size]
    if q.load_checks_header_only:
        return records
    if how == "short" and q.load_accepts_truncated:
        return records
    if how == "trailing" and q.load_ignores_trailing:
        return records
    return None


def _overlaps(records: list[tuple[int, bytes]]) -> bool:
    seen: set[int] = set()
    for off, chunk in records:
        span = set(range(off, off + len(chunk)))
        if seen & span:
            return True
        seen |= span
    return False


def resume_file(drv: MockDriver) -> ResumingFile:
    """The resuming file the final load reads; none left is a refusal, or mtty's oops when close dropped it."""
    book = drv.resume_book
    book.loads_since_reset += 1
    if drv.resume is None:
        if book.dangling:
            drv.kernel_log.extend(OOPS)
            raise _err(errno.ETIMEDOUT, "simulated: the task oopsed in mtty_set_state holding the state mutex")
        _refuse(drv, errno.EINVAL)
    return drv.resume


def load(drv: MockDriver) -> None:
    """RESUMING -> STOP: validate what write() took, then apply it (raises OSError to refuse)."""
    q, book = drv.q, drv.resume_book
    resume = resume_file(drv)
    assert isinstance(resume, ResumeStream)
    data = bytes(resume.data)
    if q.second_load_fails and book.loads_since_reset > 1:
        _refuse(drv, errno.EINVAL)
    records, bad = parse(data, drv.cfg.identity, drv.cfg.state_size)
    if bad is not None:
        lenient = _lenient(drv, data)
        if lenient is None:
            _refuse(drv, bad.errno)
        records = lenient or []
    if q.load_rejects_overlap and _overlaps(records):
        _refuse(drv, errno.EINVAL)
    book.validated = True
    if q.load_not_applied:
        return
    for off, chunk in records:
        drv.memory[off:off + len(chunk)] = chunk


def _refuse(drv: MockDriver, code: int) -> NoReturn:
    """Refuse the final load with ``code`` (going to ERROR where the quirk says the driver does)."""
    if drv.q.failed_load_to_error:
        drv.state = State.ERROR
    raise _err(code)


def reset(drv: MockDriver) -> bool:
    """Before VFIO_DEVICE_RESET: False when a faulty driver ignores it; detaches fds it leaves alive."""
    q = drv.q
    if q.reset_ignored_in_resuming and drv.state == State.RESUMING:
        return False
    if q.reset_keeps_fds:
        drv.save = drv.resume = None  # forgotten, not disabled: the user's fds go on working
    drv.resume_book = ResumeBook()
    return True


def leave_dangling_saving(drv: MockDriver) -> None:
    """(reopen_saving_hangs) A SET out of the saving state a closed device kept never returns: the mock
    answers ETIMEDOUT, as the vfio backend's watchdog does."""
    if drv.resume_book.dangling_saving and drv.state in SAVING_STATES:
        raise _err(errno.ETIMEDOUT, "simulated: the SET out of the kept saving state hangs")


def close_device(drv: MockDriver) -> None:
    """The device's last fd is closed (close_device): every data session ends."""
    q = drv.q
    with drv.lock:
        if q.close_drops_resuming_file and drv.state == State.RESUMING:
            drv.resume_book.dangling = True
        if q.reopen_saving_hangs and drv.state in SAVING_STATES:
            drv.resume_book.dangling_saving = True
        if q.close_keeps_fds:
            drv.save = drv.resume = None
        else:
            drv._end_sessions()


def open_device(drv: MockDriver) -> None:
    """The device is opened again (open_device): RUNNING, unless the state survives (mtty)."""
    q = drv.q
    with drv.lock:
        book = drv.resume_book
        drv.resume_book = ResumeBook(dangling=book.dangling, dangling_saving=book.dangling_saving)
        drv.precopy_v2 = False
        if not (q.reopen_keeps_state or book.dangling or book.dangling_saving):
            drv.state = State.RUNNING
        drv.opened()
