"""The store owns every table and every SQL statement. Other rooms call its named
functions and never build queries themselves. It is split by who asks:

- `jobs`: the clients' commands (enqueue, read, list, cancel, retry);
- `queue`: the worker's side (claim, leases, progress, finish, reap);
- `positions`: the ETA's reads;
- `steps`, `usage`, `ratelimits`: memoised steps and model calls, spending, the shared
  rate limiter's buckets;
- `outbox` and `channels`: notifications owed and sent, and owners' channels;
- `events`, `documents`, `keys`, `workers`, `webhooks`, `ops`, `stats`;
- `transitions`: the job state machine, which every writer of a status uses.
"""

from backburner.store.database import (
    CHANNEL_CANCEL,
    CHANNEL_JOBS,
    CHANNEL_OUTBOX,
    CHANNEL_RESPONSES,
    Database,
)
from backburner.store.models import (
    OUTSTANDING_CALL_STATUSES,
    SUBSTATE_WAITING_PROVIDER,
    ApiKey,
    Document,
    Job,
    JobEvent,
    NewJob,
    Outcome,
    ProviderCall,
    Role,
    TypeHistory,
    new_id,
)
from backburner.store.transitions import TERMINAL_STATUSES, Event, JobStatus

__all__ = [
    "CHANNEL_CANCEL",
    "CHANNEL_JOBS",
    "CHANNEL_OUTBOX",
    "CHANNEL_RESPONSES",
    "OUTSTANDING_CALL_STATUSES",
    "SUBSTATE_WAITING_PROVIDER",
    "TERMINAL_STATUSES",
    "ApiKey",
    "Database",
    "Document",
    "Event",
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
