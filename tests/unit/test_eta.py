"""ETA arithmetic: pure functions of history, queue and capacity."""

from __future__ import annotations

from backburner.jobs.eta import (
    estimate_completion_seconds,
    estimate_remaining_seconds,
    typical_run_seconds,
)
from backburner.store import TypeHistory


def test_without_history_the_declared_duration_is_used() -> None:
    assert estimate_completion_seconds(TypeHistory([], 0, 4), 30.0) == 30.0


def test_history_median_beats_declared_duration() -> None:
    history = TypeHistory([10.0, 12.0, 100.0], 0, 4)
    assert typical_run_seconds(history, 30.0) == 12.0
    assert estimate_completion_seconds(history, 30.0) == 12.0


def test_jobs_ahead_drain_in_waves_of_capacity() -> None:
    # 8 jobs ahead on 4 slots: two waves of 10 s before ours runs its 10 s.
    assert estimate_completion_seconds(TypeHistory([10.0], 8, 4), 30.0) == 30.0


def test_zero_capacity_is_treated_as_one() -> None:
    assert estimate_completion_seconds(TypeHistory([5.0], 2, 0), 30.0) == 15.0


def test_running_job_with_progress_extrapolates_its_rate() -> None:
    # 40% done after 20 s: 30 s to go.
    assert estimate_remaining_seconds(TypeHistory([], 0, 1), 99, elapsed=20, progress=0.4) == 30


def test_running_job_without_progress_uses_typical_time_left() -> None:
    history = TypeHistory([60.0])
    assert estimate_remaining_seconds(history, 10, elapsed=45, progress=0.0) == 15.0
    assert estimate_remaining_seconds(history, 10, elapsed=90, progress=0.0) == 0.0
