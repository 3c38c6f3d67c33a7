"""Every error the API returns is `application/problem+json` (RFC 9457), mapped here once."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from backburner.errors import (
    BudgetExhausted,
    FieldProblem,
    ProviderError,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    RequestError,
    StorageUnavailable,
    TooManyRequests,
)
from backburner.store.database import is_outage

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(problems: list[FieldProblem]) -> list[dict[str, Any]]:
    return [
        {"loc": list(p.loc), "field": dotted(p.loc), "message": p.message, "type": p.type}
        for p in problems
    ]


def dotted(loc: tuple[str | int, ...] | list[str | int]) -> str:
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts) or "body"


def validation_problems(errors: Any, prefix: tuple[str | int, ...] = ()) -> list[FieldProblem]:
    """Pydantic's errors as FieldProblems, their locations under `prefix`."""
    return [
        FieldProblem(loc=(*prefix, *error["loc"]), message=error["msg"], type=error["type"])
        for error in errors
    ]


def provider_status(error: ProviderError) -> tuple[int, dict[str, str] | None]:
    """The HTTP status (and headers) for a provider's failure met inside a request: 429
    with Retry-After when it throttles us, 503 when it is down or our account is out of
    quota, 502 when it refused the request or answered something unusable."""
    if isinstance(error, RateLimited):
        wait = math.ceil(error.retry_after) if error.retry_after is not None else 1
        return 429, {"Retry-After": str(max(1, wait))}
    if isinstance(error, ProviderUnavailable):
        return 503, {"Retry-After": "5"}
    if isinstance(error, QuotaExhausted):
        return 503, None
    return 502, None


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, error: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        if isinstance(error, TooManyRequests):
            headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
        return problem(
            error.status,
            error.detail,
            title=error.title,
            errors=field_errors(error.errors),
            instance=request.url.path,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        raw = list(error.errors())
        if any(e.get("type") == "json_invalid" for e in raw):
            message = next(e for e in raw if e.get("type") == "json_invalid")
            position = message["loc"][-1]
            at = f" at character {position}" if isinstance(position, int) else ""
            return problem(
                400,
                f"request body is not valid JSON{at}: {message.get('msg')}",
                title="Malformed JSON",
                instance=request.url.path,
                errors=field_errors([FieldProblem(("body",), "not valid JSON", "json_invalid")]),
            )
        problems = validation_problems(raw)
        summary = "; ".join(f"{dotted(p.loc)}: {p.message}" for p in problems[:3])
        return problem(
            422,
            summary or "request is invalid",
            instance=request.url.path,
            errors=field_errors(problems),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(error.headers) if error.headers else None
        if error.status_code == 405:
            # Starlette names only the first matching route's methods; the path has more.
            headers = {"Allow": ", ".join(allowed_methods(request))}
        return problem(
            error.status_code, str(error.detail), instance=request.url.path, headers=headers
        )

    def unavailable(request: Request, error: BaseException) -> JSONResponse:
        # An outage is told once a process (its OutageLog, with the worker's loops and the
        # dispatcher), and once that it is over: under load a warning for every request it
        # refused buried the story under thousands of lines.
        services = getattr(request.app.state, "services", None)
        if services is None or not services.db.outages.absorbed(error, request.url.path):
            log.warning(
                "database unavailable",
                extra={"path": request.url.path, "error": f"{type(error).__name__}: {error}"},
            )
        return problem(
            503,
            "the database is unavailable; try again shortly",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, error: SQLAlchemyError) -> JSONResponse:
        if is_outage(error):
            return unavailable(request, error)
        log.exception("database error", extra={"path": request.url.path})
        return problem(
            500, "an unexpected error occurred; it has been logged", instance=request.url.path
        )

    @app.exception_handler(BudgetExhausted)
    async def _budget(request: Request, error: BudgetExhausted) -> JSONResponse:
        return problem(402, str(error), title="Budget exhausted", instance=request.url.path)

    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, error: StorageUnavailable) -> JSONResponse:
        log.warning(
            "object storage unavailable", extra={"path": request.url.path, "error": str(error)}
        )
        return problem(
            503,
            "object storage is unavailable; try again shortly",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(ProviderError)
    async def _provider(request: Request, error: ProviderError) -> JSONResponse:
        # A model call made in the request (the quick path) failed: say how, and whether
        # asking again later may work.
        status, headers = provider_status(error)
        log.warning(
            "model call in a request failed",
            extra={"path": request.url.path, "error_kind": error.kind, "error": str(error)},
        )
        return problem(
            status,
            str(error),
            title="The model provider could not answer",
            instance=request.url.path,
            headers=headers,
        )

    def unexpected(request: Request, error: Exception) -> JSONResponse:
        if is_outage(error):  # the driver's own error, from a statement sent through it
            return unavailable(request, error)
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem(
            500, "an unexpected error occurred; it has been logged", instance=request.url.path
        )

    @app.exception_handler(OSError)
    async def _os_error(request: Request, error: OSError) -> JSONResponse:
        # asyncpg raises plain OSErrors (connection refused, reset) before SQLAlchemy wraps
        # them: an outage; any other (a file, a user's host) is a 500 like any fault. A
        # handler of its own, not only Exception's: Starlette re-raises what reaches that
        # one to the server, which would log a traceback for every refused request.
        return unexpected(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        return unexpected(request, error)
