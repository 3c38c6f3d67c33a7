"""What model calls cost, and which completion window a deadline allows. Plain functions.

Prices are USD per million tokens, from the configurable price table
(`BACKBURNER_PRICES`). Cached input tokens are part of `input_tokens` and billed at the
cached rate; reasoning tokens are part of `output_tokens`. OpenAI prices background
responses in the `2h` window 30% and in the `8h` window 40% below standard; both
discounts are settings too (`BACKBURNER_WINDOW_DISCOUNTS`), so a changed contract is a
configuration change, not a release. Flex processing is priced at Batch API rates, half
the standard price, unless the table has a `model@flex` entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from backburner.providers.base import Usage

CompletionWindow = Literal["soonest", "2h", "8h"]
WINDOW_SECONDS: dict[CompletionWindow, float] = {"2h": 2 * 3600.0, "8h": 8 * 3600.0}
STANDARD_TIERS = frozenset({None, "auto", "default"})
# Flex processing is billed at Batch API rates: half the standard price.
FLEX_SHARE = 0.5


class ModelPrice(BaseModel):
    """USD per million tokens for one model (or `model@service_tier`)."""

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)


# Standard list prices, USD per 1M tokens, as OpenAI published them; check yours.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4.1": ModelPrice(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": ModelPrice(input=0.10, cached_input=0.025, output=0.40),
    "gpt-4o": ModelPrice(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.60),
}


def price_table(overrides: Mapping[str, Mapping[str, float]]) -> dict[str, ModelPrice]:
    """The built-in prices with the configured ones laid over them."""
    return {**DEFAULT_PRICES, **{m: ModelPrice(**p) for m, p in overrides.items()}}


@dataclass(frozen=True)
class CallCost:
    """A call's cost at the price paid, and at the standard price (what it would have cost
    without a discounted window): the difference is what the deadline saved."""

    usd: float
    list_usd: float

    @property
    def saved_usd(self) -> float:
        return self.list_usd - self.usd


def price_for(
    prices: Mapping[str, ModelPrice], model: str, service_tier: str | None
) -> ModelPrice | None:
    """The price of `model` on `service_tier`: an exact `model@tier` entry, else the model's
    standard price for standard tiers, else the entry of the model's family for a dated
    snapshot (`gpt-4.1-mini-2025-04-14` → `gpt-4.1-mini`); on `flex` without an entry of its
    own, the standard price at Batch API rates. None if the table has no price."""
    if service_tier not in STANDARD_TIERS:
        exact = prices.get(f"{model}@{service_tier}")
        if exact is not None or service_tier != "flex":
            return exact
        standard = price_for(prices, model, None)
        if standard is None:
            return None
        return ModelPrice(
            input=standard.input * FLEX_SHARE,
            cached_input=None
            if standard.cached_input is None
            else standard.cached_input * FLEX_SHARE,
            output=standard.output * FLEX_SHARE,
        )
    if model in prices:
        return prices[model]
    family = max((name for name in prices if model.startswith(f"{name}-")), key=len, default=None)
    return prices[family] if family is not None else None


def _usd(usage: Usage, price: ModelPrice) -> float:
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return (
        (usage.input_tokens - cached) * price.input
        + cached * cached_rate
        + usage.output_tokens * price.output
    ) / 1_000_000


def cost_of(
    usage: Usage,
    price: ModelPrice,
    window: str | None,
    discounts: Mapping[str, float],
    *,
    standard: ModelPrice | None = None,
) -> CallCost:
    """What `usage` cost at `price` in `window`, and at the `standard` price (a flex
    call's list price is the standard one; by default, `price` itself)."""
    discount = discounts.get(window or "soonest", 0.0)
    paid = _usd(usage, price) * (1 - discount)
    return CallCost(usd=paid, list_usd=_usd(usage, standard or price))


def choose_completion_window(
    seconds_left: float | None,
    sequential_calls: int,
    *,
    allowed: frozenset[str] = frozenset(WINDOW_SECONDS),
) -> CompletionWindow:
    """The cheapest window that still meets the deadline: each of the calls still to come
    one after another gets an equal share of the time left; a window whose longest wait
    fits that share is safe. No deadline, or not enough time: `soonest`."""
    if seconds_left is None or seconds_left <= 0:
        return "soonest"
    share = seconds_left / max(1, sequential_calls)
    fitting = [
        (seconds, window)
        for window, seconds in WINDOW_SECONDS.items()
        if window in allowed and seconds <= share
    ]
    return max(fitting)[1] if fitting else "soonest"


def estimated_tokens(text_chars: int, max_output_tokens: int | None) -> int:
    """Tokens a request will count against a tokens-per-minute limit before we know its
    usage: about four characters a token in, and the output it may produce (as OpenAI's
    limiter counts `max_output_tokens`), or a modest default when it sets none."""
    return text_chars // 4 + 1 + (max_output_tokens or 1_000)
