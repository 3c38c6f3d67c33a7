"""Columns encrypted at rest, and what the store does with the keys.

A column typed `SealedJson` or `SealedText` is sealed on its way in and opened on its way
out by the keyring of the database it travels through (`Database(url, sealer=…)`); the
cipher itself is `privacy.sealing`'s, reached through the `Sealer` protocol so the store
does not depend on it. What is queried (ids, status, type, owner, times) stays plain.

A value written before encryption was turned on still reads (it is not sealed);
`encryption.rotate` seals it, and moves values sealed with an older key to the first key.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

# The attribute of each engine's dialect that carries its database's keyring. A column
# type is handed only the dialect, and every engine has a dialect of its own, so two
# databases in one process keep their own keys.
_SEALER_ATTRIBUTE = "backburner_sealer"


class Sealer(Protocol):
    """What the store needs of a keyring (`privacy.sealing.Keyring` is one)."""

    @property
    def primary_id(self) -> str: ...

    @property
    def key_ids(self) -> list[str]: ...

    def seal(self, plaintext: bytes, place: str) -> str: ...

    def open(self, sealed: str, place: str) -> bytes: ...

    def is_sealed(self, stored: str) -> bool: ...

    def sealed_prefix(self, key_id: str) -> str: ...

    # Objects (backburner.storage) are sealed by the same keys, as raw bytes.
    def seal_blob(self, plaintext: bytes, place: str) -> bytes: ...

    def open_blob(self, sealed: bytes, place: str) -> bytes: ...

    def blob_key_id(self, sealed: bytes) -> str | None: ...


class NoKeys(RuntimeError):
    """A sealed column used through a database opened without keys."""


def attach(dialect: Dialect, sealer: Sealer | None) -> None:
    setattr(dialect, _SEALER_ATTRIBUTE, sealer)


def sealer_of(dialect: Dialect) -> Sealer:
    return sealer_or_fail(getattr(dialect, _SEALER_ATTRIBUTE, None))


def sealer_or_fail(sealer: Sealer | None) -> Sealer:
    if sealer is None:  # never write plaintext for want of a key
        raise NoKeys("this database was opened without encryption keys")
    return sealer


class EncodedJson(bytes):
    """A value already encoded as compact JSON (UTF-8): sealed as it is, not encoded again.
    The worker encodes a result once to weigh it (inline or object) and hands this down."""


def _dumps(value: Any) -> bytes:
    if isinstance(value, EncodedJson):
        return bytes(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def seal_json(sealer: Sealer, value: Any, place: str) -> str | None:
    return None if value is None else sealer.seal(_dumps(value), place)


def open_json(sealer: Sealer, stored: Any, place: str) -> Any:
    """A JSON column's value as read: sealed text opened, anything else (written before
    encryption) as it is."""
    if isinstance(stored, str) and sealer.is_sealed(stored):
        # Written as UTF-8 (`_dumps`): decoded as such, without json's guessing of the
        # encoding of bytes.
        return json.loads(sealer.open(stored, place).decode())
    return stored


def seal_text(sealer: Sealer, value: str | None, place: str) -> str | None:
    return None if value is None else sealer.seal(value.encode(), place)


def open_text(sealer: Sealer, stored: str, place: str) -> str:
    """A text column's value as read: sealed text opened, plain text (written before
    encryption) as it is."""
    return sealer.open(stored, place).decode() if sealer.is_sealed(stored) else stored


class SealedJson(sa.TypeDecorator[Any]):
    """A JSON value sealed as a whole; the column stays JSON (JSONB on PostgreSQL), holding
    the sealed text as a JSON string, so values from before encryption still read."""

    impl = sa.JSON
    cache_ok = True

    def __init__(self, place: str, *, none_as_null: bool = False) -> None:
        super().__init__(none_as_null=none_as_null)
        self.place = place
        self.none_as_null = none_as_null
        # As JSON does: None is JSON null unless none_as_null (then SQL NULL).
        self.should_evaluate_none = not none_as_null

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        kind = JSONB if dialect.name == "postgresql" else sa.JSON
        return dialect.type_descriptor(kind(none_as_null=self.none_as_null))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return seal_json(sealer_of(dialect), value, self.place)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else open_json(sealer_of(dialect), value, self.place)


# The collation of every text column on PostgreSQL (schema.String).
BYTEWISE = "C"


class SealedText(sa.TypeDecorator[str]):
    """Text sealed on its way in."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        # Bytewise on PostgreSQL, as every text column (schema.String).
        return sa.Text(collation=BYTEWISE) if dialect.name == "postgresql" else sa.Text()

    def __init__(self, place: str) -> None:
        super().__init__()
        self.place = place

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return seal_text(sealer_of(dialect), value, self.place)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else open_text(sealer_of(dialect), value, self.place)


# --- For statements written as PostgreSQL text (`postgres.py`), which bypass column types --


def seal_for(column: sa.Column[Any], sealer: Sealer, value: Any) -> str | None:
    """A value as `column` stores it, written as text: JSON text for a JSON column (the
    statement casts it to jsonb), the sealed text for a text column."""
    kind = column.type
    if isinstance(kind, SealedJson):
        return None if value is None else json.dumps(seal_json(sealer, value, kind.place))
    if isinstance(kind, SealedText):
        return seal_text(sealer, value, kind.place)
    raise TypeError(f"{column} is not sealed")


def open_for(column: sa.Column[Any], sealer: Sealer, value: Any) -> Any:
    """A value of `column` as read (JSON already decoded), opened."""
    kind = column.type
    if value is None:
        return None
    if isinstance(kind, SealedJson):
        return open_json(sealer, value, kind.place)
    if isinstance(kind, SealedText):
        return open_text(sealer, value, kind.place)
    return value
