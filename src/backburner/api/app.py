"""The FastAPI application: routers, problem+json errors, body limits, and (embedded mode)
the worker running in the same process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from backburner.api.auth import KeyCache
from backburner.api.estimates import EtaEstimator
from backburner.api.limits import BodySizeLimit
from backburner.api.live import EventHub
from backburner.api.problems import install_problem_handlers
from backburner.api.routes import (
    documents,
    jobs,
    meta,
    metrics,
    notifications,
    summaries,
    usage,
    webhooks,
)
from backburner.api.state import Services
from backburner.api.timing import ServerTiming
from backburner.config import Settings
from backburner.jobs.registry import JobRegistry, build_registry
from backburner.notify import Dispatcher
from backburner.providers import start_provider
from backburner.providers.base import Provider
from backburner.store import Database, migrate
from backburner.ui import routes as ui_routes
from backburner.worker import Worker

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 1024 * 1024


def create_app(
    settings: Settings,
    *,
    embed_worker: bool = True,
    migrate_on_start: bool = True,
    provider: Provider | None = None,
    registry: JobRegistry | None = None,
) -> FastAPI:
    """The service. With `embed_worker`, one process is the whole product (`serve`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, pool_size=settings.database_pool_size)
        await db.start_listening()
        if migrate_on_start:
            await migrate.upgrade(db)
        model_provider = provider or await start_provider(settings)
        job_registry = registry or build_registry(settings.plugins)
        app.state.services = Services(settings, db, job_registry, model_provider)
        app.state.key_cache = KeyCache(settings.auth_cache_seconds)
        app.state.eta = EtaEstimator(db)
        app.state.event_hub = EventHub(db)
        await app.state.event_hub.start()
        worker: Worker | None = None
        worker_task: asyncio.Task[None] | None = None
        if embed_worker:
            worker = Worker(db, job_registry, model_provider, settings)
            app.state.worker = worker
            worker_task = asyncio.create_task(worker.run(), name="embedded-worker")
            await _until_started(worker, worker_task)
        dispatcher: Dispatcher | None = None
        dispatcher_task: asyncio.Task[None] | None = None
        if not embed_worker and settings.notify_dispatcher:
            # An API-only process delivers notifications too (the embedded worker has its
            # own dispatcher): with many of them, deliveries spread over all.
            dispatcher = Dispatcher(db, settings)
            dispatcher_task = asyncio.create_task(dispatcher.run(), name="notifications")
        try:
            yield
        finally:
            if dispatcher is not None and dispatcher_task is not None:
                dispatcher.stop()
                await dispatcher_task
            if worker is not None and worker_task is not None:
                worker.stop()
                await worker_task
            await app.state.event_hub.stop()
            await model_provider.aclose()
            await db.close()

    app = FastAPI(
        title="Backburner",
        version="0.1.0",
        summary="Long AI work, off the request path: durable background jobs.",
        lifespan=lifespan,
    )
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
        ui_routes.router,
    )
    for router in routers:
        app.include_router(router)

    def limit_for(path: str) -> int:
        if path.startswith("/api/documents"):
            return settings.max_document_bytes + MULTIPART_OVERHEAD
        return settings.max_request_bytes

    app.add_middleware(BodySizeLimit, limit_for=limit_for)
    app.add_middleware(ServerTiming)
    return app


async def _until_started(worker: Worker, task: asyncio.Task[None]) -> None:
    started = asyncio.create_task(worker.started.wait())
    await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # raises the worker's start-up error
