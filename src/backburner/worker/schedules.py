"""Schedules: cron lines (parsed by `croniter`) that create a job, or start an evaluation
run, in each slot.

Exactly once per slot across any number of workers: a slot's job carries the idempotency
key `schedule:<id>:<slot>` (an evaluation run is unique per schedule and slot), and the
slot counts as fired when `next_at` is moved past it by a compare-and-set. Two workers
firing together make one job; a worker that dies between the two leaves the slot due, and
firing it again finds the job made.

Downtime: slots missed while no worker ran are caught up once, by one run for the latest
of them (the count of the others is kept as `missed_slots`), as Kubernetes CronJobs do;
a backlog of identical nightly runs helps no one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from backburner.clock import Clock
from backburner.config import Settings
from backburner.errors import FieldProblem, InvalidRequest
from backburner.jobs.evals.datasets import load_builtin
from backburner.jobs.registry import JobRegistry
from backburner.store import Database
from backburner.store import jobs as jobs_store
from backburner.store import schedules as schedules_store
from backburner.store.audit import Actor
from backburner.worker.evaluations import EvalRequest, Evaluations, keyed_job

log = logging.getLogger(__name__)

SCHEDULER = Actor("system", user_agent="scheduler")
# Counting missed slots stops here (an every-minute schedule down for a month).
MAX_COUNTED = 10_000


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"unknown time zone {name!r}",
            errors=[FieldProblem(("body", "timezone"), "not an IANA time zone name")],
        ) from None


def check_cron(expression: str) -> str:
    """The expression, if croniter reads it as five fields (or @daily and the like)."""
    if len(expression) > 100 or not croniter.is_valid(expression) or len(expression.split()) > 5:
        raise InvalidRequest(
            f"not a cron expression: {expression!r}",
            errors=[FieldProblem(("body", "cron"), "five fields: minute hour day month weekday")],
        )
    return expression


def next_slot(expression: str, timezone: str, after: datetime) -> datetime:
    """The first slot strictly after `after`, in UTC."""
    start = after.astimezone(zone(timezone))
    following: datetime = croniter(expression, start).get_next(datetime)
    return following.astimezone(ZoneInfo("UTC"))


@dataclass(frozen=True)
class Firing:
    slot: datetime  # the slot to run: the latest one due
    missed: int  # due slots before it, skipped
    next_at: datetime  # the first slot after now


def firing(expression: str, timezone: str, next_at: datetime, now: datetime) -> Firing:
    """What a schedule whose slot `next_at` is due (<= now) does now."""
    following = next_slot(expression, timezone, now)
    latest: datetime = croniter(expression, following.astimezone(zone(timezone))).get_prev(datetime)
    latest = latest.astimezone(ZoneInfo("UTC"))
    missed = 0
    cursor = next_at
    while cursor < latest and missed < MAX_COUNTED:
        missed += 1
        cursor = next_slot(expression, timezone, cursor)
    return Firing(slot=max(latest, next_at), missed=missed, next_at=following)


class Scheduler:
    def __init__(
        self,
        db: Database,
        registry: JobRegistry,
        settings: Settings,
        clock: Clock,
        evaluations: Evaluations,
    ) -> None:
        self.db = db
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.evaluations = evaluations

    async def fire_due(self) -> None:
        """Fire every schedule whose slot has come (each in its own try: one broken
        schedule does not hold up the others)."""
        now = self.clock()
        for schedule in await schedules_store.due_schedules(self.db, now=now):
            try:
                await self._fire(schedule, now)
            except Exception as error:
                if not self.db.outages.absorbed(error, "schedules"):
                    log.exception("schedule could not fire", extra={"schedule_id": schedule.id})

    async def _fire(self, schedule: schedules_store.Schedule, now: datetime) -> None:
        if self.registry.find(schedule.job_type) is None:
            return  # a worker that has the type (a plugin installed there) fires it
        plan = firing(schedule.cron, schedule.timezone, schedule.next_at, now)
        if schedule.kind == "eval":
            target = await self._start_eval(schedule, plan.slot)
        else:
            target = await self._create_job(schedule, plan.slot, now)
        if await schedules_store.advance(
            self.db,
            schedule,
            slot_at=plan.slot,
            next_at=plan.next_at,
            target_id=target,
            missed=plan.missed,
        ):
            log.info(
                "schedule fired",
                extra={
                    "schedule_id": schedule.id,
                    "slot": plan.slot.isoformat(),
                    "target": target,
                    "missed": plan.missed,
                },
            )

    async def _create_job(
        self, schedule: schedules_store.Schedule, slot: datetime, now: datetime
    ) -> str:
        job_type = self.registry.get(schedule.job_type)
        key = f"schedule:{schedule.id}:{slot.isoformat()}"
        deadline = job_type.deadline(now, None)
        job, _created = await jobs_store.insert_job(
            self.db,
            keyed_job(job_type, schedule.owner, schedule.payload, key, now, deadline),
            now=now,
            actor=SCHEDULER,
        )
        return job.id

    async def _start_eval(self, schedule: schedules_store.Schedule, slot: datetime) -> str:
        options = schedule.payload
        run = await self.evaluations.start(
            EvalRequest(
                job_type=schedule.job_type,
                dataset=load_builtin(self.settings.evals_directory(), schedule.job_type),
                model=options.get("model"),
                window=options.get("window"),
                label=options.get("label") or schedule.name,
                rubric=bool(options.get("rubric", False)),
            ),
            owner=schedule.owner,
            actor=SCHEDULER,
            schedule_id=schedule.id,
            slot_at=slot,
        )
        return run.id
