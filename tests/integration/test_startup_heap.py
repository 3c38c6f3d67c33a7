"""A process that serves until it ends tunes the garbage collector once started: what
starting made is frozen (full collections stop walking it) and young collections run less
often. An app made over and over, as in tests, leaves the collector alone."""

from __future__ import annotations

import gc

import httpx

from backburner.config import Settings
from backburner.runtime import YOUNG_COLLECTION_THRESHOLD, create_app


async def healthy(app: object) -> bool:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return (await client.get("/healthz")).status_code == 200


async def test_a_serving_process_sets_aside_what_starting_made(settings: Settings) -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    app = create_app(settings, embed_worker=True, migrate_on_start=False, tune_gc=True)
    try:
        async with app.router.lifespan_context(app):
            # Everything alive once started, the app and its worker included.
            assert gc.get_freeze_count() > 10_000
            assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
            assert await healthy(app)
    finally:  # this test process goes on making apps
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_an_app_made_in_a_test_leaves_the_collector_alone(settings: Settings) -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    app = create_app(settings, embed_worker=False, migrate_on_start=False)
    async with app.router.lifespan_context(app):
        assert await healthy(app)
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == thresholds
