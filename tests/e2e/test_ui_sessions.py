"""Dashboard sign-in: the cookie holds a session token, never the API key; sign-out and
key revocation end the session."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from backburner.store import Database
from backburner.store import keys as keys_store
from tests.conftest import Keys

NO_HEADER = {"Authorization": ""}
FORM = {**NO_HEADER, "Origin": "http://test"}


async def sign_in(api: httpx.AsyncClient, key: str) -> str:
    response = await api.get(f"/?token={key}", follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    token = api.cookies.get("backburner_session")
    assert token is not None
    return token


async def signed_in_page(api: httpx.AsyncClient, **kw: object) -> bool:
    page = await api.get("/", headers=NO_HEADER, **kw)  # type: ignore[arg-type]
    return page.status_code == 200 and "Sign out" in page.text


async def test_the_cookie_is_a_session_not_the_key(api: httpx.AsyncClient, keys: Keys) -> None:
    token = await sign_in(api, keys.alice)
    assert token.startswith("bbs_")
    assert keys.alice not in token
    assert await signed_in_page(api)
    # The session opens the dashboard only: the API takes Bearer keys, never the cookie
    # (a page on another origin could otherwise act on the API as the user).
    assert (await api.get("/api/jobs", headers=NO_HEADER)).status_code == 401
    as_bearer = await api.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401
    signed_out = await api.post("/signout", headers=FORM, follow_redirects=False)
    assert signed_out.status_code == 303
    assert api.cookies.get("backburner_session") is None
    # The old token, presented again (a stolen cookie), no longer opens anything.
    assert not await signed_in_page(api, cookies={"backburner_session": token})
    assert "Sign in" in (await api.get("/", headers=NO_HEADER)).text


async def test_revoking_the_key_ends_its_sessions(
    api: httpx.AsyncClient, keys: Keys, db: Database
) -> None:
    await sign_in(api, keys.bob)
    assert await signed_in_page(api)
    bob = next(k for k in await keys_store.list_keys(db) if k.owner == "bob")
    await keys_store.revoke_key(db, bob.id, now=datetime.now(UTC))
    assert not await signed_in_page(api)
    assert (await api.get("/?token=bbs_made_up", follow_redirects=False)).status_code == 401


async def test_signing_in_from_a_link_lands_on_the_page_it_pointed_at(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    """A notification's "View result" link opens a job; a person not signed in signs in
    there and lands on that job, never on another site."""
    made = await api.post("/api/jobs", json={"type": "noop"})
    job_page = f"/jobs/{made.json()['job_id']}"
    asked = await api.get(job_page, headers=NO_HEADER)
    assert asked.status_code == 401
    assert f'name="next" value="{job_page}"' in asked.text
    landed = await api.get(
        "/", params={"token": keys.alice, "next": job_page}, follow_redirects=False
    )
    assert landed.status_code == 303
    assert landed.headers["location"] == job_page
    for elsewhere in ("//evil.example/x", "/\\evil.example", "https://evil.example/", "jobs"):
        api.cookies.clear()
        answer = await api.get(
            "/", params={"token": keys.alice, "next": elsewhere}, follow_redirects=False
        )
        assert answer.headers["location"] == "/", elsewhere
    api.cookies.clear()
    wrong = await api.get("/", params={"token": "bb_wrong", "next": job_page}, headers=NO_HEADER)
    assert wrong.status_code == 401
    assert f'name="next" value="{job_page}"' in wrong.text  # kept for the next try
