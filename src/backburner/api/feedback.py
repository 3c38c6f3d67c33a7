"""Ratings of job results: the one path the API route and the dashboard's buttons take."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backburner.api.auth import Principal
from backburner.api.state import Services
from backburner.errors import Conflict
from backburner.store import Job
from backburner.store import feedback as feedback_store
from backburner.store.audit import Actor
from backburner.store.transitions import TERMINAL_STATUSES

Rating = Literal["up", "down"]


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Rating
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackView(BaseModel):
    job_id: str
    rating: str
    comment: str | None
    job_type: str
    model: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, f: feedback_store.Feedback) -> FeedbackView:
        return cls(
            job_id=f.job_id,
            rating=f.rating,
            comment=f.comment,
            job_type=f.job_type,
            model=f.model,
            created_at=f.created_at,
            updated_at=f.updated_at,
        )


def model_of(svc: Services, job: Job) -> str:
    """The model the job's calls used: its own, else its type's configured one."""
    return job.model or svc.settings.model_for(job.type)


async def rate_job(
    svc: Services,
    principal: Principal,
    actor: Actor,
    job: Job,
    rating: Rating,
    comment: str | None,
) -> feedback_store.Feedback:
    """Store the caller's rating of a job that has ended (409 before); rating again
    replaces it."""
    if job.status not in TERMINAL_STATUSES:
        raise Conflict(f"job {job.id} has not ended yet; rate its result once it has")
    return await feedback_store.rate(
        svc.db,
        job_id=job.id,
        rater=principal.key_id,
        owner=job.owner,
        job_type=job.type,
        model=model_of(svc, job),
        rating=rating,
        comment=(comment or "").strip() or None,
        now=svc.clock(),
        actor=actor,
    )
