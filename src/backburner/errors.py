"""The family of errors Backburner raises. Each says what kind of failure it is and whether
running the job again could succeed.

Handlers raise these (or any exception); the worker records `kind` on the job, and the retry
policy reads `retryable`. The API maps the request-side errors to problem+json in one place
(`api/problems.py`).

    BackburnerError
    ├── JobError                    an attempt of a job failed
    │   ├── Retry                   a handler asks to run again (after `defer` seconds)
    │   ├── PermanentError          running again cannot help
    │   │   ├── InvalidInput
    │   │   ├── UnknownJobType      raised by the registry
    │   │   └── BudgetExhausted
    │   ├── JobTimeout              raised by the worker when an attempt outruns its limit
    │   ├── LeaseLost
    │   └── ProviderError           a model call failed
    │       ├── ProviderUnavailable     timeouts, connection errors, 5xx (transient)
    │       ├── RateLimited             429 (transient, with the provider's wait)
    │       ├── ProviderRejected        other 4xx (permanent)
    │       │   ├── QuotaExhausted          429 insufficient_quota: the account is out of credit
    │       │   └── RequestTooLarge         429 for a request larger than the whole limit
    │       ├── ResponseFailed / ResponseIncomplete / ResponseCancelled
    │       ├── ResponseLost            the provider forgot a response id (resubmit)
    │       └── InvalidModelOutput
    ├── RequestError                a request the API refuses, with its HTTP status
    │   ├── InvalidRequest (422), NotFound (404), Conflict (409), PayloadTooLarge (413),
    │   │   Unauthorized (401), Forbidden (403), UnsupportedMediaType (415)
    │   └── BadSignature (400)      a provider webhook that does not verify
    ├── UnsafeTarget                a URL the SSRF guard will not call
    └── StorageUnavailable          the object store did not answer (transient)
    Unresolvable (an OSError)       a host that does not resolve now (a delivery retries)
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BackburnerError(Exception):
    """Base of every error Backburner raises on purpose."""

    kind: str = "error"
    retryable: bool = False


# --- Errors a job can end with -----------------------------------------------------------


class JobError(BackburnerError):
    """A job's attempt failed."""


class Retry(JobError):
    """Ask for the job to run again, optionally after `defer` seconds (arq-style)."""

    kind = "retry"
    retryable = True

    def __init__(self, message: str = "retry requested", *, defer: float | None = None):
        super().__init__(message)
        self.defer = defer


class PermanentError(JobError):
    """The job cannot succeed by running again."""

    kind = "permanent"


class InvalidInput(PermanentError):
    """The job's payload or referenced data is not acceptable to its type."""

    kind = "invalid_input"


class UnknownJobType(PermanentError):
    """No job type of that name is registered in this process."""

    kind = "unknown_type"

    def __init__(self, name: str):
        super().__init__(f"no job type {name!r}")
        self.name = name


class JobTimeout(JobError):
    """The attempt ran longer than its type's time limit."""

    kind = "timeout"


class LeaseLost(JobError):
    """Another worker took the job over (our lease expired); our result is discarded."""

    kind = "lease_lost"
    retryable = True


class BudgetExhausted(PermanentError):
    """The owner's model-call budget for this month is spent; no new model call starts."""

    kind = "budget_exhausted"


class ProviderError(JobError):
    """A model call failed."""

    kind = "provider_error"


class ProviderUnavailable(ProviderError):
    """Timeouts, connection errors and 5xx from the provider: worth retrying."""

    kind = "provider_unavailable"
    retryable = True


class RateLimited(ProviderError):
    """The provider said 429; `retry_after` is its hint in seconds, if it gave one."""

    kind = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """The provider refused the request (400/401/403/404): running again will not help."""

    kind = "provider_rejected"


class QuotaExhausted(ProviderRejected):
    """429 `insufficient_quota`: the provider account has no credit left. Waiting does
    not help; someone has to add credit (or raise the project's limit)."""

    kind = "insufficient_quota"


class RequestTooLarge(ProviderRejected):
    """429 for a request larger than the whole per-minute limit: it never fits."""

    kind = "request_too_large"


class ResponseFailed(ProviderError):
    """A response ended `failed`; `transient` says whether asking again may succeed (the
    provider's own `server_error` or `rate_limit_exceeded`), not so for prompt errors."""

    kind = "response_failed"

    def __init__(self, message: str, *, code: str | None = None, transient: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = transient


class ResponseIncomplete(ProviderError):
    """The response stopped early (e.g. max output tokens); never treated as success."""

    kind = "response_incomplete"


class ResponseCancelled(ProviderError):
    kind = "response_cancelled"


class ResponseLost(ProviderError):
    """The provider no longer knows a response id we persisted (e.g. the engine restarted)."""

    kind = "response_lost"
    retryable = True


class InvalidModelOutput(ProviderError):
    """The model's output did not match the schema we asked for (after it was asked again
    once), or broke a rule of the job type: permanent."""

    kind = "invalid_output"


# --- Errors a request can end with ------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of a request."""

    loc: tuple[str | int, ...]
    message: str
    type: str = "value_error"


class RequestError(BackburnerError):
    """A request the API refuses; `status` is its HTTP status."""

    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str, *, errors: list[FieldProblem] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldProblem] = errors or []


class InvalidRequest(RequestError):
    status = 422
    title = "Invalid request"
    kind = "invalid_request"


class NotFound(RequestError):
    status = 404
    title = "Not found"
    kind = "not_found"


class Conflict(RequestError):
    status = 409
    title = "Conflict"
    kind = "conflict"


class PayloadTooLarge(RequestError):
    status = 413
    title = "Payload too large"
    kind = "payload_too_large"


class Unauthorized(RequestError):
    status = 401
    title = "Unauthorized"
    kind = "unauthorized"


class TooManyRequests(RequestError):
    """Over a request rate limit; `retry_after` seconds until a request may pass."""

    status = 429
    title = "Too many requests"
    kind = "too_many_requests"

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Forbidden(RequestError):
    status = 403
    title = "Forbidden"
    kind = "forbidden"


class UnsupportedMediaType(RequestError):
    status = 415
    title = "Unsupported media type"
    kind = "unsupported_media_type"


class BadSignature(RequestError):
    status = 400
    title = "Invalid webhook signature"
    kind = "invalid_signature"


# --- Errors of outbound calls to user URLs ----------------------------------------------


class UnsafeTarget(BackburnerError):
    """The URL may not be called (the SSRF guard refused it)."""

    kind = "unsafe_target"


class StorageUnavailable(BackburnerError):
    """The object store (filesystem or S3) failed or did not answer: worth trying again."""

    kind = "storage_unavailable"
    retryable = True


class Unresolvable(OSError):
    """The host does not resolve now (it may later: a delivery retries). An OSError, as
    the HTTP client's resolver must raise."""


def leaf_errors(error: BaseException) -> list[BaseException]:
    """The errors inside (nested) exception groups, in order, or the error itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaf_errors(inner)]
    return [error]


@dataclass
class ErrorInfo:
    """What the worker records about a failure."""

    kind: str
    message: str
    retryable: bool
    retry_after: float | None = None
    details: dict[str, str] = field(default_factory=dict)
