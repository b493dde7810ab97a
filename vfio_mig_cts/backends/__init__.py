"""Backends: the protocol every backend implements, the loader, the mock and the real kernel (vfio)."""
