"""Notifications end to end: the service, real receivers on loopback, a real SMTP server;
signatures checked with the `standardwebhooks` package, not our own code."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import standardwebhooks

from backburner.config import Settings
from backburner.notify import Dispatcher
from backburner.store import Database
from tests.conftest import Keys, auth, fast_settings, serving, wait_for
from tests.e2e.test_api_jobs import assert_problem, create, until_done
from tests.receivers import Receiver, free_port, receiving, smtp_server

LOOPBACK = ["127.0.0.1", "localhost"]


def notify_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_allowed_hosts": LOOPBACK,
        "webhook_allow_http": True,
        "notify_retry_base_seconds": 0.05,
        "notify_timeout_seconds": 0.5,
        "notify_connect_timeout_seconds": 0.5,
        "public_url": "https://backburner.example",
        **overrides,
    }
    return fast_settings(db_url, **values)


@pytest.fixture
async def service(db_url: str, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(notify_settings(db_url), keys.alice, embed_worker=True) as client:
        yield client


async def deliveries(api: httpx.AsyncClient, job_id: str, **kw: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await api.get(f"/api/jobs/{job_id}/deliveries", **kw)).json()[
        "items"
    ]
    return items


async def settled(api: httpx.AsyncClient, job_id: str, count: int = 1) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        found = await deliveries(api, job_id)
        ended = [d for d in found if d["status"] != "pending"]
        return found if len(ended) >= count else None

    found: list[dict[str, Any]] = await wait_for(done, within=15)
    return found


def verify(secret: str, received: Any) -> dict[str, Any]:
    """Check a delivery's signature as a receiver would, with standardwebhooks."""
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(
        received.body, received.headers
    )
    return payload


async def test_a_callback_is_signed_verifiable_and_recorded(service: httpx.AsyncClient) -> None:
    secret = (await service.get("/api/webhooks/secret")).json()["secret"]
    assert secret.startswith("whsec_")
    async with receiving(Receiver()) as receiver:
        job = (
            await create(
                service,
                {"type": "noop", "payload": {"echo": "hi"}, "callback_url": f"{receiver.base}/cb"},
            )
        ).json()
        (delivery,) = await settled(service, job["job_id"])
    (received,) = receiver.received
    body = verify(secret, received)
    assert body == {
        "id": delivery["event_id"],
        "type": "job.succeeded",
        "job_id": job["job_id"],
        "job_type": "noop",
        "status": "succeeded",
        "result": {"echo": "hi", "slept_seconds": 0.0},
        "result_url": None,
        "error": None,
        "error_message": None,
        "completed_at": body["completed_at"],
    }
    assert received.headers["webhook-id"] == delivery["event_id"]
    assert delivery["status"] == "succeeded"
    assert delivery["history"][0]["status_code"] == 200
    assert delivery["history"][0]["latency_ms"] > 0
    # A secret from anyone else does not verify.
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify("whsec_" + "A" * 43 + "=", received)


async def test_500s_then_200_arrive_once_with_one_event_id(service: httpx.AsyncClient) -> None:
    async with receiving(Receiver(script=[500, 503])) as receiver:
        job = (
            await create(service, {"type": "noop", "callback_url": f"{receiver.base}/cb"})
        ).json()
        (delivery,) = await settled(service, job["job_id"])
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["history"]] == [500, 503, 200]
    assert delivery["history"][0]["response_excerpt"] == '{"ok":false}'
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery["event_id"]}


async def test_a_receiver_down_for_a_while_gets_everything_when_back(
    db_url: str, keys: Keys
) -> None:
    port = free_port()
    settings = notify_settings(db_url, notify_retry_base_seconds=0.2)
    async with serving(settings, keys.alice, embed_worker=True) as api:
        ids = [
            (
                await create(api, {"type": "noop", "callback_url": f"http://127.0.0.1:{port}/cb"})
            ).json()["job_id"]
            for _ in range(5)
        ]

        async def failed_once() -> bool:
            found = [await deliveries(api, job_id) for job_id in ids]
            return all(items and items[0]["attempts"] >= 2 for items in found)

        await wait_for(failed_once, within=15)
        async with receiving(Receiver(), port=port) as receiver:
            found = [(await settled(api, job_id))[0] for job_id in ids]
    assert all(d["status"] == "succeeded" for d in found)
    assert all((d["history"][0]["error"] or "").startswith("could not deliver") for d in found)
    arrived = {json.loads(body)["job_id"] for body in receiver.bodies()}
    assert arrived == set(ids)


