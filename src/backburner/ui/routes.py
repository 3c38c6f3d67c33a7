"""Sign-in with an API key, the recent jobs, a job's page and what can be done to a job."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from backburner.api.auth import SESSION_COOKIE, Principal, actor_of, guarded_key
from backburner.api.deletion import delete_job_everywhere
from backburner.api.estimates import estimator, eta_of
from backburner.api.feedback import FeedbackCreate, rate_job
from backburner.api.inputs import text_problem
from backburner.api.live import live_response
from backburner.api.results import result_bytes_of, result_of
from backburner.api.schemas import DeliveryView
from backburner.api.state import services
from backburner.errors import NotFound, RequestError, StorageUnavailable, TooManyRequests
from backburner.jobs.registry import JobType
from backburner.store import Job, JobStatus
from backburner.store import audit as audit_store
from backburner.store import documents as documents_store
from backburner.store import events as events_store
from backburner.store import feedback as feedback_store
from backburner.store import jobs as jobs_store
from backburner.store import keys as keys_store
from backburner.store import outbox as outbox_store
from backburner.store import steps as steps_store
from backburner.store.audit import Target
from backburner.ui import audit, new_job, ops, quality
from backburner.ui.calls import call_groups, call_page, step_label
from backburner.ui.pages import (
    not_found,
    page,
    page_principal,
    safe_next,
    same_origin,
    sign_in_page,
)
from backburner.ui.results import result_blocks

router = APIRouter(include_in_schema=False)
router.include_router(new_job.router)
router.include_router(ops.router)
router.include_router(audit.router)
router.include_router(quality.router)
SESSION_TTL = timedelta(days=7)
RECENT = 50
TIMELINE = 100  # the latest events; the API has them all


async def sign_in(request: Request, token: str, next_page: str | None = None) -> Response:
    svc = services(request)
    # Guessing keys here is counted per address as on the API.
    try:
        principal = await guarded_key(request, svc, token)
    except TooManyRequests as throttled:
        return sign_in_page(request, throttled.detail, 429)
    if principal is None:
        return sign_in_page(request, "That key is unknown or revoked.", 401)
    # Trade the key in the URL for a session: the cookie (HttpOnly, SameSite) holds a
    # random session token, never the key, and the redirect drops the key from history.
    session = await keys_store.create_session(
        svc.db,
        principal.key_id,
        now=svc.clock(),
        ttl=SESSION_TTL,
        actor=actor_of(request, principal),
    )
    response = RedirectResponse(safe_next(next_page), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=int(SESSION_TTL.total_seconds()),
    )
    return response


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request,
    token: str | None = None,
    status: str | None = None,
    type: str | None = None,
    next: str | None = None,
) -> Response:
    if token is not None:
        return await sign_in(request, token, next)
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request)
    svc = services(request)
    # Unknown filter values show everything rather than an error page.
    state = JobStatus(status) if status in {s.value for s in JobStatus} else None
    job_type = type if type in svc.registry else None
    listed = await jobs_store.list_jobs(
        svc.db, owner=principal.visible_owner(), status=state, type=job_type, limit=RECENT
    )
    return page(
        request,
        principal,
        "jobs.html",
        {
            "jobs": listed.jobs,
            "etas": await estimator(request).for_page(listed.jobs, svc.registry.find, svc.clock()),
            "now": svc.clock(),
            "types": svc.registry.names(),
            "chosen_status": state.value if state else "",
            "chosen_type": job_type or "",
        },
    )


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    same_origin(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token and token.startswith(keys_store.SESSION_PREFIX):
        principal = await page_principal(request)
        svc = services(request)
        await keys_store.end_session(
            svc.db, token, now=svc.clock(), actor=actor_of(request, principal)
        )
        request.app.state.key_cache.forget(token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


async def job_page_response(
    request: Request,
    principal: Principal,
    job: Job,
    *,
    fragment: bool = False,
    problem: str | None = None,
    status: int = 200,
    calls_from: int = 0,
) -> Response:
    svc = services(request)
    db = svc.db
    found = await outbox_store.list_deliveries(db, job.id)
    job_type = svc.registry.find(job.type)
    calls = await steps_store.list_calls(db, job.id)
    names = await documents_store.names_of(db, document_ids_of(job, job_type))
    result, result_problem = job.result, None
    if job.result_object is not None:
        try:
            result = await result_of(svc, job)
        except StorageUnavailable:
            result_problem = "The result is kept in object storage, which cannot be read now."
    context = {
        "job": job,
        "eta": await eta_of(request, svc, job),
        "usage": await steps_store.usage_totals(db, job.id),
        "events": await events_store.latest_events(db, job.id, limit=TIMELINE),
        "event_count": await events_store.count_events(db, job.id),
        "call_groups": call_groups(calls),
        "call_page": call_page(calls, calls_from),
        "step_label": lambda key: step_label(key, names),
        "deliveries": [DeliveryView.of(d, attempts) for d, attempts in found],
        "blocks": result_blocks(
            result, list(job_type.output_model.model_fields) if job_type else []
        ),
        "problem": problem or result_problem,
        "support_url": svc.settings.support_url,
        "my_rating": next(
            (f for f in await feedback_store.ratings_of(db, job.id) if f.rater == principal.key_id),
            None,
        ),
    }
    template = "job_body.html" if fragment else "job.html"
    return page(request, principal, template, context, status=status)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    job_id: str, request: Request, part: str | None = None, calls: int = 0
) -> Response:
    """A job's page; `?part=body` is the part that live updates swap in."""
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    svc = services(request)
    job = await jobs_store.get_job(svc.db, job_id, owner=principal.visible_owner())
    if job is None:
        return not_found(request, principal, f"job {job_id}")
    if (job.result is not None or job.result_object is not None) and part != "body":
        await read_result(request, principal, job, audit_store.Action.JOB_READ)
    return await job_page_response(
        request, principal, job, fragment=part == "body", calls_from=max(0, calls)
    )


