"""Sign-in with an API key and the pages of the dashboard."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from backburner.api.auth import SESSION_COOKIE, KeyCache, Principal, resolve_key
from backburner.api.state import services
from backburner.store import JobStatus
from backburner.store import events as events_store
from backburner.store import jobs as jobs_store
from backburner.store import keys as keys_store
from backburner.store import steps as steps_store

router = APIRouter(include_in_schema=False)
SESSION_TTL = timedelta(days=7)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

STATUS_LABELS = {
    JobStatus.PENDING: "Queued / Waiting to start",
    JobStatus.RUNNING: "Processing / In progress",
    JobStatus.SUCCEEDED: "Completed",
    JobStatus.FAILED: "Failed \u2013 Retry",
    JobStatus.CANCELED: "Canceled",
}
# The same names for the pages' live updates.
templates.env.globals["js_labels"] = {
    status.value: label for status, label in STATUS_LABELS.items()
}


async def page_principal(request: Request) -> Principal | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    cache: KeyCache = request.app.state.key_cache
    return await resolve_key(services(request), cache, secret)


def sign_in_page(request: Request, message: str | None = None, status: int = 200) -> Response:
    return templates.TemplateResponse(
        request, "signin.html", {"message": message}, status_code=status
    )


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request,
    token: str | None = None,
    status: str | None = None,
    type: str | None = None,
) -> Response:
    if token is not None:
        principal = await resolve_key(services(request), request.app.state.key_cache, token)
        if principal is None:
            return sign_in_page(request, "That key is unknown or revoked.", 401)
        # Trade the key in the URL for a session: the cookie (HttpOnly, SameSite) holds a
        # random session token, never the key, and the redirect drops the key from history.
        svc = services(request)
        session = await keys_store.create_session(
            svc.db, principal.key_id, now=svc.clock(), ttl=SESSION_TTL
        )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=int(SESSION_TTL.total_seconds()),
        )
        return response
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request)
    svc = services(request)
    # Unknown filter values show everything rather than an error page.
    state = JobStatus(status) if status in {s.value for s in JobStatus} else None
    job_type = type if type in svc.registry else None
    page = await jobs_store.list_jobs(
        svc.db, owner=principal.visible_owner(), status=state, type=job_type, limit=50
    )
    return templates.TemplateResponse(
        request,
        "jobs.html",
        {
            "principal": principal,
            "jobs": page.jobs,
            "labels": STATUS_LABELS,
            "types": svc.registry.names(),
            "chosen_status": state.value if state else "",
            "chosen_type": job_type or "",
        },
    )


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and token.startswith(keys_store.SESSION_PREFIX):
        await keys_store.end_session(services(request).db, token)
        request.app.state.key_cache.forget(token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(job_id: str, request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    db = services(request).db
    job = await jobs_store.get_job(db, job_id, owner=principal.visible_owner())
    if job is None:
        return templates.TemplateResponse(
            request, "notfound.html", {"job_id": job_id}, status_code=404
        )
    return templates.TemplateResponse(
        request,
        "job.html",
        {
            "principal": principal,
            "job": job,
            "labels": STATUS_LABELS,
            "events": await events_store.list_events(db, job.id),
            "calls": await steps_store.list_calls(db, job.id),
        },
    )
