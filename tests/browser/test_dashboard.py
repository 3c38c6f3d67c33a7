"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): sign in, watch
jobs change live without a reload, the toast when one ends, owners kept apart, a new job
from dropped documents, cancel and retry from the job's page, results drawn for people,
the operator charts. The main pages' screenshots land in build/screenshots."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse
from starlette.routing import Route

from backburner.config import Settings
from backburner.runtime import create_app
from tests.conftest import Keys, auth, fast_settings
from tests.e2e.test_api_documents import make_pdf
from tests.servers import serve_on_loopback

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), (
        "Chromium is missing: `apt-get install chromium` (make test does it)"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def site(settings: Settings) -> AsyncIterator[str]:
    app = create_app(settings, embed_worker=True, migrate_on_start=False)
    async with serve_on_loopback(app) as base:
        yield base


async def signed_in(browser: Browser, base: str, key: str, **context: object) -> Page:
    page = await (await browser.new_context(**context)).new_page()  # type: ignore[arg-type]
    await page.goto(f"{base}/?token={key}")
    await expect(page).to_have_url(f"{base}/")
    await expect(page.get_by_role("heading", name="Recent jobs")).to_be_visible()
    return page


async def test_jobs_move_from_queued_to_completed_without_reload(site: str, keys: Keys) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        page = await signed_in(browser, site, keys.alice)
        admin = await signed_in(browser, site, keys.admin)
        await page.evaluate("window.sameDocument = true")
        created = await client.post(
            "/api/jobs",
            json={"type": "test_slow_no_timeout", "payload": {"seconds": 1.5}},
            headers=auth(keys.alice),
        )
        job_id = created.json()["job_id"]
        bobs = await client.post("/api/jobs", json={"type": "noop"}, headers=auth(keys.bob))
        row = page.locator(f'tr[data-job-id="{job_id}"]')
        await expect(row.locator(".state")).to_have_text("Processing / In progress", timeout=10_000)
        await expect(row.locator(".state")).to_have_text("Completed", timeout=10_000)
        toast = page.get_by_role("status").filter(has_text=job_id[:8])
        await expect(toast).to_contain_text("Completed")
        await expect(toast.get_by_role("link", name="View results")).to_have_attribute(
            "href", f"/jobs/{job_id}"
        )
        assert await page.evaluate("window.sameDocument") is True  # no reload happened
        await expect(row.locator("progress")).to_have_js_property("value", 1)
        # Bob's job never shows on Alice's page.
        bob_row = page.locator(f'tr[data-job-id="{bobs.json()["job_id"]}"]')
        await expect(bob_row).to_have_count(0)
        # The admin's page follows every owner's jobs, but the toasts are Alice's.
        admin_row = admin.locator(f'tr[data-job-id="{job_id}"]')
        await expect(admin_row.locator(".state")).to_have_text("Completed")
        await expect(admin.locator(f'tr[data-job-id="{bobs.json()["job_id"]}"]')).to_have_count(1)
        await expect(admin.get_by_role("status")).to_have_count(0)
        await shot(page, "recent-jobs-member")
        await toast.get_by_role("link", name="View results").click()
        await expect(page).to_have_url(f"{site}/jobs/{job_id}")
        await expect(page.get_by_text("Completed").first).to_be_visible()
        await shot(page, "job-done")


async def test_a_member_cannot_open_another_owners_job(site: str, keys: Keys) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        bobs = await client.post("/api/jobs", json={"type": "noop"}, headers=auth(keys.bob))
        page = await signed_in(browser, site, keys.alice)
        response = await page.goto(f"{site}/jobs/{bobs.json()['job_id']}")
        assert response is not None
        assert response.status == 404


async def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)


