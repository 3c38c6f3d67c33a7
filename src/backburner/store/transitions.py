"""The job state machine, written once: which event moves a job from which state to which.

Every statement that changes a job's status asks `next_state` (or builds its SQL from
`TRANSITIONS`), and writes one `job_events` row named by the event. The contract is the
one in docs/architecture.md:

    pending → running → succeeded | failed | canceled
    running → pending            (a scheduled retry, a shutdown hand-back, a reaped lease)
    pending → canceled           (cancelled before it started)
    failed | canceled → pending  (an explicit retry)

Events that do not move the status (progress, a cancel request, model calls) are in
`Event` too, so every row of the timeline is named from one vocabulary.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class Event(StrEnum):
    """What a `job_events` row records."""

    # Transitions
    CREATED = "created"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    RETRY_SCHEDULED = "retry_scheduled"
    RELEASED = "released"
    LEASE_EXPIRED = "lease_expired"
    RETRIED = "retried"
    # Facts about a job that leave its status as it is
    PROGRESS = "progress"
    CANCEL_REQUESTED = "cancel_requested"
    MODEL_CALL_SUBMITTED = "model_call_submitted"
    MODEL_CALL_FINISHED = "model_call_finished"


class IllegalTransition(ValueError):
    """A writer asked for a move the state machine does not allow (a bug, never input)."""


PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
SUCCEEDED, FAILED, CANCELED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED

# (status before, event) → status after. `None` before: the job does not exist yet.
TRANSITIONS: dict[tuple[JobStatus | None, Event], JobStatus] = {
    (None, Event.CREATED): PENDING,
    (PENDING, Event.STARTED): RUNNING,
    (PENDING, Event.CANCELED): CANCELED,
    (RUNNING, Event.SUCCEEDED): SUCCEEDED,
    (RUNNING, Event.FAILED): FAILED,
    (RUNNING, Event.CANCELED): CANCELED,
    (RUNNING, Event.RETRY_SCHEDULED): PENDING,
    (RUNNING, Event.RELEASED): PENDING,
    (RUNNING, Event.LEASE_EXPIRED): PENDING,
    (FAILED, Event.RETRIED): PENDING,
    (CANCELED, Event.RETRIED): PENDING,
}

# The events that end an attempt, and where each leaves the job.
ATTEMPT_ENDINGS: dict[Event, JobStatus] = {
    event: after for (before, event), after in TRANSITIONS.items() if before is RUNNING
}


def next_state(before: JobStatus | None, event: Event) -> JobStatus:
    """The status `event` moves a job in status `before` to; `IllegalTransition` if the
    state machine has no such move."""
    try:
        return TRANSITIONS[(before, event)]
    except KeyError:
        shown = before.value if before is not None else "nothing"
        raise IllegalTransition(f"no transition from {shown} on {event.value}") from None


def sources_of(event: Event) -> frozenset[JobStatus]:
    """The statuses from which `event` is allowed (for a statement's WHERE clause)."""
    return frozenset(
        before for (before, on), _ in TRANSITIONS.items() if on is event and before is not None
    )
