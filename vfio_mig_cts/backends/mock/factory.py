"""The mock's factory for ``--backend mock``: ``--fault`` decides its quirks, ``--personality`` its driver."""

from __future__ import annotations

from vfio_mig_cts.backends.loader import BackendError, BackendOptions
from vfio_mig_cts.backends.mock.backend import MockBackend
from vfio_mig_cts.backends.mock.personalities import lookup
from vfio_mig_cts.backends.mock.personalities.base import PersonalityBackend
from vfio_mig_cts.backends.protocol import DEFAULT_PROFILE


def create_backend(options: BackendOptions) -> MockBackend:
    from vfio_mig_cts.faults.catalogue import CATALOGUE

    if options.fault and options.personality:
        raise BackendError("--fault and --personality both change the mock: give one of them")
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
        return MockBackend(quirks=quirks, profile=profile)
    except KeyError as exc:
        raise BackendError(str(exc.args[0])) from exc
    except ValueError as exc:
        raise BackendError(str(exc)) from exc