async def drop_files(page: Page, zone: str, files: list[tuple[str, str, bytes]]) -> None:
    """Drag files from the desktop onto a drop zone, as the browser delivers them (their
    bytes cross to the page as base64: a list of numbers is slow for megabytes)."""
    transfer = await page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, type, encoded] of files) {
                const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type }));
            }
            return transfer;
        }""",
        [[name, kind, base64.b64encode(data).decode()] for name, kind, data in files],
    )
    await page.dispatch_event(zone, "dragover", {"dataTransfer": transfer})
    await page.dispatch_event(zone, "drop", {"dataTransfer": transfer})


ARTICLE = (
    "The harbour board met on Tuesday. It approved a new ferry timetable that adds two "
    "evening crossings from March, and it agreed to repair the north pier before summer. "
)


async def test_dropped_documents_become_a_summary_that_completes_live(
    db_url: str, keys: Keys
) -> None:
    # The page first serves without a worker, so the job is seen waiting; then a worker
    # process comes up and the same page, never reloaded, follows the job to its end.
    settings = fast_settings(db_url, offline_latency_s=0.6)
    site_app = create_app(settings, embed_worker=False, migrate_on_start=False)
    async with serve_on_loopback(site_app) as site, chromium() as browser:
        page = await signed_in(browser, site, keys.alice)
        await page.get_by_role("link", name="New job").first.click()
        await page.get_by_label("Job type").select_option("summarize_documents")
        await expect(page).to_have_url(f"{site}/new?type=summarize_documents")
        await drop_files(
            page,
            ".drop",
            [
                ("minutes.pdf", "application/pdf", make_pdf(ARTICLE * 3)),
                ("notes.txt", "text/plain", (ARTICLE * 5).encode()),
            ],
        )
        chosen = page.locator(".chosen li")
        await expect(chosen).to_have_count(2)
        await expect(chosen.first).to_contain_text("minutes.pdf")
        await page.get_by_label("Summary style").select_option("bullets")
        await shot(page, "new-job")
        await page.get_by_role("button", name="Submit job").click()
        await expect(page).to_have_url(re.compile(rf"{site}/jobs/[0-9a-f-]{{36}}$"))
        job_id = page.url.rsplit("/", 1)[1]
        state = page.locator("#state")
        await expect(state).to_contain_text("Queued / Waiting to start")
        await page.evaluate(
            """() => {
                window.sameDocument = true;
                window.seen = [];
                const body = document.getElementById("job-body");
                new MutationObserver(() => {
                    const text = document.getElementById("state")?.textContent.trim();
                    if (text && window.seen.at(-1) !== text) window.seen.push(text);
                }).observe(body, { childList: true, subtree: true, characterData: true });
            }"""
        )
        worker_app = create_app(settings, embed_worker=True, migrate_on_start=False)
        async with serve_on_loopback(worker_app):
            await expect(state).to_contain_text("Completed", timeout=20_000)
        seen = await page.evaluate("window.seen")
        assert any(text.startswith("Processing / In progress") for text in seen), seen
        assert await page.evaluate("window.sameDocument") is True
        toast = page.get_by_role("status").filter(has_text=job_id[:8])
        await expect(toast).to_contain_text("Completed")
        result = page.get_by_role("region", name="Result")
        await expect(result.get_by_role("heading", name="Summary", level=3)).to_be_visible()
        # What each document said, under its file name.
        await expect(result.get_by_role("heading", name="Document summaries")).to_be_visible()
        await expect(result.get_by_role("heading", name="minutes.pdf", level=4)).to_be_visible()
        assert await result.locator("h3:has-text('Key points') + ul li").count() >= 2
        await expect(result.locator("dt:text-is('Documents') + dd")).to_have_text("2")
        await shot(page, "job-summary")
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Download result").click()
        download = await download_info.value
        assert download.suggested_filename == f"summarize_documents-{job_id}.json"
        saved = json.loads(await asyncio.to_thread(Path(await download.path()).read_text))
        assert saved["documents"] == 2
        assert saved["key_points"]


async def test_a_form_that_does_not_fit_the_type_says_why_and_stores_nothing(
    site: str, keys: Keys
) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        page = await signed_in(browser, site, keys.alice)
        await page.goto(f"{site}/new?type=classify_leads")
        await page.get_by_role("textbox", name="Labels").fill("hot")  # two labels are the least
        leads = '[{"id": "1", "notes": "wants a demo"}]'
        await page.get_by_role("textbox", name="Leads").fill(leads)
        await page.get_by_role("button", name="Submit job").click()
        await expect(page.get_by_role("alert").filter(has_text="Labels")).to_contain_text(
            "at least 2"
        )
        assert await page.get_by_role("textbox", name="Leads").input_value() == leads
        listed = await client.get("/api/jobs", headers=auth(keys.alice))
        assert listed.json()["items"] == []
        await page.goto(f"{site}/new?type=summarize_documents")
        await page.get_by_role("button", name="Submit job").click()
        await expect(page.get_by_role("alert").filter(has_text="Documents")).to_be_visible()


async def wait_for(
    client: httpx.AsyncClient, key: str, job_id: str, status: str, within: float = 30.0
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        job = (await client.get(f"/api/jobs/{job_id}", headers=auth(key))).json()
        if job["status"] == status:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} is {job['status']}, not {status}")
        await asyncio.sleep(0.05)


async def test_cancel_a_long_job_and_retry_a_failed_one(
    site: str, keys: Keys, tmp_path: Path
) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        long = await client.post(
            "/api/jobs",
            json={"type": "test_slow_no_timeout", "payload": {"seconds": 60}},
            headers=auth(keys.alice),
        )
        page = await signed_in(browser, site, keys.alice)
        await page.goto(f"{site}/jobs/{long.json()['job_id']}")
        await expect(page.locator("#state")).to_contain_text("Processing", timeout=10_000)
        await page.get_by_role("button", name="Cancel").click()
        await expect(page.locator("#state")).to_contain_text("Canceled", timeout=10_000)
        await expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
        await expect(page.get_by_role("alert")).to_contain_text("canceled")

        fixed_later = tmp_path / "input.csv"
        failing = await client.post(
            "/api/jobs",
            json={"type": "test_needs_file", "payload": {"path": str(fixed_later)}},
            headers=auth(keys.alice),
        )
        job_id = failing.json()["job_id"]
        await wait_for(client, keys.alice, job_id, "failed")
        await page.goto(f"{site}/jobs/{job_id}")
        await expect(page.locator("#state")).to_contain_text("Failed \u2013 Retry")
        await expect(page.get_by_role("alert")).to_contain_text("invalid_input")
        await expect(page.get_by_role("alert")).to_contain_text("input.csv is missing")
        await shot(page, "job-failed")
        fixed_later.write_text("month,total\n")
        await page.get_by_role("button", name="Retry").click()
        await expect(page.locator("#state")).to_contain_text("Completed", timeout=10_000)
        await expect(page.get_by_role("button", name="Retry")).to_have_count(0)
        # Bob cannot cancel Alice's job through the page either.
        bob = await signed_in(browser, site, keys.bob)
        answer = await bob.request.post(f"{site}/jobs/{job_id}/cancel", headers={"Origin": site})
        assert answer.status == 404


async def test_classifications_are_a_sortable_table(site: str, keys: Keys) -> None:
    # The offline engine is surer the more a lead's notes name one label: three leads,
    # three different confidences, listed in neither ascending nor descending order.
    leads = [
        {"id": "a", "name": "Ann", "company": "Acme", "notes": "lukewarm maybe cold, cold"},
        {"id": "b", "name": "Bo", "company": "Beta", "notes": "zzz"},
        {"id": "c", "name": "Cy", "company": "Cyan", "notes": "a hot lead"},
    ]
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        created = await client.post(
            "/api/jobs",
            json={
                "type": "classify_leads",
                "payload": {"leads": leads, "labels": ["hot", "cold", "warm"]},
            },
            headers=auth(keys.alice),
        )
        job_id = created.json()["job_id"]
        await wait_for(client, keys.alice, job_id, "succeeded")
        page = await signed_in(browser, site, keys.alice)
        await page.goto(f"{site}/jobs/{job_id}")
        table = page.locator("table.result-table").first
        confidence = table.get_by_role("button", name="Confidence")
        cells = table.locator("td.num")
        await expect(cells).to_have_count(len(leads))
        listed = await cells.all_inner_texts()
        assert listed not in (sorted(listed, key=float), sorted(listed, key=float, reverse=True))
        # Each click re-sorts in the page's script: wait on the order asserted, not on time.
        await confidence.click()
        await expect(cells).to_have_text(sorted(listed, key=float))
        await confidence.click()
        await expect(cells).to_have_text(sorted(listed, key=float, reverse=True))
        # Whole rows move, not just the sorted cells.
        await expect(table.locator("tbody tr td:first-child").first).to_have_text("c")
        await expect(table.locator("th[aria-sort=descending]")).to_have_count(1)
        # A live change of the job redraws the page's body; the reader's order stays.
        async with page.expect_response(lambda r: "part=body" in r.url):
            await page.evaluate(
                """(jobId) => document.dispatchEvent(new CustomEvent("backburner:job",
                       { detail: { job_id: jobId, kind: "model_call_finished" } }))""",
                job_id,
            )
        await expect(cells).to_have_text(sorted(listed, key=float, reverse=True))
        await expect(table.locator("th[aria-sort=descending]")).to_have_count(1)
        await shot(page, "job-classifications")


def finished_in(tips: list[str], status: str) -> int:
    """Jobs of `status` over a chart's bars, from their titles ("HH:MM status: N jobs")."""
    counts = [re.fullmatch(rf"\d\d:\d\d {status}: (\d+) jobs", tip) for tip in tips]
    return sum(int(found.group(1)) for found in counts if found)


