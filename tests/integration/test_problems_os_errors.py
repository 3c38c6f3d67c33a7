"""An OSError in a request is a database outage (503, Retry-After) only when the database
driver raised it; one from a file or a user's host is a 500 that is logged, and never
makes the process tell of a database outage. The API's own problem handlers, on a small
app served on loopback (no route of ours raises a stray OSError on purpose)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from backburner.api.problems import install_problem_handlers
from backburner.errors import Unresolvable
from backburner.store.database import OutageLog
from tests.e2e.processes import free_port
from tests.servers import serve_on_loopback


def app_raising(tmp_path: Path, outages: OutageLog) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.services = SimpleNamespace(db=SimpleNamespace(outages=outages))

    @app.get("/file")
    async def file() -> None:
        (tmp_path / "not-there").read_bytes()

    @app.get("/host")
    async def host() -> None:
        raise Unresolvable("no.such.host.invalid")

    @app.get("/database")
    async def database() -> None:
        await asyncpg.connect(host="127.0.0.1", port=free_port(), user="x", timeout=5)

    return app


async def test_only_the_drivers_os_errors_read_as_a_database_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    outages = OutageLog()
    async with (
        serve_on_loopback(app_raising(tmp_path, outages)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        for path in ("/file", "/host"):
            answer = await client.get(path)
            assert answer.status_code == 500, (path, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert "Retry-After" not in answer.headers
            assert str(tmp_path) not in answer.text  # no detail of the fault leaks
        assert not outages.down
        assert not [r for r in caplog.records if "database" in r.getMessage()]
        assert [r.getMessage() for r in caplog.records].count("unhandled error") == 2
        # Answered by the app's handlers, not re-raised to the server to log again.
        assert not [r for r in caplog.records if r.name.startswith("uvicorn")]

        refused = await client.get("/database")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"
        assert refused.json()["detail"] == "the database is unavailable; try again shortly"
        assert outages.down
