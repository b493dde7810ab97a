"""Mutation testing of the reference mock (docs/mutation.md): ``python -m mutation``."""
