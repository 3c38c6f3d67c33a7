"""The job state machine is a contract (docs/architecture.md): every allowed move and the
event that names it, and every other move refused."""

import re
from itertools import product
from pathlib import Path

import pytest

from backburner.store import Event, JobStatus, Outcome
from backburner.store.transitions import (
    TRANSITIONS,
    IllegalTransition,
    next_state,
    sources_of,
)

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"

P, R = JobStatus.PENDING, JobStatus.RUNNING
S, F, C = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED

CONTRACT = {
    (None, Event.CREATED): P,
    (P, Event.STARTED): R,
    (P, Event.CANCELED): C,
    (R, Event.SUCCEEDED): S,
    (R, Event.FAILED): F,
    (R, Event.CANCELED): C,
    (R, Event.RETRY_SCHEDULED): P,
    (R, Event.RELEASED): P,
    (R, Event.LEASE_EXPIRED): P,
    (F, Event.RETRIED): P,
    (C, Event.RETRIED): P,
}


def test_every_allowed_move_is_the_contract() -> None:
    assert TRANSITIONS == CONTRACT
    for (before, event), after in CONTRACT.items():
        assert next_state(before, event) is after


@pytest.mark.parametrize(
    ("before", "event"),
    [
        (before, event)
        for before, event in product([None, *JobStatus], Event)
        if (before, event) not in CONTRACT
    ],
)
def test_every_other_move_is_refused(before: JobStatus | None, event: Event) -> None:
    with pytest.raises(IllegalTransition):
        next_state(before, event)


def test_a_terminal_state_changes_only_by_an_explicit_retry() -> None:
    for terminal in (S, F, C):
        allowed = {event for (before, event) in CONTRACT if before is terminal}
        assert allowed <= {Event.RETRIED}
    assert sources_of(Event.RETRIED) == {F, C}


def test_an_outcome_is_only_an_event_that_ends_an_attempt() -> None:
    assert Outcome("j", 1, Event.RETRY_SCHEDULED).status is P
    assert Outcome("j", 1, Event.SUCCEEDED).status is S
    for event in (Event.CREATED, Event.STARTED, Event.RETRIED, Event.PROGRESS):
        with pytest.raises(IllegalTransition):
            Outcome("j", 1, event)


def test_the_documented_table_is_the_table_in_the_code() -> None:
    # docs/architecture.md lists the transitions as "| before | event | after |" rows.
    text = ARCHITECTURE.read_text()
    section = text.split("## Job states", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `?(\w+|—)`? \| `(\w+)` \| `(\w+)` \|$", section, re.M)
    documented = {
        (None if before == "—" else JobStatus(before), Event(event)): JobStatus(after)
        for before, event, after in rows
    }
    assert documented == CONTRACT
