"""The HTTP API on an application: routers, problem+json errors, body limits, timing.

The application itself, its lifespan and what runs beside it are built by the composition
root (`backburner.runtime`), which also mounts the dashboard.
"""

from __future__ import annotations

from fastapi import FastAPI

from backburner.api.access import AccessLog
from backburner.api.docs import mount_docs
from backburner.api.headers import SecurityHeaders
from backburner.api.inputs import InputGuard
from backburner.api.limits import BodySizeLimit
from backburner.api.openapi import install_openapi
from backburner.api.problems import install_problem_handlers
from backburner.api.routes import (
    audit,
    documents,
    evals,
    feedback,
    jobs,
    meta,
    metrics,
    notifications,
    schedules,
    summaries,
    usage,
    webhooks,
)
from backburner.api.timing import ServerTiming
from backburner.config import Settings

MULTIPART_OVERHEAD = 1024 * 1024


def mount_api(app: FastAPI, settings: Settings) -> None:
    """Add the API's routes, error handlers and middleware to `app`."""
    install_problem_handlers(app)
    routers = (
        jobs.router,
        documents.router,
        summaries.router,
        meta.router,
        webhooks.router,
        usage.router,
        notifications.router,
        metrics.router,
        audit.router,
        evals.router,
        schedules.router,
        feedback.router,
    )
    for router in routers:
        app.include_router(router)
    mount_docs(app)
    install_openapi(app)

    def limit_for(path: str) -> int:
        if path.startswith("/api/documents") or path == "/documents/upload":
            return settings.max_document_bytes + MULTIPART_OVERHEAD
        if path == "/api/evals":  # a dataset sent with its documents' text (admins)
            return max(settings.max_request_bytes, settings.max_document_bytes)
        return settings.max_request_bytes

    # InputGuard reads JSON bodies through BodySizeLimit (added after it, so outside it).
    app.add_middleware(InputGuard)
    app.add_middleware(BodySizeLimit, limit_for=limit_for)
    app.add_middleware(ServerTiming)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
