"""vfio-mig-cts: the conformance plugin is loaded for every run from this directory."""

pytest_plugins = ["fixtures.plugin", "fixtures.hazards", "fixtures.outcomes", "fixtures.results", "fixtures.killmatrix",
                  "fixtures.labconfig", "fixtures.stateful_options"]
