"""The field cipher: AES-256-GCM values that carry their key id and open only in their
place, keys parsed from the setting with errors that name it, sealed settings."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from backburner.config import Settings
from backburner.privacy.sealing import (
    CannotOpen,
    Keyring,
    KeyringError,
    default_key_file,
    key_source,
    seal_setting,
    unseal_settings,
)

KEY_A = base64.urlsafe_b64encode(b"a" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"b" * 32).decode()


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_a_value_opens_where_it_was_sealed_and_nowhere_else() -> None:
    keyring = Keyring.parse(f"a:{KEY_A}")
    sealed = keyring.seal(b"Jane Roe, 123-45-6789", "documents.text")
    assert sealed.startswith("bbx1:a:")
    assert "Jane" not in sealed
    assert keyring.open(sealed, "documents.text") == b"Jane Roe, 123-45-6789"
    with pytest.raises(CannotOpen, match="moved"):
        keyring.open(sealed, "jobs.result")  # copied into another column


def test_the_same_value_seals_differently_each_time() -> None:
    keyring = Keyring.generate()
    assert keyring.seal(b"same", "p") != keyring.seal(b"same", "p")


def test_an_altered_value_does_not_open() -> None:
    keyring = Keyring.parse(f"a:{KEY_A}")
    sealed = keyring.seal(b"the result", "jobs.result")
    body = sealed.rsplit(":", 1)[1]
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    with pytest.raises(CannotOpen):
        keyring.open(f"bbx1:a:{flipped}", "jobs.result")
    with pytest.raises(CannotOpen):
        keyring.open("bbx1:a:!!not base64!!", "jobs.result")


def test_the_first_key_seals_and_every_key_opens() -> None:
    old = Keyring.parse(f"a:{KEY_A}")
    sealed_old = old.seal(b"v", "p")
    both = Keyring.parse(f"b:{KEY_B},a:{KEY_A}")
    assert both.primary_id == "b"
    assert both.seal(b"v", "p").startswith("bbx1:b:")
    assert both.open(sealed_old, "p") == b"v"
    with pytest.raises(CannotOpen, match="BACKBURNER_ENCRYPTION_KEYS does not hold"):
        Keyring.parse(f"b:{KEY_B}").open(sealed_old, "p")


def test_same_id_other_material_is_told_apart() -> None:
    sealed = Keyring.parse(f"a:{KEY_A}").seal(b"v", "p")
    with pytest.raises(CannotOpen, match="different key"):
        Keyring.parse(f"a:{KEY_B}").open(sealed, "p")


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("", "holds no key"),
        ("justakey", "id:base64key"),
        ("a:***", "not base64"),
        (f"a:{base64.b64encode(b'x' * 16).decode()}", "16 bytes"),
        (f"a:{KEY_A},a:{KEY_B}", "appears twice"),
        (f"a\x00b:{KEY_A}", "must be 1-32 letters"),
        (f"{'k' * 33}:{KEY_A}", "must be 1-32 letters"),
        (f"\udcff:{KEY_A}", "must be 1-32 letters"),
    ],
)
def test_bad_keys_are_refused_naming_the_setting(spec: str, complaint: str) -> None:
    with pytest.raises(KeyringError, match=complaint) as caught:
        Keyring.parse(spec)
    assert "BACKBURNER_ENCRYPTION_KEYS" in str(caught.value)
    assert KEY_A not in str(caught.value)


def test_key_material_is_never_printed() -> None:
    keyring = Keyring.parse(f"a:{KEY_A}")
    assert KEY_A not in repr(keyring)
    assert "a" * 32 not in repr(keyring)


def test_a_generated_key_round_trips_through_its_spec() -> None:
    keyring = Keyring.generate("k7")
    again = Keyring.parse(keyring.spec())
    assert again.open(keyring.seal(b"x", "p"), "p") == b"x"


def test_the_embedded_default_keeps_its_key_beside_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/backburner.db"
    assert default_key_file(url) == Path(f"{tmp_path}/backburner.db.key")
    assert default_key_file("postgresql://u@h/db") is None
    source = key_source(settings(database_url=url))
    assert source.unsaved
    assert source.key_file is not None
    assert not source.key_file.exists()  # written only once the database agrees
    source.save()
    assert stat.S_IMODE(os.stat(source.key_file).st_mode) == 0o600
    again = key_source(settings(database_url=url))
    assert not again.unsaved
    assert again.keyring.open(source.keyring.seal(b"x", "p"), "p") == b"x"


def test_postgresql_without_keys_is_told_which_setting_to_give() -> None:
    with pytest.raises(KeyringError, match="BACKBURNER_ENCRYPTION_KEYS is not set"):
        key_source(settings(database_url="postgresql://u@127.0.0.1/db"))


def test_a_named_key_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="BACKBURNER_ENCRYPTION_KEY_FILE"):
        key_source(settings(encryption_key_file=str(tmp_path / "none.key")))


def test_a_key_file_with_a_bad_key_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    path.write_text("# comment\nk1:short\n")
    with pytest.raises(KeyringError, match=f"the key file {path}"):
        key_source(settings(encryption_key_file=str(path)))


def test_secrets_in_the_settings_may_be_given_sealed() -> None:
    keyring = Keyring.parse(f"a:{KEY_A}")
    sealed = seal_setting(keyring, "smtp_password", "hunter2")
    opened = unseal_settings(settings(smtp_password=sealed, smtp_username="u"), keyring)
    assert opened.smtp_password is not None
    assert opened.smtp_password.get_secret_value() == "hunter2"
    plain = settings(smtp_password="plain")
    assert unseal_settings(plain, keyring) is plain
    with pytest.raises(KeyringError, match="BACKBURNER_SMTP_PASSWORD"):
        unseal_settings(settings(smtp_password=sealed), Keyring.parse(f"a:{KEY_B}"))
    with pytest.raises(KeyringError, match="BACKBURNER_OPENAI_API_KEY"):
        # sealed for one setting, given to another: it does not open there
        unseal_settings(settings(openai_api_key=sealed), keyring)


@pytest.mark.parametrize("body", ["A", "AAAA", "A" * 27])
def test_a_value_cut_short_does_not_open(body: str) -> None:
    with pytest.raises(CannotOpen):
        Keyring.parse(f"a:{KEY_A}").open(f"bbx1:a:{body}", "p")
