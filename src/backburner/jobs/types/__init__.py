"""The built-in job types, the product's founding use cases."""

from __future__ import annotations

from backburner.jobs.registry import JobRegistry


def register_builtin_types(registry: JobRegistry) -> None:
    from backburner.jobs.types import classify, grade, noop, report, summarize

    for module in (summarize, classify, report, noop, grade):
        module.register(registry)
