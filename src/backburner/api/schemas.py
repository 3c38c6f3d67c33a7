"""The API's request and response bodies."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
)

from backburner.jobs.types.summarize import SummaryStyle
from backburner.store import Job, JobEvent, ProviderCall
from backburner.store import outbox as outbox_store

# Numbers in requests are numbers: no `true` for 1, no 1.5 for a count, no NaN.
Count = Annotated[int, Strict()]
Amount = Annotated[float, Strict(), Field(allow_inf_nan=False)]

NUMERIC = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _iso_only(value: object) -> object:
    """A moment is an ISO 8601 text, as the document says, not a Unix timestamp."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or NUMERIC.match(value):
        raise ValueError("must be an ISO 8601 date-time with a time zone")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_iso_only)]

# Characters a URL never holds unescaped (RFC 3986): quotes, angle brackets, spaces...
NOT_IN_URLS = re.compile(r"[\x00-\x20\x7f\"<>\\^`{|}]")


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("https://", "http://")) or len(value) > 2000:
        raise ValueError("must be an http(s) URL of at most 2000 characters")
    if NOT_IN_URLS.search(value):
        raise ValueError("must not hold spaces, double quotes, angle brackets or backslashes")
    return value


# An address as mail systems take it (RFC 5321's dot-atom local part, a dotted domain).
# Written here rather than taken from email-validator: Backburner only needs to refuse
# what is not an address (quotes, HTML, spaces), not to check deliverability.
EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if not EMAIL.match(value) or len(value) > 254:
        raise ValueError("not an e-mail address")
    return value


EmailAddress = Annotated[str, AfterValidator(_email)]


class NotifyWishes(BaseModel):
    """Who hears of this job's end, besides its callback_url, the owner's endpoints and the
    owner's default channels: these e-mail addresses, and Slack or Teams (through the
    owner's incoming-webhook URLs, set with PUT /api/notifications/channels)."""

    model_config = ConfigDict(extra="forbid")

    email: list[EmailAddress] | None = Field(default=None, max_length=20)
    slack: bool = False
    teams: bool = False


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100, examples=["summarize_documents"])
    payload: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = None
    priority: Count = Field(default=0, ge=-100, le=100)
    run_at: Moment | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    # How long the caller can wait for the result; model calls may then use OpenAI's
    # discounted 2h/8h completion windows. Up to 7 days.
    deadline_seconds: Amount | None = Field(default=None, gt=0, le=7 * 86400)
    notify: NotifyWishes | None = None

    _check_url = field_validator("callback_url")(classmethod(lambda cls, v: _http_url(v)))


MAX_BATCH = 1000


