"""/webhooks/openai: OpenAI's signed notices that a background response ended.

Authorised by its signature (Standard Webhooks, verified with the SDK's own helper against
the raw body), not by an API key. A verified `response.*` event wakes the worker waiting on
that response; a redelivery of the same `webhook-id` is acknowledged and ignored.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from backburner.api.openapi import problems
from backburner.api.state import ServicesDep
from backburner.errors import BadSignature, FieldProblem, InvalidRequest, NotFound
from backburner.store import webhooks as webhooks_store

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

RESPONSE_EVENTS = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)


@functools.lru_cache(maxsize=4)
def _verifier(secret: str) -> openai.OpenAI:
    # Verification is local (HMAC of the raw body); the client never sends a request. It
    # is built once: a client costs an SSL context, too much to pay per webhook. The SDK is
    # imported here, on the first webhook: importing it took ~0.35 of the API's ~1.4 s
    # start-up (python -X importtime), paid by every API process whether or not OpenAI's
    # webhooks are enabled.
    import openai

    return openai.OpenAI(api_key="webhook-verification-only", webhook_secret=secret)


@router.post("/webhooks/openai", status_code=200, include_in_schema=True, responses=problems(404))
async def openai_webhook(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Receive `response.completed|failed|cancelled|incomplete` from OpenAI."""
    secret = svc.settings.openai_webhook_secret
    if secret is None:
        raise NotFound("OpenAI webhooks are not enabled here (set OPENAI_WEBHOOK_SECRET)")
    payload = await request.body()
    hooks = _verifier(secret.get_secret_value()).webhooks
    from openai import InvalidWebhookSignatureError  # loaded by _verifier already

    try:
        hooks.verify_signature(payload, request.headers)
    except (InvalidWebhookSignatureError, ValueError) as error:
        # ValueError: a signature header is missing; just as unverifiable.
        log.warning("rejected an OpenAI webhook", extra={"reason": str(error)})
        raise BadSignature(f"the webhook could not be verified: {error}") from None
    try:
        event = hooks.unwrap(payload, request.headers)
    except ValueError as error:
        raise InvalidRequest(
            "the webhook body is not an event we can read",
            errors=[FieldProblem(("body",), str(error))],
        ) from None
    if event.type not in RESPONSE_EVENTS:
        return {"received": True, "ignored": event.type}
    response_id = event.data.id  # type: ignore[union-attr]
    fresh = await webhooks_store.record_response_event(
        svc.db,
        webhook_id=request.headers["webhook-id"],
        event_type=event.type,
        response_id=response_id,
        now=svc.clock(),
    )
    log.info(
        "OpenAI webhook",
        extra={"event": event.type, "response_id": response_id, "duplicate": not fresh},
    )
    return {"received": True, "duplicate": not fresh}
