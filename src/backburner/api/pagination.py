"""Cursors the API hands out for keyset pagination: opaque to clients, a job id to us."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from typing import TypeVar

from backburner.errors import FieldProblem, InvalidRequest

T = TypeVar("T")


def encode_cursor(job_id: str) -> str:
    return base64.urlsafe_b64encode(job_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The job id a cursor names; a 422 naming the `cursor` parameter if it is not one of
    ours."""
    return _decoded(cursor, lambda text: str(uuid.UUID(text)))


def decode_text_cursor(cursor: str, pattern: str) -> str:
    """The id a cursor names, if it matches the ids' pattern (a 422 otherwise)."""

    def read(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise ValueError(text)
        return text

    return _decoded(cursor, read)


def encode_position(row_id: int) -> str:
    """A cursor naming a row by its number (the audit trail's ids)."""
    return encode_cursor(f"n{row_id}")


def decode_position(cursor: str) -> int:
    return _decoded(cursor, _position)


def _position(text: str) -> int:
    if not text.startswith("n") or not text[1:].isdigit() or len(text) > 20:
        raise ValueError(text)
    return int(text[1:])


def _decoded(cursor: str, read: Callable[[str], T]) -> T:
    """What `read` makes of the cursor's text; a 422 if it is not a cursor of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return read(base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            "cursor is not one this API handed out",
            errors=[FieldProblem(("query", "cursor"), "malformed cursor")],
        ) from None
