"""A job's result wherever it is kept: in its row, or as an object when it was too big."""

from __future__ import annotations

import json
import logging

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
    return (settings.public_url or str(request.base_url)).rstrip("/")


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
