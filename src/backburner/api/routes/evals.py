"""Evaluation runs (admins): start one over a golden dataset, list them newest first, read
one with its items' scores, compare two."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from backburner.api.auth import AdminPrincipal, CurrentActor
from backburner.api.enqueue import job_type_of
from backburner.api.openapi import problems
from backburner.api.pagination import decode_text_cursor, encode_cursor
from backburner.api.state import Services, ServicesDep
from backburner.errors import NotFound
from backburner.jobs.evals.datasets import load_builtin, parse_items
from backburner.jobs.evals.scoring import cost_per_point, deltas, regressions
from backburner.store import evals as evals_store
from backburner.worker.evaluations import EvalRequest, Evaluations

router = APIRouter(tags=["evaluations"])

ModelName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@/-]+$")]
Label = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
RUN_ID = r"^ev_[0-9a-f-]{36}$"


class EvalCreate(BaseModel):
    """Run a job type over a golden dataset: the type's built-in one, or items sent here
    (the JSON Lines format of docs/evals.md, one object per item)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100)
    dataset_items: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=500)
    dataset_name: Label | None = None
    model: ModelName | None = None
    window: Literal["2h", "8h"] | None = None
    label: Label | None = None
    rubric: bool = False


class EvalRunView(BaseModel):
    id: str
    type: str
    dataset: str
    dataset_sha256: str
    model: str
    window: str | None
    label: str | None
    prompt_version: str
    rubric: bool
    status: str
    items: int
    schedule_id: str | None
    created_at: datetime
    ended_at: datetime | None
    cost_usd: float | None
    duration_seconds: float | None
    scores: dict[str, float] | None
    # Dollars per point of quality (overall x 100).
    cost_per_point_usd: float | None
    links: dict[str, str]

    @classmethod
    def of(cls, run: evals_store.EvalRun) -> EvalRunView:
        return cls(
            id=run.id,
            type=run.job_type,
            dataset=run.dataset,
            dataset_sha256=run.dataset_sha256,
            model=run.model,
            window=run.completion_window,
            label=run.label,
            prompt_version=run.prompt_version,
            rubric=run.rubric,
            status=run.status,
            items=run.items,
            schedule_id=run.schedule_id,
            created_at=run.created_at,
            ended_at=run.ended_at,
            cost_usd=run.cost_usd,
            duration_seconds=run.duration_seconds,
            scores=run.scores,
            cost_per_point_usd=cost_per_point(run.cost_usd, (run.scores or {}).get("overall")),
            links={"self": f"/api/evals/{run.id}"},
        )


class EvalItemView(BaseModel):
    position: int
    item_id: str
    job_id: str | None
    job_status: str | None
    scores: dict[str, float] | None
    error: str | None


class RegressionView(BaseModel):
    item_id: str
    metric: str
    before: float
    after: float


class EvalRunDetail(EvalRunView):
    details: dict[str, Any] | None
    ended_items: int
    item_results: list[EvalItemView]
    # The scored run of the same type before this one, and what changed since.
    previous_run_id: str | None
    deltas: dict[str, float] | None
    regressions: list[RegressionView]


class EvalList(BaseModel):
    items: list[EvalRunView]
    next_cursor: str | None


class EvalComparison(BaseModel):
    a: EvalRunView
    b: EvalRunView
    deltas: dict[str, float]  # b minus a, per metric
    regressions: list[RegressionView]  # items whose metrics fell from a to b
    improvements: list[RegressionView]


def evaluations(svc: Services) -> Evaluations:
    return Evaluations(svc.db, svc.registry, svc.settings, svc.clock, svc.objects)