async def test_operator_charts_render_with_data(site: str, keys: Keys) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        ids = []
        for job in [{"type": "noop"}] * 4 + [{"type": "test_broken"}]:
            created = await client.post("/api/jobs", json=job, headers=auth(keys.alice))
            ids.append(created.json()["job_id"])
        for job_id in ids[:4]:
            await wait_for(client, keys.alice, job_id, "succeeded")
        await wait_for(client, keys.alice, ids[4], "failed")
        report = {"type": "generate_report", "payload": {"user_id": "u-7", "period": "2026-Q3"}}
        created = await client.post("/api/jobs", json=report, headers=auth(keys.bob))
        await wait_for(client, keys.bob, created.json()["job_id"], "succeeded")
        long = {"type": "test_slow_no_timeout", "payload": {"seconds": 30}}
        created = await client.post("/api/jobs", json=long, headers=auth(keys.bob))
        await wait_for(client, keys.bob, created.json()["job_id"], "running")
        page = await signed_in(browser, site, keys.admin)
        await expect(page.locator("#jobs tr")).to_have_count(7)  # admins see every owner's
        await shot(page, "recent-jobs")
        await page.get_by_role("link", name="Operations").click()
        await expect(page.get_by_role("heading", name="Last hour")).to_be_visible()
        queue = page.get_by_role("img", name="Queue by type and state")
        await expect(queue.locator("rect title")).to_have_text(
            ["test_slow_no_timeout running: 1 jobs"]
        )
        finished = page.get_by_role("img", name="Jobs finished").first
        await expect(finished.locator("rect")).not_to_have_count(0)
        tips = await finished.locator("rect title").evaluate_all(
            "titles => titles.map((title) => title.textContent)"
        )
        # Per 5-minute bucket ("22:35 succeeded: 4 jobs"): the jobs may straddle two.
        assert finished_in(tips, "succeeded") == 5, tips
        assert finished_in(tips, "failed") == 1, tips
        await expect(page.get_by_text("16.7% failed").first).to_be_visible()
        calls = page.get_by_role("img", name="Provider calls").first
        await expect(calls.locator("rect")).not_to_have_count(0)  # the report's model calls
        workers = page.get_by_role("heading", name="Workers").locator("+ div table tbody tr")
        await expect(workers).to_have_count(1)
        await expect(workers.locator("td").nth(3)).to_have_text("1")  # the long job's lease
        await shot(page, "operations")
        member = await signed_in(browser, site, keys.alice)
        assert await member.get_by_role("link", name="Operations").count() == 0
        answer = await member.goto(f"{site}/ops")
        assert answer is not None
        assert answer.status == 404


