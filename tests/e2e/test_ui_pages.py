"""The dashboard's server-rendered pages: Recent jobs filtered by state and type."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import httpx
import pytest

from backburner.config import Settings
from tests.conftest import Keys, auth, serving
from tests.e2e.test_api_jobs import create, until_done

NO_HEADER = {"Authorization": ""}
FORM = {**NO_HEADER, "Origin": "http://test"}  # what a browser sends with a form post


async def test_recent_jobs_filter_by_state_and_type(api: httpx.AsyncClient, keys: Keys) -> None:
    ok = (await create(api, {"type": "noop"})).json()["job_id"]
    broken = (await create(api, {"type": "test_broken"})).json()["job_id"]
    for job_id in (ok, broken):
        await until_done(api, job_id)
    await api.get(f"/?token={keys.alice}", follow_redirects=False)

    async def shown(query: str) -> set[str]:
        page = (await api.get(f"/{query}", headers=NO_HEADER)).text
        return {job_id for job_id in (ok, broken) if f'data-job-id="{job_id}"' in page}

    assert await shown("") == {ok, broken}
    assert await shown("?status=failed") == {broken}
    assert await shown("?status=succeeded&type=noop") == {ok}
    assert await shown("?type=test_broken") == {broken}
    assert await shown("?status=pending") == set()
    # Unknown values show everything instead of an error page.
    assert await shown("?status=exploded&type=nope") == {ok, broken}
    page = (await api.get("/?status=failed", headers=NO_HEADER)).text
    assert '<option value="failed" selected>' in page
    assert 'data-status="failed"' in page


async def signed_in(api: httpx.AsyncClient, key: str) -> None:
    answer = await api.get(f"/?token={key}", follow_redirects=False)
    assert answer.status_code == 303


async def test_a_refused_form_stores_neither_documents_nor_a_job(
    api_only: httpx.AsyncClient, keys: Keys
) -> None:
    await signed_in(api_only, keys.alice)
    files = [
        ("document_ids", ("good.txt", b"A plain note about ferries.", "text/plain")),
        ("document_ids", ("bad.pdf", b"not a pdf at all", "application/pdf")),
    ]
    answer = await api_only.post(
        "/new", data={"type": "summarize_documents"}, files=files, headers=FORM
    )
    assert answer.status_code == 422
    assert "bad.pdf: the file is named .pdf but is not a PDF" in answer.text
    assert (await api_only.get("/api/jobs")).json()["items"] == []
    # A payload that does not fit the type: nothing stored either, the field says why.
    answer = await api_only.post(
        "/new",
        data={"type": "generate_report", "user_id": "u 1", "period": "2026-13"},
        headers=FORM,
    )
    assert answer.status_code == 422
    assert "should match pattern" in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert (await api_only.get("/api/jobs")).json()["items"] == []
    # An unknown type is a clear answer too, not a 500.
    answer = await api_only.post("/new", data={"type": "nope"}, headers=FORM)
    assert answer.status_code == 422
    assert "Pick a job type" in answer.text


async def test_a_form_creates_the_job_and_moves_to_its_page(
    api_only: httpx.AsyncClient, keys: Keys
) -> None:
    await signed_in(api_only, keys.alice)
    answer = await api_only.post(
        "/new",
        data={"type": "summarize_documents", "summary_style": "detailed"},
        files=[("document_ids", ("a.md", b"# Minutes\nThe board met.", "text/markdown"))],
        headers=FORM,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    job_id = answer.headers["location"].removeprefix("/jobs/")
    job = (await api_only.get(f"/api/jobs/{job_id}")).json()
    assert (job["type"], job["status"]) == ("summarize_documents", "pending")
    page = await api_only.get(f"/jobs/{job_id}", headers=NO_HEADER)
    assert "Queued / Waiting to start" in page.text
    assert '"summary_style": "detailed"' in page.text
    found = re.search(r'"document_ids": \[\s*"([^"]+)"', page.text)
    assert found is not None
    document = (await api_only.get(f"/api/documents/{found[1]}")).json()
    assert document["filename"] == "a.md"
    assert document["text"].startswith("# Minutes")


async def test_forms_posted_from_another_site_or_signed_out_are_refused(
    api_only: httpx.AsyncClient, keys: Keys
) -> None:
    created = (await create(api_only, {"type": "noop"})).json()["job_id"]
    answer = await api_only.post(f"/jobs/{created}/cancel", headers=FORM)
    assert answer.status_code == 401  # no session: the sign-in page
    await signed_in(api_only, keys.alice)
    # Another site, another port of this host (same site, other origin), a sandboxed
    # frame, and no Origin at all: each refused, and nothing changes.
    for origin in ("https://evil.example", "http://test:8081", "https://test", "null", None):
        headers = NO_HEADER if origin is None else {**NO_HEADER, "Origin": origin}
        answer = await api_only.post(f"/jobs/{created}/cancel", headers=headers)
        assert answer.status_code == 403, origin
    assert (await api_only.get(f"/api/jobs/{created}")).json()["status"] == "pending"
    answer = await api_only.post(f"/jobs/{created}/cancel", headers=FORM, follow_redirects=False)
    assert answer.status_code == 303
    assert (await api_only.get(f"/api/jobs/{created}")).json()["status"] == "canceled"
    # Cancelling again is a conflict, said on the job's page.
    answer = await api_only.post(f"/jobs/{created}/cancel", headers=FORM)
    assert answer.status_code == 409
    assert "already" in answer.text or "canceled" in answer.text


async def test_the_result_alone_and_as_a_download(api: httpx.AsyncClient, keys: Keys) -> None:
    job_id = (await create(api, {"type": "noop", "payload": {"echo": {"n": 1}}})).json()["job_id"]
    await until_done(api, job_id)
    answer = await api.get(f"/api/jobs/{job_id}/result")
    assert answer.status_code == 200
    assert answer.json()["echo"] == {"n": 1}
    assert "content-disposition" not in answer.headers
    answer = await api.get(f"/api/jobs/{job_id}/result?download=1")
    assert answer.headers["content-disposition"] == (f'attachment; filename="noop-{job_id}.json"')
    bob = await api.get(
        f"/api/jobs/{job_id}/result", headers={"Authorization": f"Bearer {keys.bob}"}
    )
    assert bob.status_code == 404


async def test_no_result_before_the_job_succeeds(api_only: httpx.AsyncClient) -> None:
    job_id = (await create(api_only, {"type": "noop"})).json()["job_id"]
    answer = await api_only.get(f"/api/jobs/{job_id}/result")
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    assert "pending" in answer.json()["detail"]


async def test_the_operator_page_is_for_admins(api: httpx.AsyncClient, keys: Keys) -> None:
    await until_done(api, (await create(api, {"type": "noop"})).json()["job_id"])
    await signed_in(api, keys.alice)
    member = await api.get("/ops", headers=NO_HEADER)
    assert member.status_code == 404
    await signed_in(api, keys.admin)
    admin = await api.get("/ops", headers=NO_HEADER)
    assert admin.status_code == 200
    assert admin.text.count('role="img"') == 15  # the queue, then 7 charts per window
    assert "1 jobs, 0.0% failed" in admin.text


async def test_every_answer_says_how_long_the_service_took(api: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/api/jobs", "/"):
        timing = (await api.get(path)).headers["server-timing"]
        assert re.fullmatch(r"app;dur=\d+\.\d", timing), timing


async def test_a_forms_options_set_priority_deadline_and_email(
    api_only: httpx.AsyncClient, keys: Keys
) -> None:
    await signed_in(api_only, keys.alice)
    form = {"type": "noop", "job.priority": "7", "job.deadline_hours": "3"}
    answer = await api_only.post(
        "/new",
        data={**form, "job.notify_email": "ops@example.com, lead@example.com"},
        headers=FORM,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    job = (await api_only.get(answer.headers["location"].replace("/jobs/", "/api/jobs/"))).json()
    assert job["priority"] == 7
    created = datetime.fromisoformat(job["created_at"])
    assert datetime.fromisoformat(job["deadline_at"]) - created == timedelta(hours=3)
    refused = await api_only.post(
        "/new",
        data={**form, "job.deadline_hours": "500", "job.notify_email": "not-an-address"},
        headers=FORM,
    )
    assert refused.status_code == 422
    assert "Needed within (hours): must be more than 0 and at most 168 hours" in refused.text
    assert "E-mail me when it ends: not an e-mail address" in refused.text
    assert len((await api_only.get("/api/jobs")).json()["items"]) == 1  # only the first


async def test_a_failed_job_offers_support_when_there_is_some(
    settings: Settings, keys: Keys
) -> None:
    with_support = settings.model_copy(update={"support_url": "mailto:help@example.com"})
    for given, shown in ((settings, False), (with_support, True)):
        async with serving(given, keys.alice, embed_worker=True) as api:
            await signed_in(api, keys.alice)
            failed = (await create(api, {"type": "test_broken"})).json()["job_id"]
            assert (await until_done(api, failed))["status"] == "failed"
            ok = (await create(api, {"type": "noop"})).json()["job_id"]
            await until_done(api, ok)
            failed_page = (await api.get(f"/jobs/{failed}")).text
            assert ('href="mailto:help@example.com"' in failed_page) is shown
            assert "Contact support" not in (await api.get(f"/jobs/{ok}")).text


def test_a_support_url_must_be_a_link() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(_env_file=None, support_url="javascript:alert(1)")  # type: ignore[call-arg]


async def test_a_job_of_many_model_calls_reads_by_step_and_by_page(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    from backburner.jobs.sample_corpus import reports

    ids = []
    for item in reports(6, pages=5):  # about 20,000 characters each: ten parts of 2,000
        name = item.filename.replace(".pdf", ".txt")
        answer = await api.post(
            "/api/documents", files={"file": (name, item.text.encode(), "text/plain")}
        )
        ids.append(answer.json()["document_id"])
    made = await api.post(
        "/api/jobs", json={"type": "summarize_documents", "payload": {"document_ids": ids}}
    )
    job_id = made.json()["job_id"]
    assert (await until_done(api, job_id))["status"] == "succeeded"
    calls = (await api.get(f"/api/jobs/{job_id}/model-calls")).json()["items"]
    assert len(calls) > 60
    await signed_in(api, keys.alice)
    page = await api.get(f"/jobs/{job_id}", headers={"Authorization": ""})
    assert page.status_code == 200
    assert len(page.content) < 100_000
    html = page.text
    maps = sum(c["key"].startswith("map/") for c in calls)
    assert re.search(rf'<th scope="row">map</th><td class="num">{maps}</td>', html)
    assert f"Calls 1\N{EN DASH}50 of {len(calls)}" in html
    assert "orion-dynamics-annual-report.txt · part 1" in html  # steps named by file
    assert html.count("<code>resp_") == 50
    second = await api.get(f"/jobs/{job_id}", params={"calls": 50}, headers={"Authorization": ""})
    shown = min(50, len(calls) - 50)
    assert f"Calls 51\N{EN DASH}{50 + shown} of {len(calls)}" in second.text
    assert second.text.count("<code>resp_") == shown
    assert "?calls=0#calls" in second.text  # back to the first page
    # Odd offsets land on a page, never an error.
    for offset in ("-5", "99999", "abc"):
        odd = await api.get(
            f"/jobs/{job_id}", params={"calls": offset}, headers={"Authorization": ""}
        )
        assert odd.status_code in (200, 422), offset


async def test_files_uploaded_one_by_one_become_the_forms_documents(
    api_only: httpx.AsyncClient, keys: Keys, settings: Settings
) -> None:
    """The page's file-by-file uploads: each answers for itself, and the form posts their
    ids. Someone else's document id posted in the form is refused; nothing is made."""
    bobs = await api_only.post(
        "/api/documents",
        files={"file": ("bob.txt", b"Bob's private note.")},
        headers=auth(keys.bob),
    )
    await signed_in(api_only, keys.alice)
    upload = "/documents/upload"
    good = await api_only.post(
        upload, files={"file": ("good.txt", b"A plain note about ferries.")}, headers=FORM
    )
    assert good.status_code == 201
    document_id = good.json()["document_id"]
    again = await api_only.post(
        upload, files={"file": ("again.txt", b"A plain note about ferries.")}, headers=FORM
    )
    assert (again.status_code, again.json()["document_id"]) == (200, document_id)
    bad = await api_only.post(
        upload, files={"file": ("scan.pdf", b"not a pdf", "application/pdf")}, headers=FORM
    )
    assert bad.status_code == 422
    assert bad.json()["filename"] == "scan.pdf"
    assert "not a PDF" in bad.json()["detail"]
    assert (await api_only.post(upload, data={"x": "y"}, headers=FORM)).status_code == 422
    too_big = b"x" * (settings.max_document_bytes + 1)
    huge = await api_only.post(upload, files={"file": ("big.txt", too_big)}, headers=FORM)
    assert huge.status_code == 413
    elsewhere = await api_only.post(
        upload,
        files={"file": ("x.txt", b"from another site")},
        headers={**FORM, "Origin": "http://evil.example"},
    )
    assert elsewhere.status_code == 403
    made = await api_only.post(
        "/new",
        data={"type": "summarize_documents", "document_ids:document_id": document_id},
        headers=FORM,
        follow_redirects=False,
    )
    assert made.status_code == 303
    theirs = await api_only.post(
        "/new",
        data={
            "type": "summarize_documents",
            "document_ids:document_id": bobs.json()["document_id"],
        },
        headers=FORM,
    )
    assert theirs.status_code == 422
    assert "no such document" in theirs.text
    assert len((await api_only.get("/api/jobs")).json()["items"]) == 1
    api_only.cookies.clear()
    signed_out = await api_only.post(
        upload, files={"file": ("x.txt", b"hello")}, headers={**FORM, "Authorization": ""}
    )
    assert signed_out.status_code == 401
