"""Plain values the store hands out and takes in. No behaviour beyond reading a row."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from backburner.store.transitions import ATTEMPT_ENDINGS, Event, IllegalTransition, JobStatus

# The statuses of a model call that is still out at the provider (not yet ended).
OUTSTANDING_CALL_STATUSES = ("queued", "in_progress")
# The statuses of a model call's response that is asked again: what it cost is what
# retries cost.
RETRIED_CALL_STATUSES = ("failed", "incomplete")


SUBSTATE_WAITING_PROVIDER = "waiting_provider"


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


def new_id() -> str:
    """A UUID whose leading bits are the creation time in ms (UUIDv7 layout), so ids sort
    by age and keyset pagination on id alone is stable."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10)) >> 6  # 74 random bits, from the OS as secrets'
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 62) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    # Spelled as uuid.UUID's str() spells it, without making the object (half the cost; a
    # bulk create makes a thousand).
    hex_digits = f"{value:032x}"
    return (
        f"{hex_digits[:8]}-{hex_digits[8:12]}-{hex_digits[12:16]}-"
        f"{hex_digits[16:20]}-{hex_digits[20:]}"
    )


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    type: str
    status: JobStatus
    substate: str | None
    payload: dict[str, Any]
    result: Any
    error_message: str | None
    error_kind: str | None
    error_retryable: bool | None
    callback_url: str | None
    priority: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    attempts: int
    retry_count: int
    max_attempts: int
    timeout_seconds: float
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    progress: float
    progress_message: str | None
    idempotency_key: str | None
    request_hash: str | None
    deadline_at: datetime | None
    notify: dict[str, Any] | None
    model: str | None
    size: float | None
    result_object: str | None = None  # the result's object key, when too big for the row
    result_bytes: int | None = None
    origin: str | None = None  # the URL the API was reached at when it was created

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Job:
        return cls.from_values(dict(row))

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Job:
        """A job from a row's values, taking the dict over (its status turned into the
        enum). A whole row of the jobs table is set in one step: the frozen dataclass's
        __init__ assigns 37 fields one object.__setattr__ at a time, ~10 us a job and a
        tenth of the worker's time per no-op job at full speed."""
        values["status"] = JobStatus(values["status"])
        if values.keys() == _JOB_FIELDS:
            job = object.__new__(cls)
            job.__dict__.update(values)
            return job
        return cls(**values)

    def error(self) -> dict[str, Any] | None:
        """Its error as clients are told it (`GET /api/jobs/{id}`, webhooks): kind, message
        and whether the same job sent again may succeed; None when it has none."""
        if not (self.error_kind or self.error_message):
            return None
        return {
            "kind": self.error_kind,
            "message": self.error_message,
            "retryable": self.error_retryable,
        }


_JOB_FIELDS = frozenset(field.name for field in fields(Job))


@dataclass(frozen=True)
class NewJob:
    """What the API knows when it enqueues a job."""

    owner: str
    type: str
    payload: dict[str, Any]
    max_attempts: int
    timeout_seconds: float
    priority: int = 0
    run_at: datetime | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    deadline_at: datetime | None = None
    notify: dict[str, Any] | None = None
    model: str | None = None  # None: the type's configured model
    size: float | None = None  # its input's size in its type's unit (the ETA scales by it)
    # The URL the API was reached at, for links in its notifications when no
    # BACKBURNER_PUBLIC_URL is set.
    origin: str | None = None


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: str
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    attempt: int | None
    message: str | None
    data: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> JobEvent:
        return cls(**dict(row))


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a job ended, as the worker decided it."""

    job_id: str
    attempt: int
    event: Event  # how the attempt ended; the state machine says where that leaves the job
    result: Any = None
    # A result stored as an object instead (result is then None): its key and size.
    result_object: str | None = None
    result_bytes: int | None = None
    error_message: str | None = None
    error_kind: str | None = None
    # Whether running the job again could succeed (None: it did not fail).
    retryable: bool | None = None
    run_at: datetime | None = None
    count_as_retry: bool = False
    give_back_attempt: bool = False

    def __post_init__(self) -> None:
        if self.event not in ATTEMPT_ENDINGS:
            raise IllegalTransition(f"{self.event.value} does not end an attempt")

    @property
    def status(self) -> JobStatus:
        """Where this outcome leaves the job: succeeded | failed | canceled, or pending
        (a retry, a hand-back or a reaped lease)."""
        return ATTEMPT_ENDINGS[self.event]


@dataclass(frozen=True)
class ProviderCall:
    id: int
    job_id: str
    key: str
    provider: str
    model: str
    response_id: str
    status: str
    attempt: int
    output: Any
    error_message: str | None
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    submitted_at: datetime
    completed_at: datetime | None
    completion_window: str | None
    service_tier: str | None
    cost_usd: float | None
    list_cost_usd: float | None
    responses: int
    retry_cost_usd: float | None
    owner: str | None
    job_type: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ProviderCall:
        return cls(**dict(row))


@dataclass(frozen=True)
class DocumentEntry:
    """A document as a listing shows it: everything but its text (which stays sealed)."""

    id: str
    owner: str
    filename: str
    content_type: str
    size_bytes: int
    char_count: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True)
class Document(DocumentEntry):
    text: str
    original_key: str | None = None  # the uploaded file, kept as an object

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Document:
        return cls(**dict(row))


@dataclass(frozen=True)
class ApiKey:
    id: str
    owner: str
    role: Role
    name: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ApiKey:
        values = {k: v for k, v in dict(row).items() if k != "key_hash"}
        values["role"] = Role(values["role"])
        return cls(**values)


@dataclass(frozen=True)
class TypeHistory:
    """What the ETA needs to know about one job type's recent past and present queue:
    its recent runs (seconds, and the size of their input when known), the jobs ahead,
    the workers' live capacity."""

    recent_runs: list[tuple[float, float | None]] = field(default_factory=list)
    jobs_ahead: int = 0
    capacity: int = 1

    @property
    def recent_run_seconds(self) -> list[float]:
        return [seconds for seconds, _ in self.recent_runs]
