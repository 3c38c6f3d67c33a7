from __future__ import annotations

from datetime import date

import pytest

from backburner.jobs.sample_data import get_user_transactions, period_range


def test_same_user_and_period_give_the_same_transactions() -> None:
    assert get_user_transactions("u1", "2026-10") == get_user_transactions("u1", "2026-10")
    assert get_user_transactions("u1", "2026-10") != get_user_transactions("u2", "2026-10")


@pytest.mark.parametrize(
    ("period", "first", "last"),
    [
        ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
        ("2024-Q1", date(2024, 1, 1), date(2024, 3, 31)),
        ("2025", date(2025, 1, 1), date(2025, 12, 31)),
    ],
)
def test_periods(period: str, first: date, last: date) -> None:
    assert period_range(period) == (first, last)
    dates = [t["date"] for t in get_user_transactions("u", period)["transactions"]]
    assert all(first.isoformat() <= d <= last.isoformat() for d in dates)


def test_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="YYYY"):
        period_range("2026-13")
