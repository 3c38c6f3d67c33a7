"""Log set-up: one JSON object per line for machines, key=value lines for a terminal.

Code logs with `extra={"job_id": ..., ...}`; both formats carry those keys. Inside
`job_logging(...)` every line also carries the job's fields.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Attributes every record has, plus uvicorn's terminal-colour copy of the message.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


# The job a task is working on. asyncio copies the context into every task it starts, so a
# job's attempt and everything it awaits (its model calls, the rate limiter, a library's
# warning) log the job's fields without passing them along.
_job_fields: ContextVar[dict[str, Any] | None] = ContextVar("backburner_job_fields", default=None)


@contextlib.contextmanager
def job_logging(**fields: Any) -> Iterator[None]:
    """Every log line inside the block carries `fields` (job_id, type, attempt...)."""
    token = _job_fields.set({**(_job_fields.get() or {}), **fields})
    try:
        yield
    finally:
        _job_fields.reset(token)


class JobFields(logging.Filter):
    """Adds the current job's fields to a record (fields the call gave win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_job_fields.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        pairs = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{when} {record.levelname:<7} {record.getMessage()}" + (
            f"  {pairs}" if pairs else ""
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """`fmt`: "json", "text", or "auto" (text on a terminal, JSON otherwise)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(JobFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs per request are noise at INFO for a job service; keep warnings.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # The SDK's HTTP client logs every request at INFO: one line per poll of every job.
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
