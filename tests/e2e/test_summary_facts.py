"""A summary of many documents keeps what each one said: a part per document (its file
name, summary and key facts), and overall key points that grow with the number of
documents. Measured as the issue asks, on the generated corpus of annual reports."""

from __future__ import annotations

import httpx

from backburner.jobs.evals.metrics import facts_found
from backburner.jobs.evals.scoring import text_of
from backburner.jobs.sample_corpus import reports
from backburner.jobs.types.summarize import SummaryStyle, overall_length
from tests.e2e.test_api_jobs import until_done


async def test_each_document_keeps_its_facts_and_is_named(api: httpx.AsyncClient) -> None:
    corpus = reports(8, pages=3)
    ids = []
    for item in corpus:
        name = item.filename.replace(".pdf", ".txt")
        uploaded = await api.post(
            "/api/documents", files={"file": (name, item.text.encode(), "text/plain")}
        )
        ids.append(uploaded.json()["document_id"])
    created = await api.post(
        "/api/jobs",
        json={"type": "summarize_documents", "payload": {"document_ids": ids}},
    )
    done = await until_done(api, created.json()["job_id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    parts = result["document_summaries"]
    assert [p["document_id"] for p in parts] == ids  # in the order given
    assert [p["filename"] for p in parts] == [i.filename.replace(".pdf", ".txt") for i in corpus]
    for part, item in zip(parts, corpus, strict=True):
        assert all(facts_found(item.facts, text_of(part))), (item.facts, part)
        assert part["summary"]
        assert part["key_facts"]
    sentences, points = overall_length(SummaryStyle.EXECUTIVE, len(corpus))
    assert (sentences, points) == (4, 12)
    assert len(result["key_points"]) == points
    assert result["documents"] == len(corpus)
    assert result["chunks"] > len(corpus)  # long enough to need chunking (2,000 characters)


def test_the_overall_length_grows_with_the_documents_within_the_style() -> None:
    assert overall_length(SummaryStyle.EXECUTIVE, 1) == (3, 5)
    assert overall_length(SummaryStyle.EXECUTIVE, 150) == (6, 15)
    assert overall_length(SummaryStyle.DETAILED, 3) == (8, 10)
    assert overall_length(SummaryStyle.BULLETS, 200) == (4, 40)
