"""Finding personal data and putting it back: checksums, kinds, tokens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backburner.config import PII_KINDS, Settings
from backburner.jobs.pii import Kind, Vault, iban_valid, kinds_from, luhn_valid

FOUND = [
    ("write to jane.doe+x@example.co.uk today", Kind.EMAIL, "jane.doe+x@example.co.uk"),
    ("call +1 (415) 555-0134 now", Kind.PHONE, "+1 (415) 555-0134"),
    ("or 020 7946 0958.", Kind.PHONE, "020 7946 0958"),
    ("card 4111-1111-1111-1111 charged", Kind.CARD, "4111-1111-1111-1111"),
    ("to GB82WEST12345698765432 please", Kind.IBAN, "GB82WEST12345698765432"),
    ("SSN 123-45-6789.", Kind.SSN, "123-45-6789"),
    ("from 203.0.113.77.", Kind.IP, "203.0.113.77"),
    ("host 2001:db8::1 up", Kind.IP, "2001:db8::1"),
    ('"dob": "1990-01-01"', Kind.DOB, "1990-01-01"),
    ("born on 12 March 1984", Kind.DOB, "12 March 1984"),
]

LEFT_ALONE = [
    "revenue 12,500,000 USD in 2025, up 4.2%",
    "meeting on 2026-01-05 at 10:00:00",
    "invoice INV-2026-000123 and order 4111-1111-1111-1112",  # the card fails Luhn
    "version 1.2.3.4.5 of the tool",
    "IBAN-looking DE00 3704 0044 0532 0130 00 fails its checksum",
]


@pytest.mark.parametrize(("text", "kind", "value"), FOUND)
def test_each_kind_is_found_and_put_back(text: str, kind: Kind, value: str) -> None:
    vault = Vault(b"salt")
    masked = vault.mask(text)
    assert value not in masked
    assert f"<{kind.name}_" in masked
    assert vault.unmask(masked) == text


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_figures_dates_and_ids_that_are_not_personal_stay(text: str) -> None:
    assert Vault(b"salt").mask(text) == text


def test_checksums() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00")
    assert not iban_valid("DE00 3704 0044 0532 0130 00")


def test_tokens_are_stable_per_salt_and_differ_between_jobs() -> None:
    text = "mail a@b.io"
    assert Vault(b"job-1").mask(text) == Vault(b"job-1").mask(text)
    assert Vault(b"job-1").mask(text) != Vault(b"job-2").mask(text)


def test_only_the_chosen_kinds_are_masked() -> None:
    vault = Vault(b"salt", kinds_from(["email"]))
    assert vault.mask("a@b.io or 123-45-6789").endswith("or 123-45-6789")
    assert Vault(b"salt", kinds_from("none")).mask("a@b.io") == "a@b.io"
    assert kinds_from(None) == kinds_from("all") == frozenset(Kind)


def test_unmasking_leaves_tokens_this_job_did_not_make() -> None:
    vault = Vault(b"salt")
    assert vault.unmask("a <EMAIL_00000000> b") == "a <EMAIL_00000000> b"
    masked = vault.mask("x@y.io")
    assert vault.unmask_value({masked: [masked, 3]}) == {"x@y.io": ["x@y.io", 3]}


def test_settings_name_only_known_kinds() -> None:
    assert {kind.value for kind in Kind} == PII_KINDS
    Settings(_env_file=None, pii_mask={"classify_leads": ["email", "phone"], "x": "none"})  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="unknown"):
        Settings(_env_file=None, pii_mask={"classify_leads": ["emails"]})  # type: ignore[call-arg]
