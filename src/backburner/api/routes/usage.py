"""/api/usage and /api/owners: what model calls cost, owners' limits, the rate limiter."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from backburner.api.auth import CurrentActor, CurrentPrincipal, Principal
from backburner.api.openapi import problems
from backburner.api.schemas import Amount, Count, Moment
from backburner.api.state import ServicesDep
from backburner.errors import Forbidden
from backburner.store import ratelimits as ratelimits_store
from backburner.store import usage as usage_store

router = APIRouter(tags=["usage"])


class UsageLineView(BaseModel):
    owner: str
    type: str
    model: str
    model_calls: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float
    list_cost_usd: float
    saved_usd: float
    # Finished calls whose model is not in the price table (not in cost_usd).
    unpriced_calls: int


class Budget(BaseModel):
    owner: str
    month: str
    spent_usd: float
    monthly_budget_usd: float | None
    remaining_usd: float | None


class UsageReport(BaseModel):
    since: datetime | None
    items: list[UsageLineView]
    cost_usd: float
    saved_usd: float
    budget: Budget | None = None


class OwnerLimitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_running: Count | None = Field(default=None, ge=1)
    monthly_budget_usd: Amount | None = Field(default=None, ge=0)
    # API requests a minute per key of the owner's (0: unlimited).
    requests_per_minute: Count | None = Field(default=None, ge=0, le=1_000_000)


class OwnerLimitsView(OwnerLimitsBody):
    owner: str
    default_max_running: int | None
    default_monthly_budget_usd: float | None
    default_requests_per_minute: int


class BucketView(BaseModel):
    key: str
    requests: float
    tokens: float
    scale: float
    blocked_until: datetime | None
    updated_at: datetime
    # Since the bucket was first used: callers told to wait, and the seconds they were told.
    waits: int
    waited_seconds: float


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this needs an admin key")


@router.get("/api/usage", response_model=UsageReport)
async def usage(
    svc: ServicesDep,
    principal: CurrentPrincipal,
    since: Annotated[Moment | None, Query()] = None,
    owner: Annotated[str | None, Query(max_length=200)] = None,
) -> UsageReport:
    """Tokens and estimated cost by owner, job type and model; with one owner in view
    (a member's own, or `owner=` for admins), that owner's budget for this month."""
    scope = principal.visible_owner() if principal.visible_owner() is not None else owner
    lines = await usage_store.usage_report(svc.db, owner=scope, since=since)
    items = [
        UsageLineView(**vars(line), saved_usd=line.list_cost_usd - line.cost_usd) for line in lines
    ]
    budget = await budget_of(svc, scope) if scope is not None else None
    return UsageReport(
        since=since,
        items=items,
        cost_usd=sum(item.cost_usd for item in items),
        saved_usd=sum(item.saved_usd for item in items),
        budget=budget,
    )


async def budget_of(svc: ServicesDep, owner: str) -> Budget:
    month = usage_store.month_of(svc.clock())
    spent = await usage_store.spent(svc.db, owner, month)
    limit = await usage_store.monthly_budget(svc.db, owner, svc.settings.owner_monthly_budget_usd)
    return Budget(
        owner=owner,
        month=month,
        spent_usd=spent,
        monthly_budget_usd=limit,
        remaining_usd=None if limit is None else max(0.0, limit - spent),
    )


@router.get("/api/owners/{owner}/limits", response_model=OwnerLimitsView, responses=problems(403))
async def get_owner_limits(
    owner: str, svc: ServicesDep, principal: CurrentPrincipal
) -> OwnerLimitsView:
    """An owner's limits (members: only their own)."""
    if not principal.is_admin and owner != principal.owner:
        require_admin(principal)
    own = await usage_store.get_limits(svc.db, owner)
    return limits_view(svc, owner, own)


@router.put("/api/owners/{owner}/limits", response_model=OwnerLimitsView, responses=problems(403))
async def put_owner_limits(
    owner: str,
    body: OwnerLimitsBody,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
) -> OwnerLimitsView:
    """Set an owner's own limits (admins); a null field falls back to the default."""
    require_admin(principal)
    own = await usage_store.set_limits(
        svc.db,
        owner,
        max_running=body.max_running,
        monthly_budget_usd=body.monthly_budget_usd,
        requests_per_minute=body.requests_per_minute,
        now=svc.clock(),
        actor=actor,
    )
    return limits_view(svc, owner, own)


def limits_view(
    svc: ServicesDep, owner: str, own: usage_store.OwnerLimits | None
) -> OwnerLimitsView:
    return OwnerLimitsView(
        owner=owner,
        max_running=own.max_running if own else None,
        monthly_budget_usd=own.monthly_budget_usd if own else None,
        requests_per_minute=own.requests_per_minute if own else None,
        default_max_running=svc.settings.owner_max_running,
        default_monthly_budget_usd=svc.settings.owner_monthly_budget_usd,
        default_requests_per_minute=svc.settings.api_requests_per_minute,
    )


@router.get("/api/rate-limits", response_model=list[BucketView], responses=problems(403))
async def rate_limits(svc: ServicesDep, principal: CurrentPrincipal) -> list[BucketView]:
    """The shared rate limiter's buckets (admins): what is left, and how far 429s have
    shrunk each budget (`scale`)."""
    require_admin(principal)
    return [BucketView(**vars(b)) for b in await ratelimits_store.list_buckets(svc.db)]