async def test_pages_fit_a_phone_and_work_from_the_keyboard(site: str, keys: Keys) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        created = await client.post(
            "/api/jobs",
            json={"type": "generate_report", "payload": {"user_id": "u-1", "period": "2026-10"}},
            headers=auth(keys.alice),
        )
        job_id = created.json()["job_id"]
        await wait_for(client, keys.alice, job_id, "succeeded")
        page = await signed_in(browser, site, keys.alice, viewport={"width": 390, "height": 844})
        for path in ("/", f"/jobs/{job_id}", "/new?type=summarize_documents"):
            await page.goto(f"{site}{path}")
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
        await page.goto(f"{site}/jobs/{job_id}")
        await expect(page.get_by_role("heading", name="Sections")).to_be_visible()
        await shot(page, "job-report-phone", full_page=False)
        # Keyboard: the skip link comes first and the job link is reachable by Tab.
        await page.goto(f"{site}/")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        for _ in range(30):
            await page.keyboard.press("Tab")
            focused = await page.evaluate("document.activeElement.getAttribute('href')")
            if focused == f"/jobs/{job_id}":
                break
        else:
            raise AssertionError("the job's link cannot be reached with the keyboard")
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(f"{site}/jobs/{job_id}")


async def test_the_main_pages_pass_an_accessibility_audit(site: str, keys: Keys) -> None:
    # axe-core (from PyPI's axe-playwright-python) checks labels, names, contrast, landmarks.
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        created = await client.post(
            "/api/jobs",
            json={
                "type": "classify_leads",
                "payload": {"leads": [{"id": "a", "notes": "wants a demo"}], "labels": ["x", "y"]},
            },
            headers=auth(keys.admin),
        )
        job_id = created.json()["job_id"]
        await wait_for(client, keys.admin, job_id, "succeeded")
        page = await signed_in(browser, site, keys.admin)
        found = {}
        for path in ("/", "/new?type=summarize_documents", f"/jobs/{job_id}", "/ops"):
            await page.goto(f"{site}{path}")
            results = await Axe().run(page)
            found[path] = [
                f"{v['id']} ({v['impact']}): {v['help']} {[n['target'] for n in v['nodes']][:3]}"
                for v in results.response["violations"]
            ]
        await page.goto(f"{site}/?token=nope")
        found["sign-in"] = [v["id"] for v in (await Axe().run(page)).response["violations"]]
    assert found == {path: [] for path in found}


