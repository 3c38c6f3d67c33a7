"""Prices, costs and completion windows: plain functions."""

from __future__ import annotations

import pytest

from backburner.providers.base import Usage
from backburner.providers.pricing import (
    ModelPrice,
    choose_completion_window,
    cost_of,
    estimated_tokens,
    price_for,
    price_table,
)

DISCOUNTS = {"2h": 0.30, "8h": 0.40}
HOUR = 3600.0


def test_prices_are_found_by_model_snapshot_family_and_tier() -> None:
    table = price_table({"gpt-4.1-mini@flex": {"input": 0.2, "output": 0.8}})
    assert price_for(table, "gpt-4.1-mini", None) == table["gpt-4.1-mini"]
    assert price_for(table, "gpt-4.1-mini", "default") == table["gpt-4.1-mini"]
    # A dated snapshot takes its family's price, the longest matching name winning.
    assert price_for(table, "gpt-4.1-mini-2025-04-14", None) == table["gpt-4.1-mini"]
    assert price_for(table, "gpt-4.1-2025-04-14", None) == table["gpt-4.1"]
    assert price_for(table, "gpt-4.1-mini", "flex") == ModelPrice(input=0.2, output=0.8)
    # No guessing: an unknown model or an unpriced tier has no price.
    assert price_for(table, "backburner-offline", None) is None
    assert price_for(table, "gpt-4.1", "priority") is None


def test_flex_is_priced_at_batch_rates_unless_the_table_says_otherwise() -> None:
    table = price_table({})
    standard = table["gpt-4.1"]
    flex = price_for(table, "gpt-4.1", "flex")
    assert flex == ModelPrice(
        input=standard.input / 2, cached_input=standard.cached_input / 2, output=standard.output / 2
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    cost = cost_of(usage, flex, "soonest", DISCOUNTS, standard=standard)
    assert cost.usd == pytest.approx(5.0)  # (2 + 8) / 2
    assert cost.list_usd == pytest.approx(10.0)  # what standard processing costs
    assert cost.saved_usd == pytest.approx(5.0)
    # A dated snapshot's flex price comes from its family; an unknown model has none.
    assert price_for(table, "gpt-4.1-2025-04-14", "flex") == flex
    assert price_for(table, "backburner-offline", "flex") is None


def test_configured_prices_override_the_built_in_ones() -> None:
    table = price_table({"gpt-4.1-mini": {"input": 1.0, "output": 2.0}})
    assert table["gpt-4.1-mini"] == ModelPrice(input=1.0, output=2.0)
    assert "gpt-4o" in table


def test_cost_counts_cached_input_at_its_rate_and_discounts_by_window() -> None:
    price = ModelPrice(input=2.0, cached_input=0.5, output=8.0)
    usage = Usage(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=500_000)
    standard = cost_of(usage, price, "soonest", DISCOUNTS)
    # 600k fresh input at $2/M + 400k cached at $0.5/M + 500k output at $8/M.
    assert standard.usd == pytest.approx(1.2 + 0.2 + 4.0)
    assert standard.saved_usd == 0
    two_hours = cost_of(usage, price, "2h", DISCOUNTS)
    eight_hours = cost_of(usage, price, "8h", DISCOUNTS)
    assert two_hours.list_usd == pytest.approx(standard.usd)
    assert two_hours.usd == pytest.approx(standard.usd * 0.7)
    assert eight_hours.usd == pytest.approx(standard.usd * 0.6)
    assert eight_hours.saved_usd == pytest.approx(standard.usd * 0.4)


def test_cost_without_a_cached_rate_bills_cached_tokens_as_input() -> None:
    price = ModelPrice(input=1.0, output=1.0)
    cost = cost_of(Usage(input_tokens=100, cached_tokens=100), price, None, DISCOUNTS)
    assert cost.usd == pytest.approx(100 / 1_000_000)


@pytest.mark.parametrize(
    ("seconds_left", "sequential", "window"),
    [
        (None, 1, "soonest"),
        (-5.0, 1, "soonest"),
        (1.9 * HOUR, 1, "soonest"),
        (2 * HOUR, 1, "2h"),
        (7.9 * HOUR, 1, "2h"),
        (8 * HOUR, 1, "8h"),
        (48 * HOUR, 1, "8h"),
        # Two calls one after the other share the time: each gets half.
        (10 * HOUR, 2, "2h"),
        (16 * HOUR, 2, "8h"),
        (3 * HOUR, 2, "soonest"),
    ],
)
def test_the_cheapest_window_that_meets_the_deadline(
    seconds_left: float | None, sequential: int, window: str
) -> None:
    assert choose_completion_window(seconds_left, sequential) == window


def test_windows_can_be_switched_off() -> None:
    assert choose_completion_window(48 * HOUR, 1, allowed=frozenset({"2h"})) == "2h"
    assert choose_completion_window(48 * HOUR, 1, allowed=frozenset()) == "soonest"


def test_token_estimates_count_text_and_the_output_allowance() -> None:
    assert estimated_tokens(4_000, 500) == 1_000 + 1 + 500
    assert estimated_tokens(0, None) == 1 + 1_000