@router.post("/api/evals", status_code=202, response_model=EvalRunView, responses=problems(403))
async def start_eval(
    body: EvalCreate, svc: ServicesDep, principal: AdminPrincipal, actor: CurrentActor
) -> EvalRunView:
    """Start an evaluation run: every item becomes a job of the type (same queue, provider,
    retries and cost accounting, owned by the caller's owner); the run is scored once they
    have all ended. 202 with the run; follow `links.self`."""
    job_type_of(svc, body.type)
    if body.dataset_items is not None:
        dataset = parse_items(body.dataset_name or "sent", body.dataset_items)
    else:
        dataset = load_builtin(svc.settings.evals_directory(), body.type)
    run = await evaluations(svc).start(
        EvalRequest(
            job_type=body.type,
            dataset=dataset,
            model=body.model,
            window=body.window,
            label=body.label,
            rubric=body.rubric,
        ),
        owner=principal.owner,
        actor=actor,
    )
    return EvalRunView.of(run)


@router.get("/api/evals", response_model=EvalList, responses=problems(403))
async def list_evals(
    svc: ServicesDep,
    principal: AdminPrincipal,
    type: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EvalList:
    """Evaluation runs, newest first."""
    before = decode_text_cursor(cursor, RUN_ID) if cursor else None
    runs = await evals_store.list_runs(svc.db, limit=limit + 1, before=before, job_type=type)
    page = runs[:limit]
    return EvalList(
        items=[EvalRunView.of(run) for run in page],
        next_cursor=encode_cursor(page[-1].id) if len(runs) > limit else None,
    )


@router.get("/api/evals/compare", response_model=EvalComparison, responses=problems(403, 404))
async def compare_evals(
    svc: ServicesDep,
    principal: AdminPrincipal,
    a: Annotated[str, Query(pattern=RUN_ID)],
    b: Annotated[str, Query(pattern=RUN_ID)],
) -> EvalComparison:
    """Run b against run a: per-metric deltas (b minus a) and the items that fell or rose."""
    first, second = await run_or_404(svc, a), await run_or_404(svc, b)
    before = await item_scores(svc, first.id)
    after = await item_scores(svc, second.id)
    return EvalComparison(
        a=EvalRunView.of(first),
        b=EvalRunView.of(second),
        deltas=deltas(first.scores or {}, second.scores or {}),
        regressions=[RegressionView(**vars(r)) for r in regressions(before, after)],
        improvements=[
            RegressionView(item_id=r.item_id, metric=r.metric, before=r.after, after=r.before)
            for r in regressions(after, before)
        ],
    )


@router.get("/api/evals/{run_id}", response_model=EvalRunDetail, responses=problems(403, 404))
async def get_eval(run_id: str, svc: ServicesDep, principal: AdminPrincipal) -> EvalRunDetail:
    """A run with each item's job and scores, and what changed since the run before."""
    run = await run_or_404(svc, run_id)
    states = await evals_store.item_states(svc.db, run.id, content=False)
    previous = await evals_store.previous_scored(svc.db, run) if run.scores else None
    found: list[RegressionView] = []
    if previous is not None:
        before = await item_scores(svc, previous.id)
        after = {s.item_id: s.scores for s in states if s.scores is not None}
        found = [RegressionView(**vars(r)) for r in regressions(before, after)]
    return EvalRunDetail(
        **EvalRunView.of(run).model_dump(),
        details=run.details,
        ended_items=sum(s.ended for s in states),
        item_results=[
            EvalItemView(
                position=s.position,
                item_id=s.item_id,
                job_id=s.job_id,
                job_status=s.job_status,
                scores=s.scores,
                error=s.error,
            )
            for s in states
        ],
        previous_run_id=previous.id if previous else None,
        deltas=deltas(previous.scores or {}, run.scores or {}) if previous else None,
        regressions=found,
    )


async def run_or_404(svc: Services, run_id: str) -> evals_store.EvalRun:
    run = await evals_store.get_run(svc.db, run_id)
    if run is None:
        raise NotFound(f"no evaluation run {run_id}")
    return run


async def item_scores(svc: Services, run_id: str) -> dict[str, dict[str, float]]:
    states = await evals_store.item_states(svc.db, run_id, content=False)
    return {s.item_id: s.scores for s in states if s.scores is not None}
