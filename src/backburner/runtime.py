"""The composition root: what each kind of process runs, built and supervised in one place.

- `create_app` — `backburner serve`: the API and the dashboard, and (embedded) a worker;
  a notification dispatcher either way.
- `run_worker` — `backburner worker`: a worker and a dispatcher.
- `run_dispatcher` — `backburner dispatcher`: a dispatcher alone.

Every process reaches its database through `backburner.opening.open_database` (the keys
checked before anything is written); that module is apart so that a command which only
opens the database does not import the API, the dashboard and the worker.

The long-running services of a process run under one `Supervisor`, in one task group: a
crash of any of them is logged at once, the others are stopped gracefully, and the
process is told (`on_crash`), so a supervisor outside (systemd, Kubernetes) can restart it.
This is the one module that may import every room.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from fastapi import FastAPI

from backburner.api.app import mount_api
from backburner.api.auth import KeyCache
from backburner.api.estimates import EtaEstimator
from backburner.api.live import EventHub
from backburner.api.state import Services
from backburner.api.throttle import KeyThrottle, SignInGuard
from backburner.config import Settings
from backburner.jobs.parsing import MIB, DocumentParser, ParseLimits
from backburner.jobs.registry import JobRegistry, build_registry
from backburner.notify import Dispatcher
from backburner.opening import open_database, storage_for
from backburner.providers import start_provider
from backburner.providers.base import Provider
from backburner.storage import Objects
from backburner.store import Database
from backburner.ui import routes as ui_routes
from backburner.worker import Worker

log = logging.getLogger(__name__)


class Service(Protocol):
    """A long-running part of a process: runs until stopped, and stops gracefully."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class ServiceCrashed(RuntimeError):
    """An embedded service ended with an error (logged where it happened)."""


class Supervisor:
    """Runs services side by side until `stop()` or until one of them crashes."""

    def __init__(
        self, services: Sequence[tuple[str, Service]], *, on_crash: Callable[[], None] | None = None
    ) -> None:
        self.services = list(services)
        self.on_crash = on_crash
        self.crashed: list[str] = []
        self._stopping = False

    def stop(self) -> None:
        """Ask every service to stop (idempotent; safe from a signal handler)."""
        self._stopping = True
        for _, service in self.services:
            service.stop()

    async def run(self) -> None:
        """Until every service has returned; `ServiceCrashed` if one of them failed."""
        async with asyncio.TaskGroup() as group:
            for name, service in self.services:
                group.create_task(self._watch(name, service), name=name)
        if self.crashed:
            raise ServiceCrashed(f"embedded service crashed: {', '.join(self.crashed)}")

    async def _watch(self, name: str, service: Service) -> None:
        try:
            await service.run()
        except Exception:
            # Seen at once, not at shutdown: the others stop gracefully, and whoever runs
            # this process hears of it.
            log.critical("embedded service crashed", extra={"service": name}, exc_info=True)
            self.crashed.append(name)
            self.stop()
            if self.on_crash is not None:
                self.on_crash()
            return
        if not self._stopping:
            log.critical("embedded service ended by itself", extra={"service": name})
            self.crashed.append(name)
            self.stop()
            if self.on_crash is not None:
                self.on_crash()


def _process_services(
    db: Database,
    settings: Settings,
    *,
    worker: Worker | None,
    objects: Objects,
) -> list[tuple[str, Service]]:
    services: list[tuple[str, Service]] = []
    if worker is not None:
        services.append(("worker", worker))
    if settings.notify_dispatcher:
        # Notifications owed by finished jobs go out from every process that runs one:
        # with many processes, deliveries spread over all of them.
        services.append(("notifications", Dispatcher(db, settings, objects=objects)))
    return services


@contextlib.asynccontextmanager
async def supervised(supervisor: Supervisor, worker: Worker | None) -> AsyncIterator[None]:
    """Run the supervisor's services for the length of the block; the block starts once
    the worker (if any) is claiming, or raises if a service crashed while starting."""
    task = asyncio.create_task(supervisor.run(), name="embedded-services")
    if worker is not None:
        started = asyncio.create_task(worker.started.wait())
        await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if task.done():
            task.result()  # raises the start-up error
    try:
        yield
    finally:
        supervisor.stop()
        with contextlib.suppress(ServiceCrashed):  # logged when it happened
            await task


