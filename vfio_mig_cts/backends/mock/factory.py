"""The mock's factory for ``--backend mock``: ``--fault`` decides its quirks, ``--personality`` its driver.

``BackendOptions.extra["quirks"]``, a mapping of quirk names to values (vfio_mig_cts/backends/mock/quirks.py),
changes knobs of the plain mock on top of the fault's: how a stateful reproducer
(vfio_mig_cts/exploration/reproducer.py) gets a mock that no catalogue entry names.
"""

from __future__ import annotations

from vfio_mig_cts.backends.loader import BackendError, BackendOptions
from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.mock.personalities import lookup
from vfio_mig_cts.backends.mock.personalities.base import PersonalityBackend
from vfio_mig_cts.backends.mock.quirks import with_changes
from vfio_mig_cts.backends.protocol import DEFAULT_PROFILE
from vfio_mig_cts.faults.catalogue import CATALOGUE


def create_backend(options: BackendOptions) -> MockBackend:

    if options.fault and options.personality:
        raise BackendError("--fault and --personality both change the mock: give one of them")
    changes = dict(options.extra.get("quirks") or {})
    if changes and options.personality:
        raise BackendError("quirks change the plain mock, not a personality: give one of them")
    profile = options.kernel_profile or DEFAULT_PROFILE
    try:
        if options.personality:
            return PersonalityBackend(lookup(options.personality), profile=profile)
        quirks = None
        if options.fault:
            if options.fault not in CATALOGUE:
                raise BackendError(f"unknown fault {options.fault!r}; "
                                   "list them with: python -m vfio_mig_cts.faults.catalogue")
            quirks = CATALOGUE[options.fault].quirks()
        if changes:
            quirks = with_changes(changes, quirks)
        return MockBackend(quirks=quirks, profile=profile)
    except KeyError as exc:
        raise BackendError(str(exc.args[0])) from exc
    except ValueError as exc:
        raise BackendError(str(exc)) from exc