async def test_a_slow_receiver_times_out_and_is_tried_again(service: httpx.AsyncClient) -> None:
    # The receiver answers after 6 s; the dispatcher's read timeout is 0.5 s. The attempt
    # must end well before the answer (4 s leaves room for a busy machine's stalls: the
    # receiver and the service share this test's process).
    async with receiving(Receiver(delay=6.0)) as receiver:
        job = (
            await create(service, {"type": "noop", "callback_url": f"{receiver.base}/cb"})
        ).json()

        async def two_attempts() -> list[dict[str, Any]] | None:
            found = await deliveries(service, job["job_id"])
            return found if found and len(found[0]["history"]) >= 2 else None

        (delivery,) = await wait_for(two_attempts, within=15)
    assert delivery["history"][0]["error"].startswith("could not deliver")
    assert delivery["history"][0]["latency_ms"] < 4000


async def test_unsafe_targets_are_refused(db_url: str, keys: Keys) -> None:
    strict = fast_settings(db_url)  # nothing allow-listed, https only
    async with serving(strict, keys.alice, embed_worker=True) as api:
        for url in (
            "http://example.com/hook",  # plain http
            "https://10.0.0.7/hook",  # private
            "https://169.254.169.254/latest/meta-data",  # cloud metadata
            "https://[::1]/hook",  # loopback
            "https://user:pw@example.com/hook",  # credentials
        ):
            assert_problem(
                await create(api, {"type": "noop", "callback_url": url}), 422, "callback_url"
            )
        # A name that resolves to loopback passes the text check, and is refused when sent.
        job = (
            await create(api, {"type": "noop", "callback_url": "https://localhost:9/hook"})
        ).json()
        (delivery,) = await settled(api, job["job_id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 1  # refused for good, not retried
    assert "non-public address" in delivery["last_error"]


async def test_redirects_are_not_followed(service: httpx.AsyncClient) -> None:
    async with (
        receiving(Receiver()) as inner,
        receiving(Receiver(redirect_to="http://169.254.169.254/")) as outer,
    ):
        outer.redirect_to = f"{inner.base}/stolen"
        job = (await create(service, {"type": "noop", "callback_url": f"{outer.base}/cb"})).json()

        async def tried() -> list[dict[str, Any]] | None:
            found = await deliveries(service, job["job_id"])
            return found if found and found[0]["history"] else None

        (delivery,) = await wait_for(tried, within=10)
    assert delivery["history"][0]["status_code"] == 302
    assert inner.received == []


async def test_owner_endpoints_get_their_events_and_a_410_disables_one(
    service: httpx.AsyncClient,
) -> None:
    async with receiving(Receiver()) as failures, receiving(Receiver(script=[410])) as gone:
        for url, events in ((f"{failures.base}/f", ["job.failed"]), (f"{gone.base}/g", None)):
            body: dict[str, Any] = {"url": url}
            if events:
                body["event_types"] = events
            assert (await service.post("/api/webhook-endpoints", json=body)).status_code == 201
        ok = (await create(service, {"type": "noop"})).json()
        bad = (await create(service, {"type": "test_broken"})).json()
        await settled(service, ok["job_id"])
        await settled(service, bad["job_id"])
        endpoints = (await service.get("/api/webhook-endpoints")).json()["items"]
    assert [json.loads(b)["type"] for b in failures.bodies()] == ["job.failed"]
    by_url = {e["url"]: e for e in endpoints}
    assert by_url[f"{gone.base}/g"]["enabled"] is False
    assert "410" in by_url[f"{gone.base}/g"]["disabled_reason"]
    assert by_url[f"{failures.base}/f"]["enabled"] is True
    assert_problem(
        await service.post(
            "/api/webhook-endpoints", json={"url": failures.base, "event_types": ["job.x"]}
        ),
        422,
        "event_types",
    )


async def test_after_rotation_both_secrets_verify_until_the_overlap_ends(
    service: httpx.AsyncClient,
) -> None:
    old = (await service.get("/api/webhooks/secret")).json()["secret"]
    rotated = (await service.post("/api/webhooks/secret/rotate")).json()
    new = rotated["secret"]
    assert new != old
    assert rotated["previous_valid_until"]
    assert (await service.get("/api/webhooks/secret")).json()["secret"] == new
    async with receiving(Receiver()) as receiver:
        job = (
            await create(service, {"type": "noop", "callback_url": f"{receiver.base}/cb"})
        ).json()
        await settled(service, job["job_id"])
    (received,) = receiver.received
    assert len(received.headers["webhook-signature"].split()) == 2
    assert verify(old, received)["job_id"] == job["job_id"]
    assert verify(new, received)["job_id"] == job["job_id"]


async def test_email_slack_and_teams_arrive_in_their_shapes(db_url: str, keys: Keys) -> None:
    with smtp_server() as (smtp_port, inbox):
        settings = notify_settings(
            db_url,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_starttls=False,
            smtp_from="jobs@backburner.example",
        )
        async with (
            serving(settings, keys.alice, embed_worker=True) as api,
            receiving(Receiver()) as slack,
            receiving(Receiver()) as teams,
        ):
            put = await api.put(
                "/api/notifications/channels",
                json={
                    "emails": ["team@example.com"],
                    "slack_webhook_url": f"{slack.base}/services/T0/B0/secret",
                    "teams_webhook_url": f"{teams.base}/webhookb2/abc",
                },
            )
            assert put.status_code == 200, put.text
            job = (
                await create(
                    api,
                    {
                        "type": "noop",
                        "notify": {"email": ["ana@example.com"], "slack": True, "teams": True},
                    },
                )
            ).json()
            found = await settled(api, job["job_id"], count=3)
            quiet = (await create(api, {"type": "noop"})).json()
            await until_done(api, quiet["job_id"])
            await asyncio.sleep(0.3)
            assert await deliveries(api, quiet["job_id"]) == []  # it asked for nothing
    assert sorted(d["channel"] for d in found) == ["email", "slack", "teams"]
    assert all(d["status"] == "succeeded" for d in found)
    # One event, one id for every channel; a UUID, so two deployments never share one.
    (event_id,) = {d["event_id"] for d in found}
    assert re.fullmatch(
        r"evt_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", event_id
    )
    slack_target = next(d["target"] for d in found if d["channel"] == "slack")
    assert "secret" not in slack_target  # an incoming-webhook URL is a credential
    (mail,) = inbox
    link = f"https://backburner.example/jobs/{job['job_id']}"
    assert mail["To"] == "ana@example.com"
    assert mail["From"] == "jobs@backburner.example"
    assert mail["Date"]
    assert mail["Message-ID"]
    assert "completed" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f"View result: {link}" in text
    assert f'href="{link}"' in html
    (slack_body,) = [json.loads(b) for b in slack.bodies()]
    assert slack_body["text"].endswith("Completed")
    assert [block["type"] for block in slack_body["blocks"]] == ["section", "actions"]
    assert slack_body["blocks"][1]["elements"][0]["url"] == link
    (teams_body,) = [json.loads(b) for b in teams.bodies()]
    card = teams_body["attachments"][0]
    assert teams_body["type"] == "message"
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert card["content"]["actions"][0]["url"] == link
    assert "webhook-signature" not in slack.received[0].headers


async def test_redeliver_sends_again_with_the_same_id_and_owners_are_separate(
    service: httpx.AsyncClient, keys: Keys
) -> None:
    async with receiving(Receiver()) as receiver:
        job = (
            await create(service, {"type": "noop", "callback_url": f"{receiver.base}/cb"})
        ).json()
        (delivery,) = await settled(service, job["job_id"])
        again = await service.post(f"/api/deliveries/{delivery['delivery_id']}/redeliver")
        assert again.status_code == 202

        async def twice() -> bool:
            return len(receiver.received) == 2

        await wait_for(twice)
        bob = auth(keys.bob)
        assert_problem(
            await service.post(f"/api/deliveries/{delivery['delivery_id']}/redeliver", headers=bob),
            404,
        )
        assert_problem(await service.get(f"/api/jobs/{job['job_id']}/deliveries", headers=bob), 404)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [delivery["event_id"]] * 2


async def test_a_dispatcher_killed_mid_delivery_loses_nothing(
    db: Database, db_url: str, keys: Keys
) -> None:
    settings = notify_settings(db_url, notify_dispatcher=False, notify_lease_seconds=1.0)
    async with (
        serving(settings, keys.alice, embed_worker=True) as api,
        receiving(Receiver(delay=3)) as receiver,
    ):
        job = (await create(api, {"type": "noop", "callback_url": f"{receiver.base}/cb"})).json()
        await until_done(api, job["job_id"])
        slow_settings = settings.model_copy(update={"notify_timeout_seconds": 60.0})
        doomed = Dispatcher(db, slow_settings)
        task = asyncio.create_task(doomed.run())

        async def in_flight() -> bool:
            return len(receiver.received) == 1

        await wait_for(in_flight)
        task.cancel()  # dies mid-send: no result written, its lease still held
        with pytest.raises(asyncio.CancelledError):
            await task
        receiver.delay = 0
        rescuer = Dispatcher(db, settings)
        rescue = asyncio.create_task(rescuer.run())
        try:
            (delivery,) = await settled(api, job["job_id"])
        finally:
            rescuer.stop()
            await rescue
    assert delivery["status"] == "succeeded"
    assert len(receiver.received) == 2
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery["event_id"]}


async def test_channel_and_notify_bodies_are_checked(service: httpx.AsyncClient) -> None:
    for body, field in [
        ({"type": "noop", "notify": {"email": ["not-an-address"]}}, "notify.email.0"),
        ({"type": "noop", "notify": {"fax": True}}, "notify.fax"),
    ]:
        assert_problem(await create(service, body), 422, field)
    for body, field in [
        ({"emails": ["x"]}, "emails.0"),
        ({"slack_webhook_url": "https://10.1.2.3/x"}, "slack_webhook_url"),
        ({"event_types": ["job.exploded"]}, "event_types"),
    ]:
        assert_problem(await service.put("/api/notifications/channels", json=body), 422, field)
    assert (await service.get("/api/jobs")).json()["items"] == []


async def test_jobs_nobody_listens_to_write_no_outbox_rows(
    service: httpx.AsyncClient, db: Database
) -> None:
    import sqlalchemy as sa

    from backburner.store.schema import notifications

    quiet = (await create(service, {"type": "noop"})).json()
    await until_done(service, quiet["job_id"])
    async with receiving(Receiver()) as receiver:
        loud = (
            await create(service, {"type": "noop", "callback_url": f"{receiver.base}/cb"})
        ).json()
        await settled(service, loud["job_id"])
    query = sa.select(notifications.c.job_id)
    async with db.read() as conn:
        owed = set((await conn.execute(query)).scalars().all())
    assert owed == {loud["job_id"]}


async def test_the_jobs_page_lists_its_deliveries(service: httpx.AsyncClient, keys: Keys) -> None:
    async with receiving(Receiver(script=[503])) as receiver:
        job = (
            await create(service, {"type": "noop", "callback_url": f"{receiver.base}/cb"})
        ).json()
        await settled(service, job["job_id"])
    signed = await service.get(f"/?token={keys.alice}", follow_redirects=False)
    assert signed.status_code == 303
    page = await service.get(f"/jobs/{job['job_id']}", headers={"Authorization": ""})
    assert "<h2>Notifications</h2>" in page.text
    row = page.text.split("<h2>Notifications</h2>", 1)[1].split("</tbody>", 1)[0]
    assert f"{receiver.base}/cb" in row
    assert "job.succeeded" in row
    assert ">2<" in row  # attempts: the 503, then the 200


SPELLINGS_OF_LOOPBACK = ["１２７.０.０.１", "127。0。0。1", "①②⑦.0.0.1", "2130706433", "0x7f.1"]


async def test_no_spelling_of_loopback_reaches_a_listener_on_it(
    db_url: str, db: Database, keys: Keys
) -> None:
    # Plain http allowed, nothing allow-listed: a listener on 127.0.0.1 is what an attacker
    # wants to reach. Refused at creation (422 naming the field), and refused again at
    # delivery for a target that got into the database some other way: zero connections.
    from datetime import UTC, datetime

    from backburner.store import NewJob
    from backburner.store import jobs as jobs_store

    settings = notify_settings(db_url, webhook_allowed_hosts=[])
    async with (
        receiving(Receiver()) as listener,
        serving(settings, keys.alice, embed_worker=True) as api,
    ):
        port = listener.base.rsplit(":", 1)[1]
        for host in SPELLINGS_OF_LOOPBACK:
            url = f"http://{host}:{port}/hook"
            refused = await create(api, {"type": "noop", "callback_url": url})
            assert_problem(refused, 422, "callback_url")
            endpoint = await api.post("/api/webhook-endpoints", json={"url": url})
            assert_problem(endpoint, 422, "url")
        smuggled = [
            (
                await jobs_store.insert_job(
                    db,
                    NewJob(
                        owner="alice",
                        type="noop",
                        payload={},
                        max_attempts=1,
                        timeout_seconds=60,
                        callback_url=f"http://{host}:{port}/hook",
                    ),
                    now=datetime.now(UTC),
                )
            )[0]
            for host in SPELLINGS_OF_LOOPBACK
        ]
        settled_ones = [(await settled(api, job.id))[0] for job in smuggled]
    assert listener.received == []
    assert all(d["status"] == "failed" for d in settled_ones)
    assert all("not a public address" in (d["last_error"] or "") for d in settled_ones)


async def test_members_read_one_error_class_not_the_transports_words(
    db_url: str, keys: Keys
) -> None:
    # Whether a port is closed, or open but silent, reads the same: no port scanning
    # through the delivery history.
    settings = notify_settings(db_url, notify_retry_base_seconds=30.0)
    closed = free_port()
    async with serving(settings, keys.alice, embed_worker=True) as api:
        job = (
            await create(api, {"type": "noop", "callback_url": f"http://127.0.0.1:{closed}/cb"})
        ).json()

        async def tried() -> list[dict[str, Any]] | None:
            found = await deliveries(api, job["job_id"])
            return found if found and found[0]["history"] else None

        (delivery,) = await wait_for(tried, within=10)
    error = delivery["history"][0]["error"]
    assert error.startswith("could not deliver")
    assert "Connect" not in error
    assert "refused" not in error.lower()


async def test_one_owners_doubled_endpoint_holds_back_no_one(
    db_url: str, db: Database, keys: Keys
) -> None:
    # Two endpoints with one URL used to break the delivery batch's unique key: the whole
    # batch, every owner's notifications in it, rolled back and was retried for ever.
    from datetime import UTC, datetime

    from backburner.store.models import new_id
    from backburner.store.schema import webhook_endpoints

    settings = notify_settings(db_url)
    async with (
        receiving(Receiver()) as alices,
        receiving(Receiver()) as bobs,
        serving(settings, keys.alice, embed_worker=True) as api,
    ):
        url = f"{alices.base}/a"
        assert (await api.post("/api/webhook-endpoints", json={"url": url})).status_code == 201
        assert_problem(await api.post("/api/webhook-endpoints", json={"url": url}), 409)
        # The twin got in anyway (two requests racing, or rows from before the check).
        async with db.write() as tx:
            await tx.conn.execute(
                sa.insert(webhook_endpoints).values(
                    id=new_id(),
                    owner="alice",
                    url=url,
                    event_types=["job.succeeded", "job.failed", "job.canceled"],
                    enabled=True,
                    created_at=datetime.now(UTC),
                )
            )
        alice_job = (await create(api, {"type": "noop"})).json()["job_id"]
        bob_job = (
            await api.post(
                "/api/jobs",
                json={"type": "noop", "callback_url": f"{bobs.base}/b"},
                headers=auth(keys.bob),
            )
        ).json()["job_id"]
        await settled(api, alice_job)
        bob_api = {"headers": auth(keys.bob)}
        await wait_for(lambda: len(bobs.received) == 1, within=15)
        (bobs_delivery,) = await deliveries(api, bob_job, **bob_api)
    assert bobs_delivery["status"] == "succeeded"
    assert len(alices.received) == 1  # one delivery per URL, not two
