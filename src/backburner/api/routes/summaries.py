"""/api/summaries: the synchronous path (one document, answered in the request) next to
the background one (a `summarize_documents` job)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from backburner.api.auth import CurrentActor, CurrentPrincipal
from backburner.api.enqueue import enqueue, origin_of
from backburner.api.openapi import problems
from backburner.api.routes.jobs import created_response
from backburner.api.schemas import (
    BatchSummaryRequest,
    JobCreate,
    JobCreated,
    QuickSummary,
    QuickSummaryRequest,
)
from backburner.api.state import Services, ServicesDep
from backburner.errors import (
    FieldProblem,
    InvalidModelOutput,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from backburner.jobs import pii
from backburner.jobs.types.summarize import STYLE_INSTRUCTIONS, PartialSummary
from backburner.providers.base import JsonSchemaFormat, ModelRequest, ResponseSnapshot
from backburner.store import documents as documents_store
from backburner.store import steps as steps_store
from backburner.worker.spending import CallTerms, Spending

router = APIRouter(prefix="/api/summaries", tags=["summaries"])


@router.post("/quick", response_model=QuickSummary, responses=problems(402, 404, 502))
async def quick_summary(
    body: QuickSummaryRequest, svc: ServicesDep, principal: CurrentPrincipal
) -> QuickSummary:
    """Summarise one document or text now, in this request. Too long for one model call?
    Use /api/summaries/batch, which runs in the background."""
    if (body.document_id is None) == (body.text is None):
        raise InvalidRequest(
            "give exactly one of document_id and text",
            errors=[
                FieldProblem(("body", "document_id"), "give exactly one of document_id and text")
            ],
        )
    text = body.text
    if body.document_id is not None:
        found = await documents_store.get_documents(
            svc.db, [body.document_id], owner=principal.visible_owner()
        )
        if body.document_id not in found:
            raise NotFound(f"no document {body.document_id}")
        text = found[body.document_id].text
    assert text is not None
    limit = svc.settings.summarize_chunk_chars
    if len(text) > limit:
        raise InvalidRequest(
            f"the text has {len(text)} characters; the quick path takes at most {limit}. "
            "Use POST /api/summaries/batch to summarise it in the background.",
            errors=[
                FieldProblem(
                    ("body", "text" if body.text else "document_id"),
                    f"longer than {limit} characters",
                    "too_long",
                )
            ],
        )
    request = ModelRequest(
        model=svc.settings.model,
        instructions=f"You summarise a document for a busy reader. "
        f"{STYLE_INSTRUCTIONS[body.summary_style]} Use only facts stated in the text.",
        input=text,
        text_format=JsonSchemaFormat(
            name="summary", json_schema=PartialSummary.model_json_schema()
        ),
        service_tier=svc.settings.service_tier,
    )
    # Masked as a job's calls are; the vault lives for this request only.
    vault = pii.Vault(secrets.token_bytes(16), pii.kinds_from(svc.settings.pii_mask.get(QUICK)))
    sent = await _spend_on(svc, principal.owner, pii.mask_request(vault, request))
    snapshot = pii.unmask_snapshot(vault, sent)
    try:
        part = PartialSummary.model_validate_json(snapshot.output_text)
    except ValueError as error:
        raise InvalidModelOutput(f"the model's summary was malformed: {error}") from None
    usage = snapshot.usage.as_counts() if snapshot.usage else {}
    return QuickSummary(
        summary=part.summary,
        key_points=part.key_points,
        characters=len(text),
        model=request.model,
        usage=usage,
    )


QUICK = "quick_summary"  # how its usage is reported, and its key in BACKBURNER_PII_MASK

# A request waits at most this long for the shared rate budget; past it, a 429.
QUICK_MAX_BUDGET_WAIT = 5.0


async def _spend_on(svc: Services, owner: str, request: ModelRequest) -> ResponseSnapshot:
    """One model call answered in the request, as a job's calls are made: within the
    owner's budget and the shared rate limit, its usage and cost recorded for the owner
    (usage reports, the month's spend, metrics)."""
    spending = Spending(svc.db, svc.settings, svc.clock, svc.provider.name)
    await spending.check_budget(owner)
    estimate = spending.estimate(request)

    async def wait_or_refuse(seconds: float) -> None:
        if seconds > QUICK_MAX_BUDGET_WAIT:
            raise RateLimited(
                f"the rate budget for {request.model} is spent for now", retry_after=seconds
            )
        await asyncio.sleep(seconds)

    await spending.take_rate_budget(request, estimate, wait_or_refuse)
    try:
        snapshot = await svc.provider.complete(request)
    except RateLimited as limited:
        await spending.throttled(request.model, limited.retry_after)
        raise
    await spending.settle(request.model, estimate, snapshot.usage)
    await steps_store.record_call_outside_a_job(
        svc.db,
        owner=owner,
        job_type=QUICK,
        provider=svc.provider.name,
        model=request.model,
        response_id=snapshot.id,
        usage=snapshot.usage.as_counts() if snapshot.usage else {},
        cost=spending.cost(CallTerms(request.model, None, request.service_tier), snapshot.usage),
        now=svc.clock(),
    )
    return snapshot


@router.post("/batch", status_code=201, response_model=JobCreated)
async def batch_summary(
    body: BatchSummaryRequest,
    request: Request,
    response: Response,
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: CurrentActor,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JobCreated:
    """Summarise up to 200 documents in the background: creates a summarize_documents job."""
    create = JobCreate(
        type="summarize_documents",
        payload={"document_ids": body.document_ids, "summary_style": body.summary_style},
        callback_url=body.callback_url,
        priority=body.priority,
        idempotency_key=body.idempotency_key,
        deadline_seconds=body.deadline_seconds,
        notify=body.notify,
    )
    job, created = await enqueue(
        svc, principal, create, idempotency_key, actor, origin_of(request, svc.settings)
    )
    return await created_response(request, svc, job, created, response)
