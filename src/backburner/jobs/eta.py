"""Estimating when a job will be done: pure functions of its type's history and queue.

A job's run time is read from its type's recent runs scaled by the size of its input
(a summary's characters, a classification's leads): a straight line, time = fixed + rate *
size, fitted to the runs whose size is known. Without enough of them, the median run; with
no history at all, the type's prior (its expected duration plus its seconds per unit).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from backburner.store.models import TypeHistory

# Runs of known size needed before the fitted line is trusted over the median.
MIN_SIZED_RUNS = 3


@dataclass(frozen=True)
class Prior:
    """What a type is expected to take before it has run: `seconds`, plus
    `seconds_per_unit` for each unit of its input."""

    seconds: float
    seconds_per_unit: float = 0.0

    def for_size(self, size: float | None) -> float:
        return self.seconds + self.seconds_per_unit * (size or 0.0)


def fitted_line(runs: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(fixed seconds, seconds per unit) by least squares, both at least 0; None when the
    sizes do not vary (no slope to read) or time does not grow with size."""
    sizes = [size for _, size in runs]
    mean_size = statistics.fmean(sizes)
    spread = sum((size - mean_size) ** 2 for size in sizes)
    if spread <= 0:
        return None
    mean_seconds = statistics.fmean(seconds for seconds, _ in runs)
    slope = sum((size - mean_size) * (seconds - mean_seconds) for seconds, size in runs) / spread
    if slope <= 0:
        return None
    return max(0.0, mean_seconds - slope * mean_size), slope


def typical_run_seconds(history: TypeHistory, prior: Prior, size: float | None = None) -> float:
    """How long a run of this size should take, from the type's recent runs."""
    sized = [(seconds, z) for seconds, z in history.recent_runs if z is not None and z > 0]
    if size is not None and size > 0 and len(sized) >= MIN_SIZED_RUNS:
        line = fitted_line(sized)
        if line is not None:
            return line[0] + line[1] * size
        # Every run was the same size, or time did not grow with it: scale by the median
        # seconds per unit, which is right at least for runs like the ones seen.
        return float(statistics.median(seconds / z for seconds, z in sized)) * size
    if history.recent_runs:
        return float(statistics.median(history.recent_run_seconds))
    return prior.for_size(size)


def estimate_completion_seconds(
    history: TypeHistory, prior: Prior, size: float | None = None
) -> float:
    """Seconds until a pending job should be done: the jobs ahead of it drain through the
    live worker capacity in waves, then it runs for its typical time."""
    run = typical_run_seconds(history, prior, size)
    waves_ahead = history.jobs_ahead / max(1, history.capacity)
    return round(run * (1 + waves_ahead), 3)


def estimate_remaining_seconds(
    history: TypeHistory,
    prior: Prior,
    *,
    elapsed: float,
    progress: float,
    size: float | None = None,
) -> float:
    """Seconds until a running job should be done. With real progress reported, trust the
    rate so far; otherwise the typical run time minus what has elapsed."""
    if progress >= 0.05:
        return round(max(0.0, elapsed * (1 - progress) / progress), 3)
    return round(max(0.0, typical_run_seconds(history, prior, size) - elapsed), 3)
