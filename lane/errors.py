"""Why the lane itself could not run: each reason has its own exit code, distinct from test verdicts."""

from __future__ import annotations

import enum


class LaneFailure(enum.IntEnum):
    """Exit codes of the lane when it could not run the suite.

    Bad input is 4, pytest's usage error, as for every entry point of the project (the suite's own
    bad input, from arguments after ``--``, is 4 too); the lane's other reasons start at 21, apart from
    the suite's verdicts (0-5) and the coverage shortfall (28).
    """

    USAGE = 4
    NO_TOOL = 21
    NO_SOURCE = 22
    BUILD_FAILED = 23
    BOOT_FAILED = 24
    GUEST_SETUP = 25  # the guest booted but could not set up the devices or run the suite
    NO_MTTY = 26  # the guest kernel has no mtty parent (or type): wrong kernel or config
    GUEST_LOST = 27  # the guest booted but ended without a result: timeout, hang, or crash


class LaneError(Exception):
    """The lane could not run; ``code`` says why, ``str()`` says what to do in one line."""

    def __init__(self, code: LaneFailure, message: str) -> None:
        super().__init__(message)
        self.code = code
