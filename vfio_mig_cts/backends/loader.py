"""``--backend``: the embedded mock, the real kernel (``vfio``), or a third party by import path."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from vfio_mig_cts.backends.protocol import Backend


class BackendError(Exception):
    """The backend cannot be loaded or set up; a usage error (exit 4) with a one-line reason."""


@dataclass(frozen=True)
class BackendOptions:
    """What the command line says to the backend. Third-party factories receive it too."""

    kernel_profile: str | None = None
    devices: tuple[str, ...] = ()
    peer: str | None = None
    incompatible: str | None = None
    open_path: str = "auto"
    ioctl_timeout: float = 10.0
    fault: str | None = None
    personality: str | None = None  # with the mock: an upstream driver's model (mock/personalities/)
    extra: dict[str, Any] = field(default_factory=dict)


BUILTIN = {
    "mock": "vfio_mig_cts.backends.mock.factory:create_backend",
    "vfio": "vfio_mig_cts.backends.vfio.factory:create_backend",
}


def _what(exc: BaseException) -> str:
    """An exception as one short phrase (a ``sys.exit`` inside a module or factory says so)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def load_backend(spec: str, options: BackendOptions) -> Backend:
    """Resolve ``spec`` (``mock``, ``vfio`` or ``package.module:factory``) and call the factory.

    Whatever goes wrong in a third-party module (an import error, a syntax error, an exception or a
    ``sys.exit`` at import or in its factory) is a ``BackendError``: one line, exit 4.
    """
    target = BUILTIN.get(spec, spec)
    if ":" not in target:
        raise BackendError(f"unknown backend {spec!r}: use mock, vfio, or package.module:factory")
    mod_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise BackendError(f"backend {spec!r}: cannot import {mod_name}: {exc}") from exc
    except SyntaxError as exc:
        raise BackendError(f"backend {spec!r}: cannot import {mod_name}: {exc.msg} ({exc.filename}, line "
                           f"{exc.lineno}): fix the module") from exc
    except (Exception, SystemExit) as exc:
        raise BackendError(f"backend {spec!r}: importing {mod_name} failed: {_what(exc)}: fix the module "
                           "(see docs/backends.md)") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BackendError(f"backend {spec!r}: {mod_name} has no callable {attr!r}")
    try:
        backend = factory(options)
    except BackendError:
        raise
    except (Exception, SystemExit) as exc:
        raise BackendError(f"backend {spec!r} failed to start: {_what(exc)}") from exc
    for needed in ("feature_sets", "open", "kernel_profile", "close"):
        if not callable(getattr(backend, needed, None)):
            raise BackendError(f"backend {spec!r}: the object its factory returned has no {needed}() "
                               "(see docs/backends.md)")
    return backend  # type: ignore[no-any-return]
