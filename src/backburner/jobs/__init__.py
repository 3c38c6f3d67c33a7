"""Job types: the registry, the context handlers see, and the built-in types."""

from backburner.jobs.context import JobContext
from backburner.jobs.registry import (
    JobRegistry,
    JobType,
    RetryPolicy,
    build_registry,
)

__all__ = [
    "JobContext",
    "JobRegistry",
    "JobType",
    "RetryPolicy",
    "build_registry",
]
