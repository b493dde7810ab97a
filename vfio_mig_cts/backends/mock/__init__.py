"""The embedded mock backend: the kernel core plus a correct migration driver, in process.

It does not import ``vfio_mig_cts.spec.model``: its path walk is derived independently (a shortest-path
search over the arcs the header defines), so the reference model and the mock can disagree and the
suite's own tests notice.
"""
