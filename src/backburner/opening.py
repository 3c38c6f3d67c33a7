"""Opening the database, the way every process does: the encryption keys found and checked
against the data they sealed before anything is written, and the sealed settings opened;
and the object storage beside it, sealed by the same keys.

Apart from `backburner.runtime` (which builds the processes) so that a command that only
opens the database (`backburner keys list`, `owners ls`, …) starts without importing the
API, the dashboard, the worker and the provider's SDK: about a second less per command.
"""

from __future__ import annotations

import logging

from backburner.clock import utcnow
from backburner.config import Settings
from backburner.privacy.sealing import (
    KeyringError,
    KeySource,
    key_file_is_private,
    key_source,
    unseal_settings,
)
from backburner.storage import Objects, open_objects
from backburner.store import Database, encryption, migrate

log = logging.getLogger(__name__)


async def open_database(
    settings: Settings, *, upgrade: bool = False, listen: bool = False, pool_size: int = 10
) -> tuple[Database, Settings]:
    """The database, with the encryption keys checked against the data they sealed (a
    missing or wrong key raises KeyringError naming the setting, before any write), and the
    settings with their sealed secrets opened."""
    source = key_source(settings)
    db = Database(
        settings.database_url,
        sealer=source.keyring,
        pool_size=pool_size,
        transaction_pooler=settings.database_transaction_pooler,
        listen_url=settings.database_listen_url,
    )
    try:
        if listen:
            await db.start_listening()
            await _warn_if_the_server_is_too_small(db, pool_size)
        if upgrade:
            await migrate.upgrade(db)
        await _use_keys(db, source)
        return db, unseal_settings(settings, source.keyring)
    except BaseException:
        await db.close()
        raise


async def _warn_if_the_server_is_too_small(db: Database, pool_size: int) -> None:
    """A service process (it listens) whose pools could take more connections than
    PostgreSQL gives clients, alone or beside those other clients hold now (a fleet grown
    one process too far, or a deploy that starts the new processes before the old ones
    stop): under load its statements would fail to connect, one after another, instead of
    waiting for a pooled connection. Said once, at start; the fleet's sizing is the
    operator's (docs/operations.md)."""
    room = await db.room_for_clients()
    if room is None:
        return
    if db.most_connections > room:
        log.warning(
            "this process may open more connections than PostgreSQL takes from clients: "
            "lower BACKBURNER_DATABASE_POOL_SIZE or raise max_connections",
            extra={
                "most_connections": db.most_connections,
                "pool_size": pool_size,
                "server_allows": room,
            },
        )
        return
    others = await db.connections_of_others()
    if others + db.most_connections > room:
        log.warning(
            "this process may open more connections than PostgreSQL has left for clients "
            "beside those others hold now: lower BACKBURNER_DATABASE_POOL_SIZE, raise "
            "max_connections or put PgBouncer in front",
            extra={
                "most_connections": db.most_connections,
                "others_hold": others,
                "pool_size": pool_size,
                "server_allows": room,
            },
        )


async def _use_keys(db: Database, source: KeySource) -> None:
    check = await encryption.check_keys(db, source.keyring)
    if source.unsaved and not check.ok:  # a new key would be "wrong" under a reused id
        raise KeyringError(
            f"{source.described} is missing, and this database holds data sealed with key "
            f"{_listed(check.missing + check.wrong)}: restore the file, or give the keys in "
            "BACKBURNER_ENCRYPTION_KEYS"
        )
    if check.wrong:
        raise KeyringError(
            f"{source.described}: key {_listed(check.wrong)} is not the key that sealed this "
            "database's data under that id (wrong key material)"
        )
    if check.missing:
        raise KeyringError(
            f"{source.described} lacks key {_listed(check.missing)}, which sealed data in "
            "this database: give it again (a key may go once `backburner encryption rotate` "
            "has retired it)"
        )
    key_file = None if source.unsaved else source.key_file
    if key_file is not None and not key_file_is_private(key_file):
        log.warning("the key file %s can be read by others than its owner: chmod 600 it", key_file)
    if source.unsaved:
        source.save()
        log.warning(
            "created a new encryption key in %s (readable by you only); back it up: the "
            "data it seals cannot be read without it",
            source.key_file,
        )
    if check.needs_recording(source.keyring.primary_id):  # once per key, not per start
        await encryption.remember_key(db, source.keyring, utcnow())


def _listed(key_ids: list[str]) -> str:
    return ", ".join(map(repr, key_ids))


def storage_for(settings: Settings, db: Database) -> Objects:
    """Object storage, sealed by the database's keys. The default directory on this
    machine while the database is shared (PostgreSQL) is said out loud: processes on other
    machines would not find each other's objects (a directory given on purpose, a shared
    mount say, is taken as meant)."""
    objects = open_objects(settings, db.sealer)
    if db.dialect == "postgresql" and settings.storage_url is None:
        log.warning(
            "objects are stored in %s on this machine; with processes on several machines "
            "set BACKBURNER_STORAGE_URL=s3://bucket/prefix (or a directory they share)",
            objects.location,
        )
    return objects