def attacker_site(target: str, job_id: str) -> Starlette:
    """A page another origin serves (another port of the same host: same site, so the
    SameSite=Strict cookie goes along): plain forms that try to act on the victim's job."""
    forms = "".join(
        f'<form method="post" action="{target}{path}" id="f{n}"><button>go {n}</button></form>'
        for n, path in enumerate(
            (f"/jobs/{job_id}/cancel", f"/api/jobs/{job_id}/cancel", "/api/webhooks/secret/rotate")
        )
    )
    frame = f'<iframe id="framed" src="{target}/"></iframe>'

    async def home(_: StarletteRequest) -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><title>prize</title>{forms}{frame}")

    return Starlette(routes=[Route("/", home)])


async def test_pages_are_locked_down_and_other_origins_change_nothing(
    site: str, keys: Keys
) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        later = await client.post(
            "/api/jobs",
            json={"type": "noop", "run_at": "2030-01-01T00:00:00Z"},
            headers=auth(keys.alice),
        )
        job_id = later.json()["job_id"]
        done = await client.post("/api/jobs", json={"type": "noop"}, headers=auth(keys.alice))
        admin = await signed_in(browser, site, keys.admin)
        blocked: list[str] = []
        admin.on(
            "console",
            lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
        )
        # Every page, and /docs from the packaged Swagger UI, runs under the policy.
        for path in ("/", f"/jobs/{done.json()['job_id']}", "/new", "/ops", "/docs"):
            answer = await admin.goto(f"{site}{path}")
            assert answer is not None
            headers = answer.headers
            policy = headers["content-security-policy"]
            assert re.search(r"script-src 'self' 'nonce-[\w-]+'", policy), policy
            assert "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "same-origin"
            assert headers["x-frame-options"] == "DENY"
        await expect(admin.locator(".swagger-ui .title").first).to_contain_text("Backburner")
        assert blocked == []
        # The live stream and toasts still work under the policy (inline script ran).
        await admin.goto(f"{site}/")
        await expect(admin.locator(f'tr[data-job-id="{job_id}"]')).to_have_count(1)

        member = await signed_in(browser, site, keys.alice)
        async with serve_on_loopback(attacker_site(site, job_id), lifespan=False) as evil:
            # Another port of this host (same site: the cookie goes along) and another
            # host name for it (another site: it does not).
            for attacker in (evil, evil.replace("127.0.0.1", "localhost")):
                await member.goto(attacker)
                framed = member.frame_locator("#framed")
                await expect(framed.get_by_role("heading", name="Recent jobs")).to_have_count(0)
                for n in range(3):
                    await member.goto(attacker)
                    async with member.expect_navigation():
                        await member.locator(f"#f{n} button").click()
        job = (await client.get(f"/api/jobs/{job_id}", headers=auth(keys.alice))).json()
        assert job["status"] == "pending"
        events = await client.get(f"/api/jobs/{job_id}/events", headers=auth(keys.alice))
        assert [e["kind"] for e in events.json()["items"]] == ["created"]


