"""Benchmarks of the suite and of its own tests (not tests: speed is measured, never asserted)."""
