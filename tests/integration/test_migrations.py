"""Migrations create exactly the schema the code queries, and report being current."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from backburner.store import Database, migrate
from backburner.store.schema import metadata

# Alembic cannot reflect expression indexes (`priority DESC`); checked by name below.
EXPRESSION_INDEXES = {"ix_jobs_pending_queue"}


def _compared(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


async def test_migrated_schema_matches_the_code(db: Database) -> None:
    def diff(sync_conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"include_object": _compared})
        return list(compare_metadata(context, metadata))

    def index_names(sync_conn: sa.Connection) -> set[str]:
        return {ix["name"] for ix in sa.inspect(sync_conn).get_indexes("jobs")}

    async with db.read() as conn:
        differences = await conn.run_sync(diff)
        indexes = await conn.run_sync(index_names)
    assert differences == []
    assert indexes >= EXPRESSION_INDEXES


async def test_upgrade_is_idempotent_and_current(db: Database) -> None:
    await migrate.upgrade(db)
    assert await migrate.is_current(db)
    assert await migrate.current_revision(db) == migrate.head_revision()
