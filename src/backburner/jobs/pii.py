"""Personal data kept from the model: found in what a job sends, replaced by tokens, and
put back in what the model answers.

What is found: e-mail addresses, phone numbers, payment card numbers (Luhn-checked), IBANs
(mod-97 checked), US social security numbers, IP addresses and dates of birth (a date next
to words that say so). Written here rather than taken from a library: Presidio, the
well-kept one, needs a spaCy language model downloaded at run time even for its pattern
recognizers, and the checksums are what keep patterns from taking order numbers and
amounts for cards and accounts.

A token is the kind and a keyed hash of the value (`<EMAIL_3f9a2c1b>`): the same value is
the same token in every call of a job, in every attempt and process, with nothing stored,
and the model's answer can be put back from the values this job has sent.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from backburner.providers.base import InputItem, InputMessage, ModelRequest, ResponseSnapshot


class Kind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IBAN = "iban"
    SSN = "ssn"
    IP = "ip"
    DOB = "dob"


ALL_KINDS = frozenset(Kind)
TOKEN = re.compile(r"<(EMAIL|PHONE|CARD|IBAN|SSN|IP|DOB)_([0-9a-f]{8})>")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 9 <= len(digits) <= 15


def _ip(match: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(match.group())
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Pattern:
    kind: Kind
    regex: re.Pattern[str]
    valid: Callable[[re.Match[str]], bool] = lambda _: True
    group: int = 0  # the part of the match that is the value


DATE = (
    r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"
    r"|\d{1,2} [A-Z][a-z]{2,8} \d{4}|[A-Z][a-z]{2,8} \d{1,2},? \d{4}"
)

# In order: the more specific first, so a card is not read as a phone number.
PATTERNS = (
    Pattern(
        Kind.EMAIL,
        re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    ),
    Pattern(
        Kind.IBAN,
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        lambda m: iban_valid(m.group()),
    ),
    Pattern(Kind.CARD, re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), _card),
    Pattern(Kind.SSN, re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    Pattern(
        Kind.DOB,
        re.compile(
            r"(?i:\b(?:date of birth|birth ?date|birthday|d\.?o\.?b\.?|born(?: on)?)\b[\s:=\"']*)"
            rf"({DATE})"
        ),
        group=1,
    ),
    Pattern(
        Kind.IP,
        re.compile(
            r"(?<!\d)(?<!\d\.)(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)"
            r"|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"
        ),
        _ip,
    ),
    Pattern(
        Kind.PHONE,
        re.compile(r"(?<![\w+-])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,5}(?![\w-])"),
        _phone,
    ),
)


@dataclass
class Vault:
    """The values one job has sent, by token; `secret` keys the tokens (the job id, with a
    service secret when one is set)."""

    secret: bytes
    kinds: frozenset[Kind] = ALL_KINDS
    values: dict[str, str] = field(default_factory=dict)

    def token(self, kind: Kind, value: str) -> str:
        digest = hmac.new(self.secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        token = f"<{kind.name}_{digest[:8]}>"
        self.values[token] = value
        return token

    def mask(self, text: str) -> str:
        """`text` with every value of the vault's kinds replaced by its token."""
        for pattern in PATTERNS:
            if pattern.kind in self.kinds:
                text = pattern.regex.sub(functools.partial(self._replace, pattern=pattern), text)
        return text

    def _replace(self, match: re.Match[str], pattern: Pattern) -> str:
        if TOKEN.fullmatch(match.group()) or not pattern.valid(match):
            return match.group()
        value = match.group(pattern.group)
        start, end = match.span(pattern.group)
        offset = match.start()
        whole = match.group()
        return whole[: start - offset] + self.token(pattern.kind, value) + whole[end - offset :]

    def unmask(self, text: str) -> str:
        """`text` with this job's tokens put back (tokens it never made stay as they are)."""
        return TOKEN.sub(lambda m: self.values.get(m.group(), m.group()), text)

    def unmask_value(self, value: Any) -> Any:
        """The same for every text inside a JSON-like value (keys too)."""
        if isinstance(value, str):
            return self.unmask(value)
        if isinstance(value, list):
            return [self.unmask_value(item) for item in value]
        if isinstance(value, dict):
            return {self.unmask(k): self.unmask_value(v) for k, v in value.items()}
        return value


def kinds_from(setting: str | Iterable[str] | None) -> frozenset[Kind]:
    """A type's masking setting: "all" (or unset), "none", or a list of kinds."""
    if setting is None or setting == "all":
        return ALL_KINDS
    if setting == "none":
        return frozenset()
    if isinstance(setting, str):
        setting = [setting]
    return frozenset(Kind(name) for name in setting)


def mask_request(vault: Vault, request: ModelRequest) -> ModelRequest:
    """What the provider is sent: the request's texts (input, tool outputs, instructions)
    masked. An empty set of kinds sends it as it is."""
    if not vault.kinds:
        return request
    if isinstance(request.input, str):
        sent: str | list[InputItem] = vault.mask(request.input)
    else:
        sent = [
            item.model_copy(update={"content": vault.mask(item.content)})
            if isinstance(item, InputMessage)
            else item.model_copy(update={"output": vault.mask(item.output)})
            for item in request.input
        ]
    instructions = vault.mask(request.instructions) if request.instructions else None
    return request.model_copy(update={"input": sent, "instructions": instructions})


def unmask_snapshot(vault: Vault, snapshot: ResponseSnapshot) -> ResponseSnapshot:
    """What the job sees of an answer: this job's tokens put back in its text and in the
    arguments of the tools it asks for."""
    if not vault.values:
        return snapshot
    calls = [
        call.model_copy(update={"arguments": vault.unmask(call.arguments)})
        for call in snapshot.function_calls
    ]
    return snapshot.model_copy(
        update={"output_text": vault.unmask(snapshot.output_text), "function_calls": calls}
    )