def document_ids_of(job: Job, job_type: JobType | None) -> list[str]:
    """The documents a job's payload names, read as its type reads them (to label its
    steps with their file names); none when the payload no longer fits the type."""
    if job_type is None or job_type.referenced_documents is None:
        return []
    try:
        return job_type.referenced_documents(job_type.input_model.model_validate(job.payload))
    except ValidationError:
        return []


async def read_result(
    request: Request, principal: Principal, job: Job, action: audit_store.Action
) -> None:
    """A person saw a job's result on a page or downloaded it: audited. (The live redraws of
    a page already open are not new reads.)"""
    await audit_store.record_read(
        services(request).db,
        actor_of(request, principal),
        action,
        Target("job", job.id, job.owner),
        services(request).clock(),
    )


async def act_on_job(request: Request, job_id: str, action: str) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    same_origin(request)
    svc = services(request)
    act = jobs_store.request_cancel if action == "cancel" else jobs_store.retry_job
    try:
        await act(
            svc.db,
            job_id,
            owner=principal.visible_owner(),
            now=svc.clock(),
            actor=actor_of(request, principal),
        )
    except RequestError as error:
        job = await jobs_store.get_job(svc.db, job_id, owner=principal.visible_owner())
        if job is None:
            return not_found(request, principal, f"job {job_id}")
        return await job_page_response(
            request, principal, job, problem=error.detail, status=error.status
        )
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/cancel")
async def cancel(job_id: str, request: Request) -> Response:
    return await act_on_job(request, job_id, "cancel")


@router.post("/jobs/{job_id}/delete")
async def delete(job_id: str, request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    same_origin(request)
    svc = services(request)
    try:
        await delete_job_everywhere(
            svc, job_id, owner=principal.visible_owner(), actor=actor_of(request, principal)
        )
    except NotFound:
        return not_found(request, principal, f"job {job_id}")
    except RequestError as error:
        job = await jobs_store.get_job(svc.db, job_id, owner=principal.visible_owner())
        if job is None:
            return not_found(request, principal, f"job {job_id}")
        return await job_page_response(
            request, principal, job, problem=error.detail, status=error.status
        )
    return RedirectResponse("/", status_code=303)


@router.post("/jobs/{job_id}/feedback")
async def rate(
    job_id: str,
    request: Request,
    rating: str = Form(default=""),
    comment: str = Form(default=""),
) -> Response:
    """The job page's thumbs up / down, with a comment."""
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    same_origin(request)
    svc = services(request)
    job = await jobs_store.get_job(svc.db, job_id, owner=principal.visible_owner())
    if job is None:
        return not_found(request, principal, f"job {job_id}")
    try:
        wish = FeedbackCreate.model_validate({"rating": rating, "comment": comment or None})
    except ValidationError:
        return await job_page_response(
            request,
            principal,
            job,
            problem="Rate the result up or down; a comment may have up to 2,000 characters.",
            status=422,
        )
    if wish.comment is not None and (odd := text_problem(wish.comment)):
        return await job_page_response(
            request, principal, job, problem=f"The comment {odd}.", status=422
        )
    try:
        await rate_job(svc, principal, actor_of(request, principal), job, wish.rating, wish.comment)
    except RequestError as error:
        return await job_page_response(
            request, principal, job, problem=error.detail, status=error.status
        )
    return RedirectResponse(f"/jobs/{job_id}#feedback", status_code=303)


@router.post("/jobs/{job_id}/retry")
async def retry(job_id: str, request: Request) -> Response:
    return await act_on_job(request, job_id, "retry")


@router.get("/live")
async def live(request: Request, after: int | None = None) -> Response:
    """The signed-in user's live changes (Server-Sent Events), as /api/events gives them to
    API keys: the dashboard's pages listen here, with the session cookie."""
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    start = after if after is not None and after >= 0 else None
    last = request.headers.get("last-event-id", "")
    if last.isdigit():
        start = int(last)
    if start is None:
        start = await events_store.latest_event_id(services(request).db)
    return live_response(request, owner=principal.visible_owner(), job_id=None, after=start)


@router.get("/jobs/{job_id}/result.json")
async def download_result(job_id: str, request: Request) -> Response:
    """The job's result as a file to save."""
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    svc = services(request)
    job = await jobs_store.get_job(svc.db, job_id, owner=principal.visible_owner())
    if job is None or job.status != JobStatus.SUCCEEDED:
        return not_found(request, principal, f"a result of job {job_id}")
    body = await result_bytes_of(svc, job)
    await read_result(request, principal, job, audit_store.Action.JOB_RESULT_DOWNLOADED)
    disposition = f'attachment; filename="{job.type}-{job.id}.json"'
    return Response(
        body, media_type="application/json", headers={"content-disposition": disposition}
    )
