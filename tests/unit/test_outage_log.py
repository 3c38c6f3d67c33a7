"""An outage of the database is told once, however many loops fail during it."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError

from backburner.store.database import OutageLog, is_outage


def told(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "backburner.store.database"]


def test_an_outage_is_told_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outages = OutageLog()
    refused = ConnectionRefusedError(111, "Connection refused")
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
