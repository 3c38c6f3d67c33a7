"""What stands between a job and a model call: the owner's budget, the shared rate limit,
the completion window its deadline allows; and, after the call, what it cost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from backburner.config import Settings
from backburner.errors import BudgetExhausted
from backburner.providers.base import ModelRequest, Usage
from backburner.providers.pricing import (
    choose_completion_window,
    cost_of,
    estimated_tokens,
    price_for,
    price_table,
)
from backburner.store import Database
from backburner.store import usage as usage_store
from backburner.worker.ratelimit import RateLimiter


@dataclass(frozen=True)
class CallTerms:
    """How a call was placed: what its price depends on."""

    model: str
    completion_window: str | None
    service_tier: str | None


class Spending:
    def __init__(
        self, db: Database, settings: Settings, clock: Callable[[], datetime], provider: str
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._provider = provider
        self._prices = price_table(settings.prices)
        self.limiter = RateLimiter(db, settings.rate_limits, clock)

    async def check_budget(self, owner: str) -> None:
        """Raise BudgetExhausted if the owner's budget for this month is spent."""
        budget = await usage_store.monthly_budget(
            self._db, owner, self._settings.owner_monthly_budget_usd
        )
        if budget is None:
            return
        month = usage_store.month_of(self._clock())
        spent = await usage_store.spent(self._db, owner, month)
        if spent >= budget:
            raise BudgetExhausted(
                f"owner {owner!r} has spent ${spent:.4f} of its ${budget:.2f} budget for "
                f"{month}; no new model calls until the budget is raised or the month ends"
            )

    def placed(
        self, request: ModelRequest, deadline_at: datetime | None, sequential_calls: int
    ) -> ModelRequest:
        """The request with the cheapest completion window its deadline allows, and the
        configured service tier (discounted windows need standard processing)."""
        seconds_left = (
            None if deadline_at is None else (deadline_at - self._clock()).total_seconds()
        )
        window = choose_completion_window(
            seconds_left,
            sequential_calls,
            allowed=frozenset(self._settings.completion_windows),
        )
        tier = self._settings.service_tier if window == "soonest" else None
        return request.model_copy(update={"completion_window": window, "service_tier": tier})

    def estimate(self, request: ModelRequest) -> int:
        return estimated_tokens(request.text_chars(), request.max_output_tokens)

    async def take_rate_budget(
        self, request: ModelRequest, tokens: int, waiting: Callable[[float], Awaitable[None]]
    ) -> None:
        await self.limiter.acquire(self._provider, request.model, tokens, waiting=waiting)

    async def settle(self, model: str, estimated: int, usage: Usage | None) -> None:
        used = 0 if usage is None else usage.input_tokens + usage.output_tokens
        await self.limiter.settle(self._provider, model, estimated, used)

    async def throttled(self, model: str, retry_after: float | None) -> None:
        await self.limiter.throttle(self._provider, model, retry_after)

    def cost(self, terms: CallTerms, usage: Usage | None) -> tuple[float, float] | None:
        """(USD paid, USD at the standard price), or None if the model has no price."""
        if usage is None:
            return None
        price = price_for(self._prices, terms.model, terms.service_tier)
        if price is None:
            return None
        cost = cost_of(
            usage,
            price,
            terms.completion_window,
            self._settings.window_discounts,
            standard=price_for(self._prices, terms.model, None),
        )
        return cost.usd, cost.list_usd