async def test_quality_page_and_rating_a_result(site: str, keys: Keys) -> None:
    """Two evaluation runs of one type and model, the second finding an item worse; a
    rating from the job page's buttons; all of it on the Quality page."""
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        admin = auth(keys.admin)

        def lead(label: str) -> dict[str, object]:
            return {
                "id": "budget-lead",
                "input": {
                    "leads": [{"id": "l1", "notes": "Budget approved, wants a quote"}],
                    "labels": ["hot", "cold"],
                },
                "expected": {"labels": {"l1": label}},
            }

        for label in ("hot", "cold"):
            run = await client.post(
                "/api/evals",
                json={"type": "classify_leads", "dataset_items": [lead(label)]},
                headers=admin,
            )
            run_id = run.json()["id"]
            for _ in range(300):
                if (await client.get(f"/api/evals/{run_id}", headers=admin)).json()[
                    "status"
                ] == "scored":
                    break
                await asyncio.sleep(0.1)
        created = await client.post("/api/jobs", json={"type": "noop"}, headers=admin)
        job_id = created.json()["job_id"]
        await wait_for(client, keys.admin, job_id, "succeeded")
        page = await signed_in(browser, site, keys.admin)
        await page.goto(f"{site}/jobs/{job_id}")
        await page.get_by_label("Comment").fill("just what I needed")
        await page.get_by_role("button", name="Useful (thumbs up)").click()
        await expect(page.get_by_text("You rated it useful")).to_be_visible()
        await page.get_by_role("link", name="Quality").click()
        await expect(
            page.get_by_role("heading", name="classify_leads · gpt-4.1-mini")
        ).to_be_visible()
        await expect(page.get_by_role("img", name="classify_leads · gpt-4.1-mini")).to_be_visible()
        await expect(page.get_by_text("budget-lead accuracy: 100.0 → 0.0")).to_be_visible()
        ratings = page.get_by_role("table", name="Thumbs up and down per job type and model")
        await expect(ratings.locator("tbody tr")).to_have_text(
            [re.compile(r"noop\s*gpt-4.1-mini\s*1\s*0\s*100%")]
        )
        violations = (await Axe().run(page)).response["violations"]
        assert violations == [], violations
        await shot(page, "quality")
        member = await signed_in(browser, site, keys.alice)
        assert await member.get_by_role("link", name="Quality").count() == 0
        answer = await member.goto(f"{site}/quality")
        assert answer is not None
        assert answer.status == 404


async def test_a_batch_larger_than_a_request_uploads_file_by_file_and_names_a_bad_one(
    settings: Settings, keys: Keys
) -> None:
    """3.6 MB of documents (over the 2 MiB a form may post) and one file that is not what
    it says: each file goes up on its own with its progress, the bad one is named with its
    reason, the good ones are kept, and the job is made from them (queued: no worker here,
    the job's work is not what this is about)."""
    app = create_app(settings, embed_worker=False, migrate_on_start=False)
    async with serve_on_loopback(app) as site, chromium() as browser:
        page = await signed_in(browser, site, keys.alice)
        await page.goto(f"{site}/new?type=summarize_documents")
        files = [
            (f"chapter-{n}.txt", "text/plain", (f"Chapter {n}. " + ARTICLE * 3500).encode())
            for n in range(6)
        ]
        files.insert(3, ("scan.pdf", "application/pdf", b"%PDF-1.4 not really a PDF"))
        assert sum(len(data) for _, _, data in files) > 3_000_000
        await drop_files(page, ".drop", files)
        await expect(page.locator(".chosen li")).to_have_count(7)
        await page.get_by_role("button", name="Submit job").click()
        rows = page.locator(".chosen li")
        await expect(rows.filter(has_text="uploaded")).to_have_count(6, timeout=30_000)
        await expect(rows.filter(has_text="scan.pdf")).to_contain_text("refused:")
        status = page.locator("#upload-status")
        await expect(status).to_contain_text("1 of 7 files were refused")
        await expect(page).to_have_url(f"{site}/new?type=summarize_documents")
        await page.get_by_role("button", name="Submit job").click()  # with the good ones
        await expect(page).to_have_url(re.compile(rf"{site}/jobs/[0-9a-f-]{{36}}$"))
        payload = json.loads(
            await page.locator("details:has(summary:text-is('Input')) pre").text_content() or "{}"
        )
        assert len(payload["document_ids"]) == 6
