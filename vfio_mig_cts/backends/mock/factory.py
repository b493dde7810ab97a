"""The mock's factory for ``--backend mock``: the fault named by ``--fault`` decides its quirks.

``BackendOptions.extra["quirks"]``, a mapping of quirk names to values (vfio_mig_cts/backends/mock/quirks.py),
changes knobs on top of that: how a stateful reproducer (vfio_mig_cts/exploration/reproducer.py) gets a
mock that no catalogue entry names.
"""

from __future__ import annotations

from vfio_mig_cts.backends.loader import BackendError, BackendOptions
from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.mock.quirks import with_changes
from vfio_mig_cts.backends.protocol import DEFAULT_PROFILE


def create_backend(options: BackendOptions) -> MockBackend:
    from vfio_mig_cts.faults.catalogue import CATALOGUE

    quirks = None
    if options.fault:
        if options.fault not in CATALOGUE:
            raise BackendError(f"unknown fault {options.fault!r}; "
                               "list them with: python -m vfio_mig_cts.faults.catalogue")
        quirks = CATALOGUE[options.fault].quirks()
    try:
        changes = dict(options.extra.get("quirks") or {})
        if changes:
            quirks = with_changes(changes, quirks)
        return MockBackend(quirks=quirks, profile=options.kernel_profile or DEFAULT_PROFILE)
    except ValueError as exc:
        raise BackendError(str(exc)) from exc
