"""The store owns every table and every SQL statement. Other rooms call its named
functions (`claim_jobs`, `finish_jobs`, ...) and never build queries themselves."""

from backburner.store.database import (
    CHANNEL_CANCEL,
    CHANNEL_JOBS,
    CHANNEL_OUTBOX,
    CHANNEL_RESPONSES,
    Database,
)
from backburner.store.models import (
    SUBSTATE_WAITING_PROVIDER,
    TERMINAL_STATUSES,
    ApiKey,
    Document,
    Job,
    JobEvent,
    JobStatus,
    NewJob,
    Outcome,
    ProviderCall,
    Role,
    TypeHistory,
    new_id,
)

__all__ = [
    "CHANNEL_CANCEL",
    "CHANNEL_JOBS",
    "CHANNEL_OUTBOX",
    "CHANNEL_RESPONSES",
    "SUBSTATE_WAITING_PROVIDER",
    "TERMINAL_STATUSES",
    "ApiKey",
    "Database",
    "Document",
    "Job",
    "JobEvent",
    "JobStatus",
    "NewJob",
    "Outcome",
    "ProviderCall",
    "Role",
    "TypeHistory",
    "new_id",
]