class JobBatchCreate(BaseModel):
    """Many jobs in one request, stored in one transaction (all or none)."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_BATCH)


class BatchEntry(BaseModel):
    job_id: str
    status: str
    created: bool  # false: its idempotency key named a job made before
    created_at: datetime
    links: dict[str, str]


class JobBatchCreated(BaseModel):
    jobs: list[BatchEntry]  # one per job asked for, in order
    # When the last of them should be done, as well as we can tell.
    estimated_completion_seconds: float | None


class JobCreated(BaseModel):
    job_id: str
    status: str
    estimated_completion_seconds: float | None
    created_at: datetime
    links: dict[str, str]


class JobError(BaseModel):
    kind: str | None
    message: str | None
    # Whether running the job again could succeed: true for transient failures (the
    # provider stayed unavailable, a timeout, the network), false for permanent ones
    # (invalid input, a bug in the handler, a request the provider refuses).
    retryable: bool | None = None


class Usage(BaseModel):
    model_calls: int
    # Responses those calls had: a response that failed or ended incomplete and was asked
    # again makes two for one call.
    responses: int = 0
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    # Estimated from the price table; None when a model used is not in it.
    cost_usd: float | None = None
    # What the same tokens cost at the standard price, and what the deadline's
    # discounted completion windows saved.
    list_cost_usd: float | None = None
    saved_usd: float | None = None
    # What the responses that failed or ended incomplete (and were asked again) cost;
    # part of cost_usd.
    retry_cost_usd: float = 0.0

    @classmethod
    def of(cls, totals: dict[str, Any]) -> Usage:
        cost, list_cost = totals.get("cost_usd"), totals.get("list_cost_usd")
        saved = None if cost is None or list_cost is None else round(list_cost - cost, 9)
        return cls(**totals, saved_usd=saved)


class JobView(BaseModel):
    job_id: str
    type: str
    owner: str
    status: str
    substate: str | None
    progress: float
    progress_message: str | None
    result: Any = None
    # A result too big for the job (BACKBURNER_RESULT_INLINE_BYTES) is not in `result`: it
    # is downloaded from here with the same credentials; its size is result_bytes.
    result_url: str | None = None
    result_bytes: int | None = None
    error: JobError | None
    error_message: str | None
    attempts: int
    max_attempts: int
    retry_count: int
    priority: int
    callback_url: str | None
    idempotency_key: str | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None = None
    estimated_completion_seconds: float | None = None
    usage: Usage | None = None

    @classmethod
    def of(
        cls,
        job: Job,
        *,
        with_result: bool = True,
        eta: float | None = None,
        usage: dict[str, Any] | None = None,
        base_url: str = "",
    ) -> JobView:
        error = JobError(**told) if (told := job.error()) else None
        return cls(
            job_id=job.id,
            type=job.type,
            owner=job.owner,
            status=job.status.value,
            substate=job.substate,
            progress=job.progress,
            progress_message=job.progress_message,
            result=job.result if with_result else None,
            result_url=f"{base_url}/api/jobs/{job.id}/result" if job.result_object else None,
            result_bytes=job.result_bytes,
            error=error,
            error_message=job.error_message,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            retry_count=job.retry_count,
            priority=job.priority,
            callback_url=job.callback_url,
            idempotency_key=job.idempotency_key,
            cancel_requested=job.cancel_requested,
            created_at=job.created_at,
            updated_at=job.updated_at,
            run_at=job.run_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            deadline_at=job.deadline_at,
            estimated_completion_seconds=eta,
            usage=Usage.of(usage) if usage else None,
        )


class JobList(BaseModel):
    items: list[JobView]
    next_cursor: str | None


class EventView(BaseModel):
    id: int
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    attempt: int | None
    message: str | None
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: JobEvent) -> EventView:
        return cls(
            id=event.id,
            at=event.at,
            kind=event.kind,
            from_status=event.from_status,
            to_status=event.to_status,
            attempt=event.attempt,
            message=event.message,
            data=event.data,
        )


class EventList(BaseModel):
    items: list[EventView]


class ModelCallView(BaseModel):
    key: str
    provider: str
    model: str
    response_id: str
    status: str
    attempt: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    submitted_at: datetime
    completed_at: datetime | None
    error_message: str | None
    completion_window: str | None
    service_tier: str | None
    cost_usd: float | None

    @classmethod
    def of(cls, call: ProviderCall) -> ModelCallView:
        return cls(**{name: getattr(call, name) for name in cls.model_fields})


class ModelCallList(BaseModel):
    items: list[ModelCallView]


class DocumentView(BaseModel):
    document_id: str
    filename: str
    content_type: str
    size_bytes: int
    char_count: int
    sha256: str
    created_at: datetime
    text: str | None = None
    # On upload: the owner had this text already, and this is that document.
    duplicate: bool = False
    # The file as uploaded (null: its original was not kept, e.g. made by an evaluation).
    content_url: str | None = None


class DocumentList(BaseModel):
    items: list[DocumentView]
    next_cursor: str | None


class QuickSummaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: str | None = None
    text: str | None = Field(default=None, min_length=1)
    summary_style: SummaryStyle = SummaryStyle.EXECUTIVE


class QuickSummary(BaseModel):
    summary: str
    key_points: list[str]
    characters: int
    model: str
    usage: dict[str, int]


class BatchSummaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[str] = Field(min_length=1, max_length=200)
    summary_style: SummaryStyle = SummaryStyle.EXECUTIVE
    callback_url: str | None = None
    priority: Count = Field(default=0, ge=-100, le=100)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    # How long the caller can wait for the result; model calls may then use OpenAI's
    # discounted 2h/8h completion windows. Up to 7 days.
    deadline_seconds: Amount | None = Field(default=None, gt=0, le=7 * 86400)
    notify: NotifyWishes | None = None

    _check_url = field_validator("callback_url")(classmethod(lambda cls, v: _http_url(v)))


class JobTypeView(BaseModel):
    name: str
    description: str
    expected_duration_seconds: float
    timeout_seconds: float
    max_attempts: int
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class JobTypeList(BaseModel):
    items: list[JobTypeView]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class AttemptView(BaseModel):
    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None


class DeliveryView(BaseModel):
    delivery_id: str
    job_id: str
    channel: str
    target: str
    event_type: str
    event_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    give_up_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    history: list[AttemptView] = Field(default_factory=list)

    @classmethod
    def of(
        cls, d: outbox_store.Delivery, attempts: list[outbox_store.Attempt] | None = None
    ) -> DeliveryView:
        return cls(
            delivery_id=d.id,
            job_id=d.job_id,
            channel=d.channel,
            target=_shown_target(d),
            event_type=d.event_type,
            event_id=d.event_id,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
            give_up_at=d.give_up_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            history=[
                AttemptView(**{k: getattr(a, k) for k in AttemptView.model_fields})
                for a in attempts or []
            ],
        )


def _shown_target(d: outbox_store.Delivery) -> str:
    # Slack and Teams incoming-webhook URLs are credentials: show only where they go.
    if d.channel in ("slack", "teams"):
        return d.target.split("?")[0].rsplit("/", 1)[0] + "/…"
    return d.target
