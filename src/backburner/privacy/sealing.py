"""Field encryption at rest: AES-256-GCM, each value carrying the id of the key that
sealed it.

A sealed value is text, `bbx1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, so it fits
the column it replaces (a JSON column holds it as a JSON string). The place it belongs to
(`jobs.payload`, `documents.text`, …) is the associated data: a value copied into another
column does not open. The first key of a keyring seals; every key opens, which is what lets
`backburner encryption rotate` move data from an old key to a new one while both run.

Keys come from `BACKBURNER_ENCRYPTION_KEYS` (`id:base64key,…`), or from a key file: the
embedded default writes one (mode 0600) beside its SQLite database on first start.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from backburner.config import Settings

SCHEME = "bbx1"
KEYS_SETTING = "BACKBURNER_ENCRYPTION_KEYS"
KEY_FILE_SETTING = "BACKBURNER_ENCRYPTION_KEY_FILE"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per value (2^32 values per key stay safe)
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SEALED = re.compile(rf"{SCHEME}:([A-Za-z0-9_-]{{1,32}}):([A-Za-z0-9_-]+)")


class KeyringError(ValueError):
    """The keys given cannot be used; the message names the setting to fix."""


class CannotOpen(ValueError):
    """A sealed value that no key of this keyring opens (an unknown or a wrong key, or a
    value altered or moved from its place)."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Either base64 alphabet, padded or not; anything else is an error, not skipped."""
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class Keyring:
    """Named AES-256 keys; the first seals, all open."""

    keys: tuple[tuple[str, bytes], ...]
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError(f"{KEYS_SETTING} holds no key")
        for key_id, key in self.keys:
            if not _KEY_ID.fullmatch(key_id):
                raise KeyringError(
                    f"{KEYS_SETTING}: key id {key_id[:40]!r} must be 1-32 letters, digits, "
                    "'-' or '_'"
                )
            if len(key) != KEY_BYTES:
                raise KeyringError(
                    f"{KEYS_SETTING}: key {key_id!r} is {len(key)} bytes; AES-256 needs "
                    f"{KEY_BYTES} (generate one with `backburner encryption new-key`)"
                )
            if key_id in self._ciphers:
                raise KeyringError(f"{KEYS_SETTING}: key id {key_id!r} appears twice")
            self._ciphers[key_id] = AESGCM(key)

    def __repr__(self) -> str:  # never the key material, whatever prints this
        return f"Keyring(key_ids={self.key_ids!r})"

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    @property
    def key_ids(self) -> list[str]:
        return [key_id for key_id, _ in self.keys]

    @classmethod
    def generate(cls, key_id: str = "k1") -> Keyring:
        return cls(((key_id, secrets.token_bytes(KEY_BYTES)),))

    @classmethod
    def parse(cls, spec: str, *, setting: str = KEYS_SETTING) -> Keyring:
        """`id:base64key[,id:base64key…]`, the sealing key first."""
        keys: list[tuple[str, bytes]] = []
        for item in (part.strip() for part in spec.replace("\n", ",").split(",")):
            if not item:
                continue
            key_id, colon, encoded = item.partition(":")
            if not colon:
                raise KeyringError(f"{setting}: each key is written id:base64key")
            try:
                key = _b64decode(encoded.strip())
            except (binascii.Error, ValueError):
                raise KeyringError(f"{setting}: key {key_id!r} is not base64") from None
            keys.append((key_id.strip(), key))
        try:
            return cls(tuple(keys))
        except KeyringError as error:
            raise KeyringError(str(error).replace(KEYS_SETTING, setting, 1)) from None

    def spec(self) -> str:
        """The keyring written the way `parse` reads it (for a key file)."""
        return ",".join(f"{key_id}:{_b64encode(key)}" for key_id, key in self.keys)

    def seal(self, plaintext: bytes, place: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self.primary_id].encrypt(nonce, plaintext, place.encode())
        return f"{SCHEME}:{self.primary_id}:{_b64encode(nonce + ciphertext)}"

    def open(self, sealed: str, place: str) -> bytes:
        match = _SEALED.fullmatch(sealed)
        if match is None:
            raise CannotOpen(f"a value of {place} is not a sealed value")
        key_id, body = match.groups()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CannotOpen(
                f"a value of {place} is sealed with key {key_id!r}, which {KEYS_SETTING} "
                "does not hold"
            )
        try:
            # The pattern above admits only the URL-safe alphabet: decode it directly.
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], place.encode())
        except (InvalidTag, ValueError):  # ValueError: cut short (binascii.Error is one)
            raise CannotOpen(
                f"a value of {place} does not open with key {key_id!r}: a different key "
                "under that id, or a value altered or moved"
            ) from None

    def seal_blob(self, plaintext: bytes, place: str) -> bytes:
        """Sealed bytes for an object: `bbx1:<key id>:` then nonce ‖ ciphertext ‖ tag, raw
        (base64 would make a 20 MB original 27 MB)."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self.primary_id].encrypt(nonce, plaintext, place.encode())
        return self.sealed_prefix(self.primary_id).encode() + nonce + ciphertext

    def open_blob(self, sealed: bytes, place: str) -> bytes:
        scheme, _, rest = sealed.partition(b":")
        key_id, colon, body = rest.partition(b":")
        if (
            scheme != SCHEME.encode()
            or not colon
            or not _KEY_ID.fullmatch(key_id.decode("latin-1"))
        ):
            raise CannotOpen(f"{place} is not a sealed object")
        cipher = self._ciphers.get(key_id.decode())
        if cipher is None:
            raise CannotOpen(
                f"{place} is sealed with key {key_id.decode()!r}, which {KEYS_SETTING} does "
                "not hold"
            )
        try:
            return cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], place.encode())
        except (InvalidTag, ValueError):
            raise CannotOpen(
                f"{place} does not open with key {key_id.decode()!r}: a different key under "
                "that id, or an object altered or moved"
            ) from None

    def blob_key_id(self, sealed: bytes) -> str | None:
        """The id of the key that sealed this object (None: not a sealed object)."""
        scheme, _, rest = sealed[:64].partition(b":")
        key_id, colon, _ = rest.partition(b":")
        return key_id.decode("latin-1") if scheme == SCHEME.encode() and colon else None

    def is_sealed(self, stored: str) -> bool:
        return stored.startswith(f"{SCHEME}:")

    def sealed_prefix(self, key_id: str) -> str:
        """What every value sealed with `key_id` starts with."""
        return f"{SCHEME}:{key_id}:"


# --- Where the keys come from --------------------------------------------------------------


@dataclass(frozen=True)
class KeySource:
    """A keyring and where it came from. `unsaved` is a key just generated for a key file
    that does not exist yet: it is written only once the database is known to hold no data
    sealed with another key (`save`)."""

    keyring: Keyring
    described: str
    key_file: Path | None = None
    unsaved: bool = False

    def save(self) -> None:
        """Write the new key file, readable by its owner only; never over an existing one."""
        assert self.key_file is not None
        assert self.unsaved
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(
                "# Backburner's encryption key. Back it up: without it the data it sealed\n"
                "# cannot be read. Keep it readable by the service's user only.\n"
                f"{self.keyring.spec()}\n"
            )
            file.flush()
            os.fsync(file.fileno())


def default_key_file(database_url: str) -> Path | None:
    """Beside the SQLite database file (`backburner.db` → `backburner.db.key`); none for
    PostgreSQL, whose processes run on many machines and take the keys from settings."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split(":///", 1)[1] if ":///" in database_url else ""
    if not path or path == ":memory:":
        return None
    return Path(path + ".key")


