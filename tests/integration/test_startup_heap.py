"""A process that serves until it ends sets aside what starting made (gc.freeze), so the
garbage collector's full collections stop pausing it; an app made over and over does not."""

from __future__ import annotations

import gc

import httpx

from backburner.config import Settings
from backburner.runtime import create_app


async def healthy(app: object) -> bool:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return (await client.get("/healthz")).status_code == 200


async def test_a_serving_process_freezes_what_starting_made(settings: Settings) -> None:
    gc.unfreeze()
    app = create_app(settings, embed_worker=True, migrate_on_start=False, freeze_heap=True)
    try:
        async with app.router.lifespan_context(app):
            # Everything alive once started, the app and its worker included.
            assert gc.get_freeze_count() > 10_000
            assert await healthy(app)
    finally:
        gc.unfreeze()  # this test process goes on making apps


async def test_an_app_made_in_a_test_freezes_nothing(settings: Settings) -> None:
    gc.unfreeze()
    app = create_app(settings, embed_worker=False, migrate_on_start=False)
    async with app.router.lifespan_context(app):
        assert await healthy(app)
        assert gc.get_freeze_count() == 0
