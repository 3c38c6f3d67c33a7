"""Personal data never reaches the model: a recording proxy between Backburner and the
emulator sees every byte sent, for all three built-in types, and finds none of a seeded set
of values; the results still show the owner the original values."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backburner.config import Settings
from backburner.providers.emulator import EmulatorConfig, create_emulator_app
from backburner.providers.openai import OpenAIProvider
from backburner.store import Database, JobStatus
from backburner.store import documents as documents_store
from backburner.store import steps as steps_store
from tests.running import finished, submit, worker_on
from tests.servers import serve_on_loopback

SEEDED = {
    "email": "jane.roe@example.com",
    "phone": "+1 415 555 0134",
    "card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ssn": "123-45-6789",
    "ip": "203.0.113.77",
    "dob": "1984-03-12",
}
DOCUMENT = (
    "Customer file. The customer Jane Roe can be reached at jane.roe@example.com or "
    "+1 415 555 0134. Her card 4111 1111 1111 1111 was charged twice in March. "
    "Refunds go to IBAN DE89 3704 0044 0532 0130 00. Social security number 123-45-6789. "
    "Date of birth: 1984-03-12. She last signed in from 203.0.113.77. "
    "The company agreed to refund the second charge within five days."
)


@contextlib.asynccontextmanager
async def recording_proxy(upstream: str) -> AsyncIterator[tuple[str, list[bytes]]]:
    """Forwards everything to `upstream`, keeping each request body it forwarded."""
    seen: list[bytes] = []
    client = httpx.AsyncClient(base_url=upstream, timeout=30)

    async def forward(request: Request) -> Response:
        body = await request.body()
        seen.append(request.url.path.encode() + b"?" + request.url.query.encode() + b" " + body)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        answer = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=body,
            headers=headers,
        )
        kept = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() in ("content-type", "retry-after") or k.lower().startswith("x-")
        }
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    app = Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST", "DELETE"])])
    try:
        async with serve_on_loopback(app, lifespan=False) as base:
            yield base, seen
    finally:
        await client.aclose()


async def test_no_seeded_value_reaches_the_model_and_results_keep_them(
    db: Database, settings: Settings
) -> None:
    emulator = create_emulator_app(EmulatorConfig(latency_s=0.1, seed=7))
    async with serve_on_loopback(emulator) as upstream, recording_proxy(upstream) as (proxy, seen):
        provider = OpenAIProvider.connect(api_key="sk-test", base_url=f"{proxy}/v1", timeout=10)
        document, _ = await documents_store.take_document(
            db,
            owner="alice",
            filename="customer.txt",
            content_type="text/plain",
            size_bytes=len(DOCUMENT),
            text=DOCUMENT,
            now=datetime.now(UTC),
        )
        leads = [
            {
                "id": "jane.roe@example.com",
                "name": "Jane Roe",
                "company": "Acme",
                "title": "CFO",
                "notes": "hot lead, call +1 415 555 0134; born 1984-03-12",
                "email": "jane.roe@example.com",
                "phone": "+1 415 555 0134",
                "birth_date": "1984-03-12",
                "credit_score": 817,
            },
            {"id": "b", "name": "Bo", "company": "Beta", "notes": "cold, SSN 123-45-6789"},
        ]
        try:
            async with worker_on(db, settings, provider):
                jobs = [
                    await submit(db, "summarize_documents", {"document_ids": [document.id]}),
                    await submit(db, "classify_leads", {"leads": leads, "labels": ["hot", "cold"]}),
                    await submit(
                        db, "generate_report", {"user_id": "203.0.113.77", "period": "2026-10"}
                    ),
                ]
                done = [await finished(db, job.id, within=60) for job in jobs]
        finally:
            await provider.aclose()
    assert [job.status for job in done] == [JobStatus.SUCCEEDED] * 3, [
        j.error_message for j in done
    ]
    sent = b"\n".join(seen).decode()
    assert "/v1/responses" in sent
    leaked = {kind: value for kind, value in SEEDED.items() if value in sent}
    assert leaked == {}
    assert "credit_score" not in sent
    assert "birth_date" not in sent
    assert "<EMAIL_" in sent
    assert "<SSN_" in sent
    # The owner's results carry the original values back.
    summary, classified, report = (job.result for job in done)
    assert summary is not None
    assert classified is not None
    assert report is not None
    assert [c["id"] for c in classified["classifications"]] == ["jane.roe@example.com", "b"]
    assert any(value in json.dumps(summary) for value in SEEDED.values()), summary
    assert "<EMAIL_" not in json.dumps(summary)
    assert "<IP_" not in json.dumps(report)
    # The tool was called with the real user id (the model only saw its token).
    steps = await steps_store.load_steps(db, done[2].id)
    assert steps["transactions"]["user_id"] == "203.0.113.77"
