"""Sealed objects in a filesystem directory or an S3-compatible bucket, by key.

Keys are fixed by what they hold (`documents/<id>`, `results/<job id>`), so writing one
again (a retried job) replaces it, and a row can tell which object is its own. Writes are
whole-object puts: the filesystem store writes a temporary file and renames it, S3 puts
are atomic, so a reader never sees half an object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from backburner.config import Settings
from backburner.errors import StorageUnavailable

# A store that does not answer gives up within this, so a request or an attempt waiting on
# it fails clearly (503, a retried attempt) instead of hanging.
TIMEOUT = timedelta(seconds=30)
RETRIES = 3


class ObjectMissing(LookupError):
    """No object under that key (deleted, or never written)."""


class Sealer(Protocol):
    """What seals an object before it leaves the process (privacy.sealing.Keyring)."""

    @property
    def primary_id(self) -> str: ...

    def seal_blob(self, plaintext: bytes, place: str) -> bytes: ...

    def open_blob(self, sealed: bytes, place: str) -> bytes: ...

    def blob_key_id(self, sealed: bytes) -> str | None: ...


def document_key(document_id: str) -> str:
    return f"documents/{document_id}"


def result_key(job_id: str) -> str:
    return f"results/{job_id}"


def storage_location(settings: Settings) -> str:
    """Where objects go: BACKBURNER_STORAGE_URL, else a directory beside the SQLite file
    (`backburner.db` → `backburner.db.objects/`), else `./backburner-objects`."""
    if settings.storage_url:
        return settings.storage_url
    url = settings.database_url
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            return str(Path(path).resolve()) + ".objects"
    return str(Path("backburner-objects").resolve())


def is_shared(location: str) -> bool:
    """Whether processes on other machines see the same objects."""
    return location.startswith("s3://")


def _store(settings: Settings, location: str) -> LocalStore | S3Store:
    if location.startswith("s3://"):
        parts = urlsplit(location)
        if not parts.netloc:
            raise ValueError(f"BACKBURNER_STORAGE_URL {location!r} names no bucket")
        config: dict[str, Any] = {}
        if settings.storage_endpoint:
            config["endpoint"] = settings.storage_endpoint
        if settings.storage_region:
            config["region"] = settings.storage_region
        if settings.storage_access_key_id:
            config["access_key_id"] = settings.storage_access_key_id
        if settings.storage_secret_access_key:
            config["secret_access_key"] = settings.storage_secret_access_key.get_secret_value()
        endpoint = settings.storage_endpoint or ""
        return S3Store(
            parts.netloc,
            prefix=parts.path.strip("/") or None,
            config=config,  # type: ignore[arg-type]  # the keys are S3Config's
            client_options={
                "timeout": TIMEOUT,
                "connect_timeout": timedelta(seconds=5),
                "allow_http": endpoint.startswith("http://"),
            },
            retry_config={"max_retries": RETRIES, "retry_timeout": TIMEOUT},
        )
    if "://" in location and not location.startswith("file://"):
        raise ValueError(
            f"BACKBURNER_STORAGE_URL {location!r}: use s3://bucket/prefix, file:///dir or a path"
        )
    path = Path(location.removeprefix("file://")).resolve()
    return LocalStore(prefix=path, mkdir=True)


@dataclass
class Objects:
    """Sealed objects by key. `location` is safe to show (no credentials in it)."""

    store: LocalStore | S3Store
    sealer: Sealer | None
    location: str

    def _keys(self) -> Sealer:
        if self.sealer is None:
            raise StorageUnavailable("objects cannot be read or written without encryption keys")
        return self.sealer

    def _seal(self, key: str, data: bytes) -> bytes:
        return self._keys().seal_blob(data, _place(key))

    async def put(self, key: str, data: bytes) -> None:
        await obstore_put(self.store, key, self._seal(key, data))

    async def get(self, key: str) -> bytes:
        sealed = await self.get_sealed(key)
        return self._keys().open_blob(sealed, _place(key))

    async def reseal(self, key: str) -> bool:
        """Seal this object again with the first key; False when it is already."""
        keys = self._keys()
        sealed = await self.get_sealed(key)
        if keys.blob_key_id(sealed) == keys.primary_id:
            return False
        await obstore_put(
            self.store, key, keys.seal_blob(keys.open_blob(sealed, _place(key)), _place(key))
        )
        return True

    async def get_sealed(self, key: str) -> bytes:
        """The object as stored (for re-sealing under a new key)."""
        try:
            found = await obstore.get_async(self.store, key)
            return bytes(await found.bytes_async())
        except (NotFoundError, FileNotFoundError):
            raise ObjectMissing(key) from None
        except (ObstoreError, OSError) as error:
            raise StorageUnavailable(f"could not read {key}: {_reason(error)}") from error

    async def put_json(self, key: str, value: Any) -> int:
        """Store a JSON value; returns its size in bytes before sealing."""
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        await self.put(key, data)
        return len(data)

    async def get_json(self, key: str) -> Any:
        return json.loads(await self.get(key))

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete these objects; one already gone is no error."""
        for key in keys:  # one by one: the filesystem store fails a batch on a missing key
            try:
                await obstore.delete_async(self.store, key)
            except (NotFoundError, FileNotFoundError):
                continue
            except (ObstoreError, OSError) as error:
                raise StorageUnavailable(f"could not delete {key}: {_reason(error)}") from error

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            return False
        except (ObstoreError, OSError) as error:
            raise StorageUnavailable(f"could not look for {key}: {_reason(error)}") from error
        return True


def _place(key: str) -> str:
    """The associated data an object is sealed with: moved to another key, it won't open."""
    return f"objects/{key}"


async def obstore_put(store: LocalStore | S3Store, key: str, sealed: bytes) -> None:
    try:
        await obstore.put_async(store, key, sealed)
    except (ObstoreError, OSError) as error:
        raise StorageUnavailable(f"could not store {key}: {_reason(error)}") from error


def _reason(error: BaseException) -> str:
    # obstore's messages can run to many lines of request detail; the first says what.
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def open_objects(settings: Settings, sealer: Sealer | None) -> Objects:
    location = storage_location(settings)
    return Objects(_store(settings, location), sealer, location)
