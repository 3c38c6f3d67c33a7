"""A job's result wherever it is kept: in its row, or as an object when it was too big."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from fastapi import Request

from backburner.api.state import Services
from backburner.config import Settings
from backburner.errors import StorageUnavailable
from backburner.storage import ObjectMissing
from backburner.store import Job

log = logging.getLogger(__name__)


def public_base(request: Request, settings: Settings) -> str:
    """Where links should point: BACKBURNER_PUBLIC_URL, else the URL this request came to
    (its scheme from a trusted proxy's X-Forwarded-Proto)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return reached_at(request)[0]


def reached_at(request: Request) -> tuple[str, str | None]:
    """The URL this request came to, without a trailing slash, and its host name."""
    scope = request.scope
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    server = scope.get("server")
    return _reached_at(
        scope.get("scheme", "http"),
        None if server is None else tuple(server),
        host,
        scope.get("app_root_path", scope.get("root_path", "")),
    )


@functools.lru_cache(maxsize=64)
def _reached_at(
    scheme: str, server: tuple[Any, ...] | None, host: bytes | None, root_path: str
) -> tuple[str, str | None]:
    # What Starlette makes of a request's scope, remembered for the few places a server is
    # reached at: building its URL took ~60 us, 4% of a single create's time. A caller
    # sending other Host headers only makes misses, each costing what every request did.
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "root_path": root_path,
        "path": root_path or "/",
        "query_string": b"",
        "headers": [] if host is None else [(b"host", host)],
    }
    request = Request(scope)
    return str(request.base_url).rstrip("/"), request.url.hostname


async def result_bytes_of(svc: Services, job: Job) -> bytes:
    """The result as JSON bytes; StorageUnavailable (503) when its object cannot be read."""
    if job.result_object is None:
        return json.dumps(job.result, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        return await svc.objects.get(job.result_object)
    except (ObjectMissing, ValueError) as error:  # ValueError: it does not open (CannotOpen)
        log.error(
            "a job's result object is missing or does not open",
            extra={"job_id": job.id, "key": job.result_object, "error": str(error)},
        )
        raise StorageUnavailable(
            f"the result of job {job.id} is in object storage but cannot be read there"
        ) from None


async def result_of(svc: Services, job: Job) -> object:
    """The result as a value (the dashboard shows it)."""
    if job.result_object is None:
        return job.result
    return json.loads(await result_bytes_of(svc, job))
