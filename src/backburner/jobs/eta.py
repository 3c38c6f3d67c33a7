"""Estimating when a job will be done: a pure function of its type's history and queue."""

from __future__ import annotations

import statistics

from backburner.store.models import TypeHistory


def estimate_completion_seconds(history: TypeHistory, expected_duration: float) -> float:
    """Seconds until a job just enqueued should be done: its type's typical run time (the
    median of recent runs, or the declared duration with no history) plus the wait for the
    jobs ahead of it to drain through the live worker capacity."""
    run = (
        statistics.median(history.recent_run_seconds)
        if history.recent_run_seconds
        else (expected_duration)
    )
    waves_ahead = history.jobs_ahead / max(1, history.capacity)
    return round(run * (1 + waves_ahead), 3)
