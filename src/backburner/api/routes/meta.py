"""Job types, health and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backburner.api.auth import CurrentPrincipal
from backburner.api.schemas import Health, JobTypeList, JobTypeView
from backburner.api.state import ServicesDep
from backburner.errors import NotFound
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


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(svc: ServicesDep) -> JSONResponse:
    """The database answers and its schema is current."""
    checks: dict[str, str] = {}
    try:
        checks["migrations"] = "current" if await migrate.is_current(svc.db) else "behind"
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    ready = checks.get("database") == "ok" and checks.get("migrations") == "current"
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
