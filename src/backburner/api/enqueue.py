"""Turning a validated request into a queued job: the one path every client takes."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from fastapi import Request
from pydantic import ValidationError

from backburner.api.auth import Principal
from backburner.api.problems import validation_problems
from backburner.api.results import reached_at
from backburner.api.schemas import JobCreate
from backburner.api.state import Services
from backburner.config import Settings
from backburner.errors import FieldProblem, InvalidRequest, UnknownJobType, UnsafeTarget
from backburner.jobs.registry import JobType
from backburner.notify.ssrf import Allowed, check_url
from backburner.store import Job, NewJob
from backburner.store import documents as documents_store
from backburner.store import jobs as jobs_store
from backburner.store.audit import Actor


def request_fingerprint(create: JobCreate, payload: dict[str, object]) -> str:
    """Identifies what was asked, so a reused idempotency key with a different request is
    caught instead of silently answered with the first job."""
    canonical = json.dumps(
        {
            "type": create.type,
            "payload": payload,
            "callback_url": create.callback_url,
            "priority": create.priority,
            "run_at": create.run_at.isoformat() if create.run_at else None,
            "deadline_seconds": create.deadline_seconds,
            "notify": create.notify.model_dump() if create.notify else None,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_of(create: JobCreate, header_key: str | None) -> str | None:
    if header_key is not None and not 1 <= len(header_key) <= 200:
        raise InvalidRequest(
            "Idempotency-Key must be 1-200 characters",
            errors=[FieldProblem(("header", "Idempotency-Key"), "must be 1-200 characters")],
        )
    if header_key and create.idempotency_key and header_key != create.idempotency_key:
        raise InvalidRequest(
            "the Idempotency-Key header and the body's idempotency_key differ",
            errors=[FieldProblem(("body", "idempotency_key"), "differs from the header")],
        )
    return create.idempotency_key or header_key


def job_type_of(svc: Services, name: str) -> JobType:
    try:
        return svc.registry.get(name)
    except UnknownJobType:
        known = ", ".join(svc.registry.names())
        raise InvalidRequest(
            f"unknown job type {name!r}; known types: {known}",
            errors=[
                FieldProblem(
                    ("body", "type"), f"unknown job type; one of: {known}", "unknown_job_type"
                )
            ],
        ) from None


async def validated_payload(
    svc: Services, job_type: JobType, create: JobCreate, owner: str
) -> dict[str, object]:
    return (await sized_payload(svc, job_type, create, owner))[0]


async def sized_payload(
    svc: Services, job_type: JobType, create: JobCreate, owner: str
) -> tuple[dict[str, object], float | None]:
    """The payload as its type reads it (InvalidRequest naming each bad field, and each
    document that is not the owner's), and its size in the type's unit."""
    try:
        payload = job_type.input_model.model_validate(create.payload)
    except ValidationError as error:
        problems = validation_problems(error.errors(), prefix=("body", "payload"))
        raise InvalidRequest(
            f"payload does not fit job type {job_type.name}", errors=problems
        ) from None
    found: dict[str, int] = {}
    if job_type.referenced_documents is not None:
        wanted = job_type.referenced_documents(payload)
        # Their lengths, not their (sealed) texts: enough to check and to size.
        found = await documents_store.characters_of(svc.db, wanted, owner=owner)
        missing = [
            FieldProblem(
                ("body", "payload", "document_ids", index), "no such document", "not_found"
            )
            for index, doc_id in enumerate(wanted)
            if doc_id not in found
        ]
        if missing:
            raise InvalidRequest("some documents do not exist", errors=missing)
    dumped: dict[str, object] = payload.model_dump(mode="json")
    size = job_type.size_of(payload, found) if job_type.size_of is not None else None
    return dumped, size


def check_callable(svc: Services, url: str, field: tuple[str, ...]) -> None:
    """Refuse at once a URL the dispatcher would refuse (scheme, credentials, a non-public
    address written in it); host names are checked again when resolved at delivery."""
    allowed = Allowed.parse(
        svc.settings.webhook_allowed_hosts, allow_http=svc.settings.webhook_allow_http
    )
    try:
        check_url(url, allowed)
    except UnsafeTarget as refused:
        raise InvalidRequest(str(refused), errors=[FieldProblem(field, str(refused))]) from None


def deadline_of(create: JobCreate, job_type: JobType, now: datetime) -> datetime | None:
    """When the result is due: the request's deadline, else the type's default, counted
    from when the job may start."""
    return job_type.deadline(create.run_at or now, create.deadline_seconds)


FURTHEST_START = timedelta(days=3653)


def check_start(create: JobCreate, now: datetime) -> None:
    """A job starts within ten years (a date like 9999-12-31 is a mistake, and its
    deadline would not fit in a date)."""
    if create.run_at is not None and create.run_at - now > FURTHEST_START:
        raise InvalidRequest(
            "run_at may be at most ten years ahead",
            errors=[FieldProblem(("body", "run_at"), "at most ten years ahead")],
        )


def origin_of(request: Request, settings: Settings) -> str | None:
    """The URL the API was reached at (scheme from a trusted proxy's X-Forwarded-Proto),
    kept with a job for its notifications' links, unless BACKBURNER_PUBLIC_URL says it."""
    if settings.public_url is not None:
        return None
    origin, hostname = reached_at(request)
    return origin if len(origin) <= MAX_ORIGIN and hostname else None


MAX_ORIGIN = 300


async def prepared_job(
    svc: Services,
    principal: Principal,
    create: JobCreate,
    key: str | None,
    now: datetime,
    origin: str | None = None,
) -> NewJob:
    """The job a request asks for, validated (InvalidRequest naming each bad field)."""
    job_type = job_type_of(svc, create.type)
    if create.callback_url is not None:
        check_callable(svc, create.callback_url, ("body", "callback_url"))
    payload, size = await sized_payload(svc, job_type, create, principal.owner)
    check_start(create, now)
    deadline = deadline_of(create, job_type, now)
    return NewJob(
        owner=principal.owner,
        type=job_type.name,
        payload=payload,
        max_attempts=job_type.retry.max_attempts,
        timeout_seconds=job_type.attempt_timeout(create.run_at or now, deadline),
        priority=create.priority,
        run_at=create.run_at,
        callback_url=create.callback_url,
        idempotency_key=key,
        # Compared only when a key names an earlier job: a job without one needs none
        # (a tenth of a bulk create's time went to fingerprints nobody would read).
        request_hash=request_fingerprint(create, payload) if key is not None else None,
        deadline_at=deadline,
        notify=create.notify.model_dump(exclude_defaults=True) if create.notify else None,
        size=size,
        origin=origin,
    )


def _key_reused(where: tuple[str | int, ...]) -> FieldProblem:
    return FieldProblem(
        (*where, "idempotency_key"), "reused with a different request", "idempotency_key_reused"
    )


async def enqueue(
    svc: Services,
    principal: Principal,
    create: JobCreate,
    header_key: str | None,
    actor: Actor | None = None,
    origin: str | None = None,
) -> tuple[Job, bool]:
    """Queue the job (or find the one this idempotency key already made)."""
    key = idempotency_key_of(create, header_key)
    now = svc.clock()  # one moment: the deadline counts from the creation time stored
    new = await prepared_job(svc, principal, create, key, now, origin)
    job, created = await jobs_store.insert_job(svc.db, new, now=now, actor=actor)
    if not created and job.request_hash != new.request_hash:
        raise InvalidRequest(
            "this idempotency key was used before with a different request",
            errors=[_key_reused(("body",))],
        )
    return job, created


async def enqueue_many(
    svc: Services,
    principal: Principal,
    creates: list[JobCreate],
    actor: Actor | None = None,
    origin: str | None = None,
) -> list[tuple[Job, bool]]:
    """Queue a batch, all or none: every item is validated as a single create is, and any
    bad item refuses the whole batch with each bad item's index and field."""
    now = svc.clock()
    prepared: list[NewJob] = []
    problems: list[FieldProblem] = []
    keys: dict[str, int] = {}
    for index, create in enumerate(creates):
        where = ("body", "jobs", index)
        key = create.idempotency_key
        if key is not None and keys.setdefault(key, index) != index:
            problems.append(
                FieldProblem(
                    (*where, "idempotency_key"),
                    f"the same key as item {keys[key]}",
                    "idempotency_key_repeated",
                )
            )
        try:
            prepared.append(await prepared_job(svc, principal, create, key, now, origin))
        except InvalidRequest as refused:
            problems += [
                FieldProblem((*where, *problem.loc[1:]), problem.message, problem.type)
                for problem in refused.errors
            ]
    if problems:
        bad = len({problem.loc[2] for problem in problems})
        raise InvalidRequest(f"{bad} of {len(creates)} jobs are invalid", errors=problems)
    try:
        return await jobs_store.insert_jobs(svc.db, prepared, now=now, actor=actor)
    except jobs_store.KeysReused as reused:
        raise InvalidRequest(
            "idempotency keys were used before with different requests",
            errors=[_key_reused(("body", "jobs", index)) for index in reused.indexes],
        ) from None
