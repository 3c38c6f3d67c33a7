"""Job types, health and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from backburner.api.auth import CurrentPrincipal
from backburner.api.live import live_response
from backburner.api.schemas import Health, JobTypeList, JobTypeView
from backburner.api.state import ServicesDep
from backburner.errors import NotFound
from backburner.store import events as events_store
from backburner.store import migrate

router = APIRouter(tags=["meta"])


@router.get("/api/job-types", response_model=JobTypeList)
async def list_job_types(svc: ServicesDep, _principal: CurrentPrincipal) -> JobTypeList:
    """Every job type with its input and output JSON Schemas."""
    return JobTypeList(items=[JobTypeView(**t.describe()) for t in svc.registry.all()])


@router.get("/api/job-types/{name}", response_model=JobTypeView)
async def get_job_type(name: str, svc: ServicesDep, _principal: CurrentPrincipal) -> JobTypeView:
    if name not in svc.registry:
        raise NotFound(f"no job type {name!r}")
    return JobTypeView(**svc.registry.get(name).describe())


@router.get("/api/events", responses={200: {"content": {"text/event-stream": {}}}})
async def events(
    request: Request,
    principal: CurrentPrincipal,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    """Server-Sent Events: every change to the caller's jobs (admins: everyone's), live.
    Reconnect with `Last-Event-ID` (or `?after=`) and nothing in between is missed."""
    start = last_event_id if last_event_id is not None else after
    if start is None:
        start = await events_store.latest_event_id(request.app.state.services.db)
    return live_response(request, owner=principal.visible_owner(), job_id=None, after=start)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(svc: ServicesDep) -> JSONResponse:
    """The database answers, its schema is current, and no embedded service crashed."""
    checks: dict[str, str] = {}
    try:
        checks["migrations"] = "current" if await migrate.is_current(svc.db) else "behind"
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    for name in svc.crashed:
        checks[name] = "crashed"
    ready = (
        checks.get("database") == "ok" and checks.get("migrations") == "current" and not svc.crashed
    )
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
