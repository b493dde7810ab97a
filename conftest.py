"""vfio-mig-cts: the conformance plugin is loaded for every run from this directory (fixtures/plugins.py)."""

pytest_plugins = ["fixtures.plugins"]
