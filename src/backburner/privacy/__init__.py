"""Privacy: field encryption at rest (`sealing`)."""
