"""The keys a database has seen, and rotation.

At start-up `check_keys` compares the keyring with the keys that sealed data here (each
recorded with a check value it sealed), so a missing or wrong key stops a process before
it writes anything. `rotate` re-seals, in batches, every value not sealed with the first
key (values from before encryption too); it is resumable, since what it has done is
exactly what it no longer finds. When nothing is left under an older key, that key is
retired and need no longer be given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backburner.store.audit import Action, Actor, Target, record
from backburner.store.database import Database
from backburner.store.schema import encryption_keys, metadata
from backburner.store.sealed import SealedJson, SealedText, Sealer

CANARY = b"backburner"


def _canary_place(key_id: str) -> str:
    return f"encryption_keys.{key_id}"


def sealed_columns() -> list[sa.Column[Any]]:
    """Every column encrypted at rest, in a stable order."""
    return [
        column
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, SealedJson | SealedText)
    ]


def column_name(column: sa.Column[Any]) -> str:
    return f"{column.table.name}.{column.name}"


@dataclass(frozen=True)
class KeyCheck:
    """What the database says of a keyring: ids of keys that sealed data here and are not
    given (`missing`), and ids given with material other than what sealed data here
    (`wrong`)."""

    missing: list[str]
    wrong: list[str]
    schema_ready: bool  # the table of keys exists (the schema is migrated)
    in_use: list[str] = field(default_factory=list)  # recorded and not retired

    def needs_recording(self, key_id: str) -> bool:
        return self.schema_ready and key_id not in self.in_use

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong


async def check_keys(db: Database, sealer: Sealer) -> KeyCheck:
    async with db.read() as conn:
        if not await conn.run_sync(lambda sync: sa.inspect(sync).has_table(encryption_keys.name)):
            return KeyCheck([], [], schema_ready=False)  # not migrated yet: nothing sealed
        rows = (await conn.execute(sa.select(encryption_keys))).mappings().all()
    missing: list[str] = []
    wrong: list[str] = []
    for row in rows:
        if row["key_id"] not in sealer.key_ids:
            if row["retired_at"] is None:
                missing.append(row["key_id"])
            continue
        try:
            opened = sealer.open(row["check_value"], _canary_place(row["key_id"]))
        except ValueError:
            opened = None
        if opened != CANARY:
            wrong.append(row["key_id"])
    in_use = [row["key_id"] for row in rows if row["retired_at"] is None]
    return KeyCheck(missing, wrong, schema_ready=True, in_use=in_use)


async def remember_key(db: Database, sealer: Sealer, now: datetime) -> None:
    """Record the sealing key (once), before anything is sealed with it."""
    key_id = sealer.primary_id
    async with db.write() as tx:
        inserted = await tx.conn.execute(
            db.insert_or_ignore(
                encryption_keys,
                {
                    "key_id": key_id,
                    "check_value": sealer.seal(CANARY, _canary_place(key_id)),
                    "first_used_at": now,
                    "retired_at": None,
                },
            )
        )
        if inserted.rowcount:
            await record(
                tx.conn,
                Actor("system"),
                Action.ENCRYPTION_KEY_ADDED,
                Target("encryption_key", key_id, None),
                now,
            )
        # A key that was retired and is sealing again is in use again.
        await tx.conn.execute(
            sa.update(encryption_keys)
            .where(encryption_keys.c.key_id == key_id, encryption_keys.c.retired_at.is_not(None))
            .values(retired_at=None)
        )


# --- Rotation -------------------------------------------------------------------------------


def _stored(column: sa.Column[Any]) -> sa.ColumnElement[str]:
    """The column as stored, not opened: sealed text (a JSON string of it in JSON columns)."""
    return sa.cast(column, sa.Text)


def not_sealed_with_first_key(column: sa.Column[Any], sealer: Sealer) -> sa.ColumnElement[bool]:
    prefix = sealer.sealed_prefix(sealer.primary_id)
    if isinstance(column.type, SealedJson):
        prefix = '"' + prefix
    stored = _stored(column)
    return sa.and_(
        column.is_not(None),
        stored != "null",
        sa.not_(stored.startswith(prefix, autoescape=True)),
    )


def _keys_of(column: sa.Column[Any]) -> list[sa.Column[Any]]:
    table = column.table
    assert isinstance(table, sa.Table)
    return list(table.primary_key.columns)


async def unsealed_rows(
    conn: AsyncConnection,
    column: sa.Column[Any],
    sealer: Sealer,
    after: tuple[Any, ...] | None,
    limit: int,
) -> Sequence[Any]:
    """Up to `limit` rows of `column` not sealed with the first key, by primary key after
    `after`: their key, their value as stored and their value opened."""
    keys = _keys_of(column)
    query = sa.select(*keys, _stored(column).label("stored"), column.label("value")).where(
        not_sealed_with_first_key(column, sealer)
    )
    if after is not None:
        query = query.where(sa.tuple_(*keys) > sa.tuple_(*(sa.literal(v) for v in after)))
    return (await conn.execute(query.order_by(*keys).limit(limit))).mappings().all()


async def reseal(conn: AsyncConnection, column: sa.Column[Any], rows: Sequence[Any]) -> int:
    """Write each row's value again (so sealed with the first key), unless it changed since
    it was read: a newer write, sealed with the first key by its writer, is never undone."""
    keys = _keys_of(column)
    resealed = 0
    for row in rows:
        result = await conn.execute(
            sa.update(column.table)
            .where(*(key == row[key.name] for key in keys), _stored(column) == row["stored"])
            .values({column.name: row["value"]})
        )
        resealed += result.rowcount or 0
    return resealed


async def _reseal_batch(
    db: Database, column: sa.Column[Any], sealer: Sealer, after: tuple[Any, ...] | None, limit: int
) -> tuple[int, tuple[Any, ...] | None]:
    """One batch in one transaction: how many were re-sealed, and the key to go on after
    (None when the column is done)."""
    async with db.write() as tx:
        rows = await unsealed_rows(tx.conn, column, sealer, after, limit)
        resealed = await reseal(tx.conn, column, rows)
    last = tuple(rows[-1][key.name] for key in _keys_of(column)) if len(rows) == limit else None
    return resealed, last


async def left_to_rotate(db: Database, sealer: Sealer) -> dict[str, int]:
    """Per column, the values not sealed with the first key."""
    counts: dict[str, int] = {}
    async with db.read() as conn:
        for column in sealed_columns():
            query = sa.select(sa.func.count()).where(not_sealed_with_first_key(column, sealer))
            counts[column_name(column)] = int((await conn.execute(query)).scalar_one())
    return counts


async def rotate(
    db: Database,
    sealer: Sealer,
    *,
    now: Callable[[], datetime],
    batch_size: int = 500,
    on_progress: Callable[[str, int], None] = lambda _column, _count: None,
) -> dict[str, int]:
    """Seal every value with the first key, a batch per transaction (short locks; workers
    keep running). Returns what is left per column: nothing, unless values were written
    meanwhile by a process still sealing with an older key. When nothing is left, the
    other keys are retired."""
    for column in sealed_columns():
        after: tuple[Any, ...] | None = None
        while True:
            resealed, after = await _reseal_batch(db, column, sealer, after, batch_size)
            on_progress(column_name(column), resealed)
            if after is None:
                break
    left = await left_to_rotate(db, sealer)
    if not any(left.values()):
        await _retire_others(db, sealer, now())
    return left


async def _retire_others(db: Database, sealer: Sealer, now: datetime) -> None:
    async with db.write() as tx:
        retired = (
            (
                await tx.conn.execute(
                    sa.update(encryption_keys)
                    .where(
                        encryption_keys.c.key_id != sealer.primary_id,
                        encryption_keys.c.retired_at.is_(None),
                    )
                    .values(retired_at=now)
                    .returning(encryption_keys.c.key_id)
                )
            )
            .scalars()
            .all()
        )
        for key_id in retired:
            await record(
                tx.conn,
                Actor("system", user_agent="backburner cli"),
                Action.ENCRYPTION_KEY_RETIRED,
                Target("encryption_key", key_id, None),
                now,
            )