# Container objects allocated (net of those freed) before Python's youngest collection
# runs; CPython's default is 700. A worker with 10,000 jobs waiting holds ~1.4 million
# objects for them, and at the default spent 11.8-12.6 s collecting while it submitted
# them (25 full collections of up to 0.94 s, each a stall for everything in the process):
# 2.7 s at 10,000 (2 full collections), in bench/inflight.py's webhook run on 2 cores.
YOUNG_COLLECTION_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Tune the garbage collector for a process that serves until it ends (not for one
    that makes apps over and over, as tests do). What starting made (modules, the app, the
    registry, pools, the provider's client) is collected once and frozen (gc.freeze), so
    full collections stop walking it: an API process under load paused ~170-220 ms in
    each, stalling every request in flight (p99 of POST /api/jobs at 16 connections
    130-190 ms before, 55-80 ms after). Young collections run less often
    (YOUNG_COLLECTION_THRESHOLD), so the objects of jobs that wait for minutes are not
    walked again and again on their way to the oldest generation."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)


def create_app(
    settings: Settings,
    *,
    embed_worker: bool = True,
    migrate_on_start: bool = True,
    provider: Provider | None = None,
    registry: JobRegistry | None = None,
    on_crash: Callable[[], None] | None = None,
    tune_gc: bool = False,
) -> FastAPI:
    """The service. With `embed_worker`, one process is the whole product (`serve`).
    `on_crash` is called if an embedded service crashes (`serve` ends the process).
    `tune_gc`: tune_garbage_collector() once started (a process that serves until it
    ends)."""
    given = settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # From here on `settings` are the given ones with their sealed secrets opened.
        db, settings = await open_database(
            given, upgrade=migrate_on_start, listen=True, pool_size=given.database_pool_size
        )
        model_provider = provider or await start_provider(settings)
        job_registry = registry or build_registry(settings.plugins)
        parser = DocumentParser(parse_limits(settings), settings.document_parse_processes or None)
        objects = storage_for(settings, db)
        services = Services(settings, db, job_registry, model_provider, parser, objects)
        app.state.services = services
        app.state.key_cache = KeyCache(settings.auth_cache_seconds)
        app.state.key_throttle = KeyThrottle(
            db, settings.api_requests_per_minute, settings.auth_cache_seconds
        )
        app.state.sign_in_guard = SignInGuard(settings.auth_failures_per_minute)
        app.state.eta = EtaEstimator(db)
        app.state.event_hub = EventHub(db)
        await app.state.event_hub.start()
        worker = (
            Worker(db, job_registry, model_provider, settings, objects=objects)
            if embed_worker
            else None
        )
        app.state.worker = worker

        def crashed() -> None:
            services.crashed = supervisor.crashed  # /readyz answers 503 from now on
            if on_crash is not None:
                on_crash()

        supervisor = Supervisor(
            _process_services(db, settings, worker=worker, objects=objects), on_crash=crashed
        )
        try:
            async with supervised(supervisor, worker):
                if tune_gc:
                    tune_garbage_collector()
                yield
        finally:
            await app.state.event_hub.stop()
            await parser.close()
            await model_provider.aclose()
            await db.close()

    app = FastAPI(
        title="Backburner",
        version="0.1.0",
        summary="Long AI work, off the request path: durable background jobs.",
        lifespan=lifespan,
        # /docs is served from packaged assets (api/docs.py), not FastAPI's CDN page.
        docs_url=None,
        redoc_url=None,
    )
    mount_api(app, settings)
    app.include_router(ui_routes.router)
    return app


def app_from_environment() -> FastAPI:
    """The app of one of `serve --workers N`'s API processes: each reads the settings
    from the environment (the command put its options there) and serves the API only."""
    return create_app(Settings(), embed_worker=False, migrate_on_start=False, tune_gc=True)


def parse_limits(settings: Settings) -> ParseLimits:
    return ParseLimits(
        seconds=settings.document_parse_seconds,
        memory_bytes=settings.document_parse_memory_mb * MIB,
        pages=settings.document_max_pages,
        decompressed_bytes=settings.document_max_stream_mb * MIB,
        ocr_languages=settings.ocr_languages,
        ocr_max_pages=settings.ocr_max_pages,
        ocr_program=settings.ocr_program,
    )


async def run_worker(
    db: Database,
    settings: Settings,
    *,
    install_stop: Callable[[Callable[[], None]], None],
) -> None:
    """`backburner worker`: a worker and (unless turned off) a dispatcher, until stopped;
    `ServiceCrashed` if one of them crashed. `install_stop` hooks `stop` to signals."""
    provider = await start_provider(settings)
    try:
        objects = storage_for(settings, db)
        worker = Worker(db, build_registry(settings.plugins), provider, settings, objects=objects)
        supervisor = Supervisor(_process_services(db, settings, worker=worker, objects=objects))
        install_stop(supervisor.stop)
        tune_garbage_collector()
        await supervisor.run()
    finally:
        await provider.aclose()


async def run_dispatcher(
    db: Database,
    settings: Settings,
    *,
    install_stop: Callable[[Callable[[], None]], None],
) -> None:
    """`backburner dispatcher`: deliver notifications only, until stopped."""
    objects = storage_for(settings, db)
    supervisor = Supervisor([("notifications", Dispatcher(db, settings, objects=objects))])
    install_stop(supervisor.stop)
    tune_garbage_collector()
    await supervisor.run()