def _read_key_file(path: Path) -> Keyring:
    lines = [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return Keyring.parse(",".join(lines), setting=f"the key file {path}")


def key_source(settings: Settings) -> KeySource:
    """The keyring the settings give: BACKBURNER_ENCRYPTION_KEYS, else the key file
    (BACKBURNER_ENCRYPTION_KEY_FILE, or beside an SQLite database), else a new key for that
    file. Raises KeyringError naming the setting when there is no way to a key."""
    if settings.encryption_keys is not None:
        return KeySource(Keyring.parse(settings.encryption_keys.get_secret_value()), KEYS_SETTING)
    path = (
        Path(settings.encryption_key_file)
        if settings.encryption_key_file
        else default_key_file(settings.database_url)
    )
    if path is None:
        raise KeyringError(
            f"{KEYS_SETTING} is not set: a PostgreSQL deployment gives every process the same "
            "keys (generate one with `backburner encryption new-key`), or names a key file "
            f"in {KEY_FILE_SETTING}"
        )
    if path.exists():
        try:
            return KeySource(_read_key_file(path), f"the key file {path}", path)
        except OSError as error:
            raise KeyringError(f"the key file {path} cannot be read: {error.strerror}") from None
    if settings.encryption_key_file:
        raise KeyringError(f"{KEY_FILE_SETTING} names {path}, which does not exist")
    return KeySource(Keyring.generate(), f"the key file {path}", path, unsaved=True)


def key_file_is_private(path: Path) -> bool:
    return path.stat().st_mode & 0o077 == 0


# --- Secrets in the settings ---------------------------------------------------------------

# Settings that may be given sealed (`backburner encryption seal-secret NAME`), so a .env
# file or a deployment manifest holds ciphertext, not the secret.
SEALABLE_SETTINGS = (
    "smtp_password",
    "openai_api_key",
    "openai_webhook_secret",
    "storage_secret_access_key",
)


def seal_setting(keyring: Keyring, name: str, value: str) -> str:
    return keyring.seal(value.encode(), f"settings.{name}")


def unseal_settings(settings: Settings, keyring: Keyring) -> Settings:
    """The settings with every sealed secret opened (in memory only)."""
    opened: dict[str, SecretStr] = {}
    for name in SEALABLE_SETTINGS:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and keyring.is_sealed(value.get_secret_value()):
            try:
                plain = keyring.open(value.get_secret_value(), f"settings.{name}")
            except CannotOpen as error:
                raise KeyringError(f"BACKBURNER_{name.upper()}: {error}") from None
            opened[name] = SecretStr(plain.decode())
    return settings.model_copy(update=opened) if opened else settings
