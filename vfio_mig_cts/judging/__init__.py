"""Judging and driving: verdicts, the one place each rule is judged, and the helpers that drive a device."""
