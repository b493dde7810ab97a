"""Mock backends that behave as the header allows but the reference mock does not: the suite must pass
each of them strictly (a finding here would be a false failure of a correct driver).

Used as ``--backend tests.allowed_variants:NAME`` by tests/test_allowed_variants.py.
"""

from __future__ import annotations

from vfio_mig_cts.backends.loader import BackendOptions
from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.mock.quirks import Quirks
from vfio_mig_cts.backends.protocol import DEFAULT_PROFILE

VARIANTS: dict[str, tuple[Quirks, str]] = {
    # mlx5: GET_PRECOPY_INFO at the end of the data starts an incremental save and already counts it
    # (mlx5/main.c:537-568); read() gives ENOMSG until the save completes (the counters are estimates,
    # vfio.h:1236-1237)
    "late_precopy_data": (Quirks(precopy_data_late_ms=50), "dirty data the counters announce comes 50 ms late"),
    # "optionally go to the ERROR state" (vfio.h:1097)
    "failed_load_to_error": (Quirks(failed_load_to_error=True), "a refused final load leaves ERROR"),
    # mtty keeps its state across close/open; the header says nothing of it
    "reopen_keeps_state": (Quirks(reopen_keeps_state=True), "the state survives a close and reopen"),
}


def _backend(name: str, options: BackendOptions) -> MockBackend:
    return MockBackend(quirks=VARIANTS[name][0], profile=options.kernel_profile or DEFAULT_PROFILE)


def late_precopy_data(options: BackendOptions) -> MockBackend:
    return _backend("late_precopy_data", options)


def failed_load_to_error(options: BackendOptions) -> MockBackend:
    return _backend("failed_load_to_error", options)


def reopen_keeps_state(options: BackendOptions) -> MockBackend:
    return _backend("reopen_keeps_state", options)
