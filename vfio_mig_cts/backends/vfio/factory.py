"""``--backend vfio``: ``create_backend(options)`` builds the real-kernel backend.

``options.extra`` may relocate what the backend reads (``sysfs_root``, ``dev_root``, ``lock_dir``,
``kmsg``, ``tainted``, ``proc_version``); see ``backend.Environment``.
"""

from __future__ import annotations

from vfio_mig_cts.backends.loader import BackendOptions
from vfio_mig_cts.backends.vfio.backend import Environment, VfioBackend


def create_backend(options: BackendOptions) -> VfioBackend:
    return VfioBackend(options, Environment.from_extra(options.extra))
