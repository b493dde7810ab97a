"""The fault catalogue: faulty mocks as data, and running the suite against each (the kill matrix)."""
