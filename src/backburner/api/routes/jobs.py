"""/api/jobs: create (one or a batch), read, list, cancel, retry, timeline, model calls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status

from backburner.api import live
from backburner.api.auth import CurrentActor, CurrentPrincipal, Principal, actor_of
from backburner.api.deletion import delete_job_everywhere
from backburner.api.enqueue import enqueue, enqueue_many, origin_of
from backburner.api.estimates import eta_of
from backburner.api.openapi import problems
from backburner.api.pagination import decode_cursor, encode_cursor
from backburner.api.results import public_base, result_bytes_of
from backburner.api.schemas import (
    BatchEntry,
    EventList,
    EventView,
    JobBatchCreate,
    JobBatchCreated,
    JobCreate,
    JobCreated,
    JobList,
    JobView,
    ModelCallList,
    ModelCallView,
)
from backburner.api.state import Services, ServicesDep
from backburner.errors import Conflict, NotFound
from backburner.store import Job, JobStatus
from backburner.store import audit as audit_store
from backburner.store import events as events_store
from backburner.store import jobs as jobs_store
from backburner.store import steps as steps_store
from backburner.store.audit import Actor, Target

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


async def created_response(
    request: Request, svc: Services, job: Job, created: bool, response: Response
) -> JobCreated:
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return JobCreated(
        job_id=job.id,
        status=job.status.value,
        estimated_completion_seconds=await eta_of(request, svc, job, just_created=created),
        created_at=job.created_at,
        links={
            "self": f"/api/jobs/{job.id}",
            "events": f"/api/jobs/{job.id}/events",
            "page": f"/jobs/{job.id}",
        },
    )


@router.post(
    "",
    status_code=201,
    response_model=JobCreated,
    responses={200: {"description": "The job this idempotency key already created"}},
)
async def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JobCreated:
    """Queue a job; answers at once with its id and an estimate of when it will be done."""
    # The actor is made here, not by a dependency: FastAPI's solving of each one is a few
    # percent of a create's time, and this is the hottest route.
    actor = actor_of(request, principal)
    job, created = await enqueue(
        svc, principal, body, idempotency_key, actor, origin_of(request, svc.settings)
    )
    return await created_response(request, svc, job, created, response)


@router.post(
    "/batch",
    status_code=201,
    response_model=JobBatchCreated,
    responses={200: {"description": "Every job was made before (by the same idempotency keys)"}},
)
async def create_jobs(
    body: JobBatchCreate,
    request: Request,
    response: Response,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
) -> JobBatchCreated:
    """Queue up to 1,000 jobs in one transaction: each validated as a single create is (its
    own idempotency key in the body), any bad one refusing the batch with every bad item's
    index and field. Answers with one entry per job, in order."""
    answers = await enqueue_many(svc, principal, body.jobs, actor, origin_of(request, svc.settings))
    response.status_code = (
        status.HTTP_201_CREATED if any(created for _, created in answers) else status.HTTP_200_OK
    )
    last = max((job for job, _ in answers), key=lambda job: (job.run_at, job.id))
    return JobBatchCreated(
        jobs=[
            BatchEntry(
                job_id=job.id,
                status=job.status.value,
                created=created,
                created_at=job.created_at,
                links={"self": f"/api/jobs/{job.id}", "page": f"/jobs/{job.id}"},
            )
            for job, created in answers
        ],
        estimated_completion_seconds=await eta_of(request, svc, last),
    )


async def audit_result_read(
    svc: Services, actor: Actor, job: Job, action: audit_store.Action
) -> None:
    await audit_store.record_read(
        svc.db, actor, action, Target("job", job.id, job.owner), svc.clock()
    )


async def owned_job(svc: Services, principal: Principal, job_id: str) -> Job:
    job = await jobs_store.get_job(svc.db, job_id, owner=principal.visible_owner())
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


@router.get("", response_model=JobList)
async def list_jobs(
    svc: ServicesDep,
    principal: CurrentPrincipal,
    status: JobStatus | None = None,
    type: str | None = Query(default=None, max_length=100),
    owner: str | None = Query(
        default=None, max_length=200, description="Admins only: one owner's jobs"
    ),
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, max_length=200),
) -> JobList:
    """The caller's jobs, newest first (admins: everyone's), keyset-paginated."""
    scope = principal.visible_owner() if principal.visible_owner() is not None else owner
    before = decode_cursor(cursor) if cursor is not None else None
    page = await jobs_store.list_jobs(
        svc.db, owner=scope, status=status, type=type, limit=limit, before=before
    )
    return JobList(
        items=[JobView.of(job, with_result=False) for job in page.jobs],
        next_cursor=encode_cursor(page.jobs[-1].id) if page.more else None,
    )


@router.get("/{job_id}", response_model=JobView)
async def get_job(
    job_id: str,
    request: Request,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
) -> JobView:
    """The job, with its result once it has one (that read is audited; polls before it
    are not)."""
    job = await owned_job(svc, principal, job_id)
    if job.result is not None:
        await audit_result_read(svc, actor, job, audit_store.Action.JOB_READ)
    usage = await steps_store.usage_totals(svc.db, job.id)
    return JobView.of(
        job,
        eta=await eta_of(request, svc, job),
        usage=usage,
        base_url=public_base(request, svc.settings),
    )


@router.get(
    "/{job_id}/result",
    responses={200: {"content": {"application/json": {}}}, 409: {"description": "No result yet"}},
)
async def job_result(
    job_id: str,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
    download: bool = Query(default=False, description="As a file to save"),
) -> Response:
    """The job's result alone, as its type's output schema describes it (also a result
    kept in object storage: this is its `result_url`); 409 until the job has succeeded."""
    job = await owned_job(svc, principal, job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} has no result: it is {job.status.value}")
    action = (
        audit_store.Action.JOB_RESULT_DOWNLOADED if download else audit_store.Action.JOB_RESULT_READ
    )
    body = await result_bytes_of(svc, job)
    await audit_result_read(svc, actor, job, action)
    headers = (
        {"content-disposition": f'attachment; filename="{job.type}-{job.id}.json"'}
        if download
        else None
    )
    return Response(body, media_type="application/json", headers=headers)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobView, responses=problems(409))
async def cancel_job(
    job_id: str, svc: ServicesDep, principal: CurrentPrincipal, actor: CurrentActor
) -> JobView:
    """Cancel: a pending job at once; a running one within about a second (its model calls
    are cancelled at the provider). A job that already ended answers 409."""
    job = await jobs_store.request_cancel(
        svc.db, job_id, owner=principal.visible_owner(), now=svc.clock(), actor=actor
    )
    return JobView.of(job)


@router.post("/{job_id}/retry", status_code=202, response_model=JobView, responses=problems(409))
async def retry_job(
    job_id: str, svc: ServicesDep, principal: CurrentPrincipal, actor: CurrentActor
) -> JobView:
    """Run a failed or canceled job again; finished steps and model calls are reused."""
    job = await jobs_store.retry_job(
        svc.db, job_id, owner=principal.visible_owner(), now=svc.clock(), actor=actor
    )
    return JobView.of(job)


@router.delete("/{job_id}", status_code=204, responses=problems(409))
async def delete_job(
    job_id: str, svc: ServicesDep, principal: CurrentPrincipal, actor: CurrentActor
) -> Response:
    """Delete the job and what is stored of it (its usage stays, without content), and its
    responses stored at the provider. A job that has not ended is cancelled first; one
    still ending after a few seconds answers 409 (ask again shortly)."""
    await delete_job_everywhere(svc, job_id, owner=principal.visible_owner(), actor=actor)
    return Response(status_code=204)


@router.get(
    "/{job_id}/events",
    response_model=EventList,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    job_id: str,
    request: Request,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    after: int = Query(default=0, ge=0, description="Only events after this event id"),
    limit: int = Query(default=500, ge=1, le=5000),
    stream: bool = Query(default=False, description="Server-Sent Events, live"),
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> Any:
    """The job's timeline: every state change, attempt, model call and progress report.
    With `stream=1`, the same as Server-Sent Events, live (resume with Last-Event-ID)."""
    job = await owned_job(svc, principal, job_id)
    if stream:
        return live.live_response(request, owner=None, job_id=job.id, after=last_event_id or after)
    events = await events_store.list_events(svc.db, job.id, after_id=after, limit=limit)
    return EventList(items=[EventView.of(event) for event in events])


@router.get("/{job_id}/model-calls", response_model=ModelCallList)
async def job_model_calls(
    job_id: str, svc: ServicesDep, principal: CurrentPrincipal
) -> ModelCallList:
    """Each model call of the job: response id, status, tokens."""
    job = await owned_job(svc, principal, job_id)
    calls = await steps_store.list_calls(svc.db, job.id)
    return ModelCallList(items=[ModelCallView.of(call) for call in calls])
