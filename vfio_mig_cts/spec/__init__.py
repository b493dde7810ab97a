"""The spec: the rule registry (one module per rule family), the reference model of the core's path rules."""
