"""Schedules (admins): a cron line that creates a job, or starts an evaluation run of a
built-in dataset, in each slot; each slot runs once however many workers there are."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from backburner.api.auth import AdminPrincipal, CurrentActor
from backburner.api.enqueue import job_type_of, validated_payload
from backburner.api.openapi import problems
from backburner.api.routes.evals import Label, ModelName
from backburner.api.schemas import JobCreate
from backburner.api.state import Services, ServicesDep
from backburner.errors import FieldProblem, InvalidRequest, NotFound
from backburner.jobs.evals.datasets import load_builtin
from backburner.store import schedules as schedules_store
from backburner.store.models import new_id
from backburner.worker.evaluations import EvalRequest, check_request
from backburner.worker.schedules import check_cron, next_slot, zone

router = APIRouter(tags=["schedules"])


class EvalOptions(BaseModel):
    """An evaluation run of the type's built-in dataset in each slot."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName | None = None
    window: Literal["2h", "8h"] | None = None
    label: Label | None = None
    rubric: bool = False


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Label
    cron: str = Field(min_length=1, max_length=100, examples=["0 3 * * *"])
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=100)
    # A job's payload in each slot; or `eval`, an evaluation run of the type instead.
    payload: dict[str, Any] | None = None
    eval: EvalOptions | None = None
    enabled: bool = True


class ScheduleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class ScheduleView(BaseModel):
    id: str
    name: str
    cron: str
    timezone: str
    kind: str
    type: str
    payload: dict[str, Any] | None
    eval: dict[str, Any] | None
    enabled: bool
    created_at: datetime
    next_at: datetime
    last_slot_at: datetime | None
    last_target_id: str | None  # the job or evaluation run of the last slot fired
    missed_slots: int

    @classmethod
    def of(cls, s: schedules_store.Schedule) -> ScheduleView:
        return cls(
            id=s.id,
            name=s.name,
            cron=s.cron,
            timezone=s.timezone,
            kind=s.kind,
            type=s.job_type,
            payload=s.payload if s.kind == "job" else None,
            eval=s.payload if s.kind == "eval" else None,
            enabled=s.enabled,
            created_at=s.created_at,
            next_at=s.next_at,
            last_slot_at=s.last_slot_at,
            last_target_id=s.last_target_id,
            missed_slots=s.missed_slots,
        )


class ScheduleList(BaseModel):
    items: list[ScheduleView]


async def _checked_payload(
    svc: Services, body: ScheduleCreate, owner: str
) -> tuple[str, dict[str, Any]]:
    if body.eval is not None:
        if body.payload is not None:
            raise InvalidRequest(
                "give a payload or eval, not both",
                errors=[FieldProblem(("body", "payload"), "not with eval")],
            )
        dataset = load_builtin(svc.settings.evals_directory(), body.type)
        check_request(svc.registry, EvalRequest(body.type, dataset, window=body.eval.window))
        return "eval", body.eval.model_dump(exclude_none=True)
    job_type = job_type_of(svc, body.type)
    create = JobCreate(type=body.type, payload=body.payload or {})
    return "job", await validated_payload(svc, job_type, create, owner)


@router.post(
    "/api/schedules", status_code=201, response_model=ScheduleView, responses=problems(403, 409)
)
async def create_schedule(
    body: ScheduleCreate, svc: ServicesDep, principal: AdminPrincipal, actor: CurrentActor
) -> ScheduleView:
    """A schedule; its first slot is the first after now."""
    check_cron(body.cron)
    zone(body.timezone)
    kind, payload = await _checked_payload(svc, body, principal.owner)
    now = svc.clock()
    schedule = await schedules_store.insert_schedule(
        svc.db,
        {
            "id": f"sch_{new_id()}",
            "owner": principal.owner,
            "name": body.name,
            "cron": body.cron,
            "timezone": body.timezone,
            "kind": kind,
            "job_type": body.type,
            "payload": payload,
            "enabled": body.enabled,
            "created_at": now,
            "next_at": next_slot(body.cron, body.timezone, now),
        },
        actor=actor,
    )
    return ScheduleView.of(schedule)


@router.get("/api/schedules", response_model=ScheduleList, responses=problems(403))
async def list_schedules(svc: ServicesDep, principal: AdminPrincipal) -> ScheduleList:
    """Every schedule, by name."""
    return ScheduleList(
        items=[ScheduleView.of(s) for s in await schedules_store.list_schedules(svc.db)]
    )


@router.get(
    "/api/schedules/{schedule_id}", response_model=ScheduleView, responses=problems(403, 404)
)
async def get_schedule(
    schedule_id: str, svc: ServicesDep, principal: AdminPrincipal
) -> ScheduleView:
    return ScheduleView.of(await schedule_or_404(svc, schedule_id))


@router.patch(
    "/api/schedules/{schedule_id}", response_model=ScheduleView, responses=problems(403, 404)
)
async def change_schedule(
    schedule_id: str,
    body: ScheduleChange,
    svc: ServicesDep,
    principal: AdminPrincipal,
    actor: CurrentActor,
) -> ScheduleView:
    """Pause or resume. Resuming starts at the next slot after now: what was skipped while
    paused is not caught up."""
    schedule = await schedule_or_404(svc, schedule_id)
    now = svc.clock()
    changed = await schedules_store.set_enabled(
        svc.db,
        schedule.id,
        body.enabled,
        next_at=next_slot(schedule.cron, schedule.timezone, now)
        if body.enabled
        else schedule.next_at,
        actor=actor,
        now=now,
    )
    if changed is None:
        raise NotFound(f"no schedule {schedule_id}")
    return ScheduleView.of(changed)


@router.delete("/api/schedules/{schedule_id}", status_code=204, responses=problems(403, 404))
async def delete_schedule(
    schedule_id: str, svc: ServicesDep, principal: AdminPrincipal, actor: CurrentActor
) -> Response:
    """Remove a schedule (jobs and runs it made stay)."""
    if not await schedules_store.delete_schedule(svc.db, schedule_id, actor=actor, now=svc.clock()):
        raise NotFound(f"no schedule {schedule_id}")
    return Response(status_code=204)


async def schedule_or_404(svc: Services, schedule_id: str) -> schedules_store.Schedule:
    found = await schedules_store.get_schedule(svc.db, schedule_id)
    if found is None:
        raise NotFound(f"no schedule {schedule_id}")
    return found
