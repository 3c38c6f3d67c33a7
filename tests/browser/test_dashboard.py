"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): sign in, watch
jobs change live without a reload, the toast when one ends, owners kept apart."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from backburner.api import create_app
from backburner.config import Settings
from tests.conftest import Keys, auth
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


async def signed_in(browser: Browser, base: str, key: str) -> Page:
    page = await browser.new_page()
    await page.goto(f"{base}/?token={key}")
    await expect(page).to_have_url(f"{base}/")
    await expect(page.get_by_role("heading", name="Recent jobs")).to_be_visible()
    return page


async def test_jobs_move_from_queued_to_completed_without_reload(site: str, keys: Keys) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        page = await signed_in(browser, site, keys.alice)
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
        assert await row.locator("progress").evaluate("bar => bar.value") == 1
        # Bob's job never shows on Alice's page.
        bob_row = page.locator(f'tr[data-job-id="{bobs.json()["job_id"]}"]')
        assert await bob_row.count() == 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SCREENSHOTS / "recent-jobs.png", full_page=True)
        await toast.get_by_role("link", name="View results").click()
        await expect(page).to_have_url(f"{site}/jobs/{job_id}")
        await expect(page.get_by_text("Completed").first).to_be_visible()
        await page.screenshot(path=SCREENSHOTS / "job.png", full_page=True)


async def test_a_member_cannot_open_another_owners_job(site: str, keys: Keys) -> None:
    async with chromium() as browser, httpx.AsyncClient(base_url=site) as client:
        bobs = await client.post("/api/jobs", json={"type": "noop"}, headers=auth(keys.bob))
        page = await signed_in(browser, site, keys.alice)
        response = await page.goto(f"{site}/jobs/{bobs.json()['job_id']}")
        assert response is not None
        assert response.status == 404
