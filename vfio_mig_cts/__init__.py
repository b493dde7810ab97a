"""vfio-mig-cts's engine: the uAPI, the spec, the backends, judging, exploration, faults and reports.

The pytest plugin that drives it lives in ``fixtures/``; the lane and mutation tools stay apart.
"""
