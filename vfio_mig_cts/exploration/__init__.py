"""Exploration: stateful random sequences and races."""
