"""What a summary of many documents keeps: per-document fact recall and documents named,
on a generated corpus of annual reports (backburner.jobs.sample_corpus: each names its own
company, revenue figure and main risk among pages of ordinary prose).

The job runs through the real service in this process (API, embedded worker, SQLite, the
offline engine) exactly as a user's upload would: documents posted to /api/documents, a
`summarize_documents` job, the result read back. Facts are counted with the evaluation
metric (`backburner.jobs.evals.metrics.facts_found`).

    python bench/facts.py                 # 150 documents of 14 pages, as the issue's test
    python bench/facts.py --docs 20 --pages 4
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import asyncio
import time

from bench_support import describe, service_in_process

from backburner.jobs.evals.metrics import facts_found
from backburner.jobs.evals.scoring import text_of
from backburner.jobs.sample_corpus import reports


async def run(docs: int, pages: int, style: str) -> None:
    corpus = reports(docs, pages=pages)
    async with service_in_process(offline_latency_s=0.0) as api:
        started = time.perf_counter()
        ids = []
        for item in corpus:
            name = item.filename.replace(".pdf", ".txt")
            answer = await api.post(
                "/api/documents", files={"file": (name, item.text.encode(), "text/plain")}
            )
            answer.raise_for_status()
            ids.append(answer.json()["document_id"])
        uploaded = time.perf_counter() - started
        job = await api.post(
            "/api/jobs",
            json={
                "type": "summarize_documents",
                "payload": {"document_ids": ids, "summary_style": style},
            },
        )
        job_id = job.json()["job_id"]
        while True:
            body = (await api.get(f"/api/jobs/{job_id}")).json()
            if body["status"] in ("succeeded", "failed", "canceled"):
                break
            await asyncio.sleep(0.2)
        took = time.perf_counter() - started - uploaded
        calls = (await api.get(f"/api/jobs/{job_id}/model-calls")).json()["items"]
    assert body["status"] == "succeeded", body
    result = body["result"]
    parts = {part["document_id"]: part for part in result.get("document_summaries", [])}
    kept = [
        facts_found(item.facts, text_of(parts.get(doc_id, {})))
        for item, doc_id in zip(corpus, ids, strict=True)
    ]
    per_doc = [sum(found) / len(found) for found in kept]
    overall_text = result["summary"] + "\n" + "\n".join(result["key_points"])
    in_overall = [facts_found(item.facts, overall_text) for item in corpus]
    named = sum(
        1
        for item, doc_id in zip(corpus, ids, strict=True)
        if parts.get(doc_id, {}).get("filename", "").startswith(item.filename.replace(".pdf", ""))
    )
    characters = sum(len(item.text) for item in corpus)
    print(describe())
    print(f"{docs} documents, {pages} pages each, {characters:,} characters, style {style}")
    print(f"upload {uploaded:.1f} s, job {took:.1f} s, {len(calls)} model calls")
    facts = sum(len(found) for found in kept)
    print(
        f"per-document fact recall: {sum(map(sum, kept))}/{facts} = "
        f"{sum(map(sum, kept)) / facts:.1%} (worst document {min(per_doc):.0%})"
    )
    print(
        f"facts in the overall summary and key points: {sum(map(sum, in_overall))}/{facts} "
        f"({len(result['key_points'])} key points)"
    )
    print(f"documents named in the result: {named}/{docs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--pages", type=int, default=14)
    parser.add_argument("--style", default="executive")
    args = parser.parse_args()
    asyncio.run(run(args.docs, args.pages, args.style))


if __name__ == "__main__":
    main()
