"""The dashboard's server-rendered pages: Recent jobs filtered by state and type."""

from __future__ import annotations

import httpx

from tests.conftest import Keys
from tests.e2e.test_api_jobs import create, until_done

NO_HEADER = {"Authorization": ""}


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
