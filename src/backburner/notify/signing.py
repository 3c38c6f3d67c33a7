"""Standard Webhooks signatures (https://www.standardwebhooks.com): what OpenAI and Svix
send, so receivers verify with any Standard Webhooks library or the OpenAI SDK's helper."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    )


def signature_header(signing: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<sig>` per valid secret: during a rotation receivers holding either the old
    or the new secret can verify."""
    return " ".join(signature(secret, message_id, timestamp, body) for secret in signing)


def headers(signing: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signing, message_id, timestamp, body),
    }
