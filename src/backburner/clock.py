"""Time, read in one place: `utcnow` is the default clock that services take as a
parameter, so tests can move time instead of waiting for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (what the store writes)."""
    return datetime.now(UTC)
