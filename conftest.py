"""vfio-mig-cts: the conformance plugin is loaded for every run from this directory."""

pytest_plugins = ["fixtures.plugin", "fixtures.reporting", "fixtures.health", "fixtures.killmatrix",
                  "fixtures.labconfig", "fixtures.matrix", "fixtures.ktap", "fixtures.environment",
                  "fixtures.stateful_options"]
