"""Ratings of job results: thumbs up or down with a comment, summed per type and model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from backburner.api.auth import CurrentActor, CurrentPrincipal
from backburner.api.feedback import FeedbackCreate, FeedbackView, rate_job
from backburner.api.openapi import problems
from backburner.api.routes.jobs import owned_job
from backburner.api.state import ServicesDep
from backburner.store import feedback as feedback_store

router = APIRouter(tags=["feedback"])


class FeedbackList(BaseModel):
    items: list[FeedbackView]


class RatingTotalsView(BaseModel):
    type: str
    model: str
    up: int
    down: int
    share_up: float | None


class RatingTotalsList(BaseModel):
    items: list[RatingTotalsView]


@router.post(
    "/api/jobs/{job_id}/feedback", response_model=FeedbackView, responses=problems(404, 409)
)
async def rate(
    job_id: str,
    body: FeedbackCreate,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
) -> FeedbackView:
    """Rate a job's result (your key's rating; sending again replaces it). 409 until the
    job has ended."""
    job = await owned_job(svc, principal, job_id)
    return FeedbackView.of(await rate_job(svc, principal, actor, job, body.rating, body.comment))


@router.get("/api/jobs/{job_id}/feedback", response_model=FeedbackList, responses=problems(404))
async def job_feedback(job_id: str, svc: ServicesDep, principal: CurrentPrincipal) -> FeedbackList:
    """The ratings given to a job."""
    job = await owned_job(svc, principal, job_id)
    return FeedbackList(
        items=[FeedbackView.of(f) for f in await feedback_store.ratings_of(svc.db, job.id)]
    )


@router.get("/api/feedback", response_model=RatingTotalsList)
async def rating_totals(
    svc: ServicesDep,
    principal: CurrentPrincipal,
    owner: Annotated[
        str | None, Query(max_length=200, description="Admins only: one owner's ratings")
    ] = None,
) -> RatingTotalsList:
    """Thumbs up and down per job type and model: your own, or (admins) everyone's."""
    scope = principal.visible_owner() if principal.visible_owner() is not None else owner
    totals = await feedback_store.totals(svc.db, owner=scope)
    return RatingTotalsList(
        items=[
            RatingTotalsView(
                type=t.job_type, model=t.model, up=t.up, down=t.down, share_up=t.share_up
            )
            for t in totals
        ]
    )
