"""An outage of the database is told once, however many loops fail during it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError

from backburner.errors import Unresolvable
from backburner.store.database import OutageLog, is_outage
from tests.e2e.processes import free_port


def refused_by_the_database() -> OSError:
    """What asyncpg raises connecting to a server that is not there: a raw OSError."""

    async def connect() -> OSError:
        try:
            await asyncpg.connect(host="127.0.0.1", port=free_port(), user="x", timeout=5)
        except OSError as error:
            return error
        raise AssertionError("a connection to a closed port was made")

    return asyncio.run(connect())


def told(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "backburner.store.database"]


def test_an_outage_is_told_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outages = OutageLog()
    refused = refused_by_the_database()
    assert all(outages.absorbed(refused, where) for where in ("claim", "heartbeat", "claim"))
    assert outages.down
    outages.connected()
    outages.connected()  # the pool growing again says nothing
    assert told(caplog) == [
        "database unreachable; retrying until it is back",
        "database reachable again",
    ]
    # Dropped again right after the reconnect: the same outage, not a new story.
    assert outages.absorbed(refused, "claim")
    outages.connected()
    assert len(told(caplog)) == 2


def test_other_errors_are_the_callers_to_log() -> None:
    outages = OutageLog()
    assert not outages.absorbed(ValueError("a bug"), "claim")
    duplicate = IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert not is_outage(duplicate)
    assert not outages.down


def test_an_os_error_from_elsewhere_is_not_the_databases_outage(tmp_path: Path) -> None:
    """A file that is not there, a user's host that does not resolve, a timeout of some
    other wait: raw OSErrors too, but not the driver's; they are bugs or their own
    failures, never "database unreachable" (nor a 503 saying so)."""
    outages = OutageLog()
    try:
        (tmp_path / "missing").read_bytes()
    except OSError as error:
        missing = error
    others = [missing, Unresolvable("no.such.host.invalid"), TimeoutError("another wait")]
    for error in others:
        assert not is_outage(error), error
        assert not outages.absorbed(error, "request")
    assert not outages.down
    # The driver's own, raw or as the cause of another error, is.
    refused = refused_by_the_database()
    assert is_outage(refused)
    wrapped = RuntimeError("while claiming")
    wrapped.__cause__ = refused
    assert is_outage(wrapped)
