"""Object storage end to end: originals kept (sealed) and downloadable, large results as
`result_url` in the API, the callback and the e-mail, objects deleted with their
documents and jobs; on the local filesystem (the default) and on a real S3-compatible
server on loopback (moto), including that server going away and coming back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from backburner.config import Settings
from backburner.storage import storage_location
from backburner.store import Database
from backburner.store.schema import documents as documents_table
from backburner.store.schema import jobs as jobs_table
from tests.conftest import Keys, auth, fast_settings, serving, wait_for
from tests.e2e.test_api_documents import ARTICLE, make_pdf, upload
from tests.e2e.test_api_jobs import assert_problem, until_done
from tests.receivers import Receiver, receiving, smtp_server
from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, Gate, S3Server, s3_server

REPORTS = [
    f"Report {n}. Northwind Traders {n} grew revenue by {n + 11} percent to {n * 3} million "
    f"dollars in 2025. Chief executive Dana Reyes {n} named supply costs as the main risk. "
    + "The board approved a new warehouse in the northern district. "
    * 12
    for n in range(1, 4)
]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def s3_settings(
    db_url: str, s3: S3Server, bucket: str, *, port: int | None = None, **more: Any
) -> Settings:
    endpoint = f"http://127.0.0.1:{port}" if port else s3.endpoint
    return fast_settings(
        db_url,
        storage_url=f"s3://{bucket}/backburner",
        storage_endpoint=endpoint,
        storage_region=REGION,
        storage_access_key_id=ACCESS_KEY,
        storage_secret_access_key=SECRET_KEY,
        **more,
    )


def local_objects(settings: Settings) -> list[Path]:
    root = Path(storage_location(settings))
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_an_original_is_kept_sealed_downloadable_and_deleted_with_its_document(
    settings: Settings, keys: Keys
) -> None:
    pdf = make_pdf(ARTICLE)
    name = "Quarterly report \u00e9.pdf"
    async with serving(settings, keys.alice, embed_worker=False) as api:
        created = await upload(api, name, pdf)
        assert created.status_code == 201, created.text
        document = created.json()
        assert (
            document["content_url"]
            == f"http://test/api/documents/{document['document_id']}/content"
        )

        got = await api.get(document["content_url"])
        assert got.status_code == 200
        assert got.content == pdf
        assert got.headers["content-type"] == "application/pdf"
        disposition = got.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="Quarterly report _.pdf"')
        assert "filename*=UTF-8''Quarterly%20report%20%C3%A9.pdf" in disposition

        # At rest the object is sealed: neither the PDF nor its words are in it.
        [stored] = local_objects(settings)
        raw = stored.read_bytes()
        assert raw.startswith(b"bbx1:")
        assert b"%PDF" not in raw
        assert b"Bus fares" not in raw

        # Another owner sees nothing; the same file again is the same document, no new object.
        assert_problem(await api.get(document["content_url"], headers=auth(keys.bob)), 404)
        again = await upload(api, "copy.pdf", pdf)
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
        assert again.json()["document_id"] == document["document_id"]
        assert len(local_objects(settings)) == 1

        audit = await api.get(
            "/api/audit", params={"action": "document.downloaded"}, headers=auth(keys.admin)
        )
        assert [e["target_id"] for e in audit.json()["items"]] == [document["document_id"]]

        assert (await api.delete(f"/api/documents/{document['document_id']}")).status_code == 204
        assert local_objects(settings) == []
        assert_problem(await api.get(document["content_url"]), 404)


async def test_a_large_result_is_an_object_linked_from_the_api_callback_and_email(
    db_url: str, keys: Keys, db: Database
) -> None:
    with smtp_server() as (smtp_port, inbox):
        settings = fast_settings(
            db_url,
            result_inline_bytes=1024,
            webhook_allowed_hosts=["127.0.0.1"],
            webhook_allow_http=True,
            notify_retry_base_seconds=0.05,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_starttls=False,
        )
        async with (
            receiving(Receiver()) as receiver,
            serving(settings, keys.alice, embed_worker=True) as api,
        ):
            ids = [
                (await upload(api, f"report-{n}.txt", text.encode())).json()["document_id"]
                for n, text in enumerate(REPORTS, start=1)
            ]
            created = await api.post(
                "/api/jobs",
                json={
                    "type": "summarize_documents",
                    "payload": {"document_ids": ids},
                    "callback_url": f"{receiver.base}/hook",
                    "notify": {"email": ["dana@example.com"]},
                },
            )
            job_id = created.json()["job_id"]
            job = await until_done(api, job_id)
            assert job["status"] == "succeeded", job
            # Not in the job: linked, at the URL the API was reached at (no PUBLIC_URL set).
            assert job["result"] is None
            assert job["result_url"] == f"http://test/api/jobs/{job_id}/result"
            assert job["result_bytes"] > 1024

            result = (await api.get(job["result_url"])).json()
            assert [d["filename"] for d in result["document_summaries"]] == [
                "report-1.txt",
                "report-2.txt",
                "report-3.txt",
            ]
            assert (
                len(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())
                == job["result_bytes"]
            )
            assert_problem(await api.get(job["result_url"], headers=auth(keys.bob)), 404)
            # The dashboard reads it from the store too: the page and the download.
            assert (
                await api.get(f"/?token={keys.alice}", follow_redirects=False)
            ).status_code == 303
            page = await api.get(f"/jobs/{job_id}")
            assert "report-2.txt" in page.text
            saved = await api.get(f"/jobs/{job_id}/result.json")
            assert saved.json() == result

            async with db.read() as conn:
                row = (
                    await conn.execute(
                        sa.select(jobs_table.c.result, jobs_table.c.result_object).where(
                            jobs_table.c.id == job_id
                        )
                    )
                ).one()
            assert row.result is None
            assert row.result_object.startswith(f"results/{job_id}/")

            await wait_for(lambda: receiver.received and inbox, within=15)
            callback = json.loads(receiver.received[0].body)
            assert callback["result"] is None
            assert callback["result_url"] == f"http://test/api/jobs/{job_id}/result"
            [mail] = inbox
            text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert f"http://test/jobs/{job_id}" in text
            assert "Documents: 3" in text  # the excerpt, read from the object

            assert (await api.delete(f"/api/jobs/{job_id}")).status_code == 204
            result_objects = [p for p in local_objects(settings) if "results" in p.parts]
            assert result_objects == []


async def test_objects_live_in_an_s3_compatible_store(
    db_url: str, keys: Keys, s3: S3Server
) -> None:
    bucket = s3.new_bucket()
    settings = s3_settings(db_url, s3, bucket, result_inline_bytes=1024)
    async with serving(settings, keys.alice, embed_worker=True) as api:
        pdf = make_pdf(ARTICLE)
        document = (await upload(api, "report.pdf", pdf)).json()
        key = f"backburner/documents/{document['document_id']}"
        assert s3.keys(bucket) == [key]
        assert s3.body(bucket, key).startswith(b"bbx1:")  # sealed before it left
        assert (await api.get(document["content_url"])).content == pdf

        ids = [document["document_id"]] + [
            (await upload(api, f"r{n}.txt", text.encode())).json()["document_id"]
            for n, text in enumerate(REPORTS)
        ]
        job_id = (
            await api.post(
                "/api/jobs", json={"type": "summarize_documents", "payload": {"document_ids": ids}}
            )
        ).json()["job_id"]
        job = await until_done(api, job_id)
        assert job["result"] is None
        assert job["result_url"]
        assert (await api.get(job["result_url"])).json()["documents"] == 4
        assert any(k.startswith(f"backburner/results/{job_id}/") for k in s3.keys(bucket))

        assert (await api.delete(f"/api/jobs/{job_id}")).status_code == 204
        for document_id in ids:
            assert (await api.delete(f"/api/documents/{document_id}")).status_code == 204
        assert s3.keys(bucket) == []


@pytest.fixture
async def gate(s3: S3Server) -> AsyncIterator[Gate]:
    gate = Gate(int(s3.endpoint.rsplit(":", 1)[1]))
    await gate.start()
    yield gate
    await gate.stop()


async def test_a_store_that_goes_away_loses_nothing_and_pays_nothing_twice(
    db_url: str, keys: Keys, db: Database, s3: S3Server, gate: Gate
) -> None:
    bucket = s3.new_bucket()
    settings = s3_settings(db_url, s3, bucket, port=gate.port, result_inline_bytes=1024)
    async with serving(settings, keys.alice, embed_worker=True) as api:
        ids = [
            (await upload(api, f"r{n}.txt", text.encode())).json()["document_id"]
            for n, text in enumerate(REPORTS)
        ]
        gate.cut()
        # An upload while the store is away: a clear 503, and nothing stored.
        refused = await upload(api, "late.txt", b"A report that arrives while S3 is down.")
        assert_problem(refused, 503)
        assert refused.headers["retry-after"]
        async with db.read() as conn:
            count = (
                await conn.execute(sa.select(sa.func.count()).select_from(documents_table))
            ).scalar()
        assert count == len(ids)

        # A job whose large result cannot be stored: the attempt fails as retryable and
        # waits; its model calls are memoised, so the next attempt pays nothing again.
        job_id = (
            await api.post(
                "/api/jobs", json={"type": "summarize_documents", "payload": {"document_ids": ids}}
            )
        ).json()["job_id"]

        async def retried() -> dict[str, Any] | None:
            job: dict[str, Any] = (await api.get(f"/api/jobs/{job_id}")).json()
            return job if job["retry_count"] >= 1 else None

        waiting = await wait_for(retried, within=30)
        assert waiting["error"]["kind"] == "storage_unavailable"
        calls_before = waiting["usage"]["model_calls"]
        gate.shut = False
        job = await until_done(api, job_id)
        assert job["status"] == "succeeded", job
        assert job["result_url"]
        assert (await api.get(job["result_url"])).status_code == 200
        # Every model call was asked once: the retry replayed them from memory.
        assert job["usage"]["model_calls"] == calls_before
        assert job["usage"]["responses"] == calls_before
