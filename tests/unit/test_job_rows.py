"""A job read from a row is the job its constructor makes, however it was built (a whole
row is set in one step; anything else goes through the dataclass's own checks)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from backburner.store import Job, JobStatus
from backburner.store.models import new_id

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def whole_row() -> dict[str, Any]:
    row: dict[str, Any] = {field.name: None for field in dataclasses.fields(Job)}
    row.update(
        id="j1",
        owner="alice",
        type="noop",
        status="running",
        payload={"n": 1},
        priority=0,
        run_at=NOW,
        created_at=NOW,
        updated_at=NOW,
        attempts=1,
        retry_count=0,
        max_attempts=3,
        timeout_seconds=60.0,
        cancel_requested=False,
        progress=0.0,
    )
    return row


def test_a_whole_row_makes_the_same_frozen_job_as_the_constructor() -> None:
    row = whole_row()
    job = Job.from_row(row)
    assert job == Job(**{**row, "status": JobStatus.RUNNING})
    assert job.status is JobStatus.RUNNING
    assert row["status"] == "running"  # the caller's row is left as it was
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.progress = 1.0  # type: ignore[misc]
    assert dataclasses.replace(job, progress=0.5).progress == 0.5


def test_a_row_without_the_later_columns_takes_their_defaults() -> None:
    row = whole_row()
    del row["origin"], row["result_bytes"]
    assert Job.from_row(row).origin is None


def test_a_row_with_a_column_the_job_does_not_know_is_refused() -> None:
    with pytest.raises(TypeError):
        Job.from_row({**whole_row(), "surprise": 1})


def test_a_new_id_is_a_uuid7_spelled_as_uuid_spells_it() -> None:
    made = [new_id() for _ in range(2000)]
    for text in made[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert abs((parsed.int >> 80) - time.time_ns() // 1_000_000) < 60_000  # its time, ms
    assert len(set(made)) == len(made)
    # Made in order of time: ids of later milliseconds sort after.
    earlier, later = new_id(), None
    while (later := new_id())[:13] == earlier[:13]:
        pass
    assert earlier < later
