"""Estimating when a job will be done: pure functions of its type's history and queue."""

from __future__ import annotations

import statistics

from backburner.store.models import TypeHistory


def typical_run_seconds(history: TypeHistory, expected_duration: float) -> float:
    """The median of recent runs, or the type's declared duration with no history."""
    if history.recent_run_seconds:
        return float(statistics.median(history.recent_run_seconds))
    return expected_duration


def estimate_completion_seconds(history: TypeHistory, expected_duration: float) -> float:
    """Seconds until a pending job should be done: the jobs ahead of it drain through the
    live worker capacity in waves, then it runs for its type's typical time."""
    run = typical_run_seconds(history, expected_duration)
    waves_ahead = history.jobs_ahead / max(1, history.capacity)
    return round(run * (1 + waves_ahead), 3)


def estimate_remaining_seconds(
    history: TypeHistory, expected_duration: float, *, elapsed: float, progress: float
) -> float:
    """Seconds until a running job should be done. With real progress reported, trust the
    rate so far; otherwise the typical run time minus what has elapsed."""
    if progress >= 0.05:
        return round(max(0.0, elapsed * (1 - progress) / progress), 3)
    return round(max(0.0, typical_run_seconds(history, expected_duration) - elapsed), 3)
