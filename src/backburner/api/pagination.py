"""Cursors the API hands out for keyset pagination: opaque to clients, a job id to us."""

from __future__ import annotations

import base64
import binascii
import uuid

from backburner.errors import FieldProblem, InvalidRequest


def encode_cursor(job_id: str) -> str:
    return base64.urlsafe_b64encode(job_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The job id a cursor names; a 422 naming the `cursor` parameter if it is not one of
    ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        return str(uuid.UUID(decoded))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            "cursor is not one this API handed out",
            errors=[FieldProblem(("query", "cursor"), "malformed cursor")],
        ) from None


def encode_position(row_id: int) -> str:
    """A cursor naming a row by its number (the audit trail's ids)."""
    return encode_cursor(f"n{row_id}")


def decode_position(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        if not decoded.startswith("n") or not decoded[1:].isdigit() or len(decoded) > 20:
            raise ValueError(decoded)
        return int(decoded[1:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            "cursor is not one this API handed out",
            errors=[FieldProblem(("query", "cursor"), "malformed cursor")],
        ) from None
