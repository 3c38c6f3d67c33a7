"""ETA arithmetic: pure functions of history, size, queue and capacity."""

from __future__ import annotations

import pytest

from backburner.jobs.eta import (
    Prior,
    estimate_completion_seconds,
    estimate_remaining_seconds,
    fitted_line,
    typical_run_seconds,
)
from backburner.store import TypeHistory


def runs(*seconds: float) -> list[tuple[float, float | None]]:
    return [(s, None) for s in seconds]


def test_without_history_the_prior_is_used_and_scales_with_size() -> None:
    assert estimate_completion_seconds(TypeHistory([], 0, 4), Prior(30.0)) == 30.0
    prior = Prior(30.0, seconds_per_unit=0.0001)
    # 150 documents of 60,000 characters: 30 s + 900 s.
    assert typical_run_seconds(TypeHistory(), prior, 9_000_000) == pytest.approx(930.0)


def test_history_median_beats_the_prior() -> None:
    history = TypeHistory(runs(10.0, 12.0, 100.0), 0, 4)
    assert typical_run_seconds(history, Prior(30.0)) == 12.0
    assert estimate_completion_seconds(history, Prior(30.0)) == 12.0


def test_a_job_is_timed_by_the_line_its_types_runs_draw_against_size() -> None:
    # 2 s fixed and 0.5 s per lead.
    history = TypeHistory([(2 + 0.5 * n, float(n)) for n in (10, 20, 40, 80)])
    assert fitted_line([(s, z) for s, z in history.recent_runs if z]) == pytest.approx((2.0, 0.5))
    assert typical_run_seconds(history, Prior(99.0), 200) == pytest.approx(102.0)
    assert typical_run_seconds(history, Prior(99.0), 1) == pytest.approx(2.5)
    # No size known for this job: the median run.
    assert typical_run_seconds(history, Prior(99.0)) == pytest.approx(17.0)


def test_too_few_or_flat_sized_runs_fall_back_sensibly() -> None:
    two = TypeHistory([(10.0, 100.0), (30.0, 300.0)])
    assert typical_run_seconds(two, Prior(5.0), 1000) == 20.0  # the median: too few to fit
    same_size = TypeHistory([(10.0, 100.0), (12.0, 100.0), (11.0, 100.0)])
    assert typical_run_seconds(same_size, Prior(5.0), 200) == pytest.approx(22.0)
    shrinking = TypeHistory([(30.0, 10.0), (20.0, 20.0), (10.0, 30.0)])
    assert fitted_line([(30.0, 10.0), (20.0, 20.0), (10.0, 30.0)]) is None
    assert typical_run_seconds(shrinking, Prior(5.0), 20) > 0


def test_jobs_ahead_drain_in_waves_of_capacity() -> None:
    # 8 jobs ahead on 4 slots: two waves of 10 s before ours runs its 10 s.
    assert estimate_completion_seconds(TypeHistory(runs(10.0), 8, 4), Prior(30.0)) == 30.0


def test_zero_capacity_is_treated_as_one() -> None:
    assert estimate_completion_seconds(TypeHistory(runs(5.0), 2, 0), Prior(30.0)) == 15.0


def test_running_job_with_progress_extrapolates_its_rate() -> None:
    # 40% done after 20 s: 30 s to go.
    history = TypeHistory([], 0, 1)
    assert estimate_remaining_seconds(history, Prior(99), elapsed=20, progress=0.4) == 30


def test_running_job_without_progress_uses_typical_time_left() -> None:
    history = TypeHistory(runs(60.0))
    assert estimate_remaining_seconds(history, Prior(10), elapsed=45, progress=0.0) == 15.0
    assert estimate_remaining_seconds(history, Prior(10), elapsed=90, progress=0.0) == 0.0
