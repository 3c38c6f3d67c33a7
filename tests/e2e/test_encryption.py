"""Encryption at rest: known plaintexts written through every path (payloads, documents,
results, steps, model outputs, callbacks, deliveries, webhook secrets, Slack/Teams URLs,
e-mail addresses) are found nowhere in the raw SQLite file (WAL included) or in a pg_dump,
while the owner reads them back; rotation moves everything to a new key, resumably; a
missing or wrong key stops a process with a message naming the setting."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from backburner.clock import utcnow
from backburner.config import Settings
from backburner.opening import open_database, storage_for
from backburner.privacy.sealing import Keyring, KeyringError
from backburner.storage import storage_location
from backburner.store import Database
from backburner.store import encryption as encryption_store
from backburner.store.schema import encryption_keys, jobs
from backburner.worker.objects import reseal
from tests.conftest import KEYRING, POSTGRES_URL, TEST_KEYS, Keys, fast_settings, serving
from tests.e2e.processes import BACKBURNER, child_env, run_cli
from tests.e2e.test_api_jobs import until_done
from tests.e2e.test_notifications import notify_settings, settled
from tests.receivers import Receiver, receiving, smtp_server

PAYLOAD = "Quokka7731payload"
LEAD_EMAIL = "quokka.lead7731@example.com"
DOCUMENT = "Zebrafinch4410doc"
SLACK = "SlackSecret5521"
TEAMS = "TeamsSecret5522"
CALLBACK = "CallbackToken5523"
EMAIL = "marker.person5524@example.com"
DOCUMENT_TEXT = (
    f"Board minutes. {DOCUMENT} signed the lease for the new office on the third floor. "
    f"The budget for {DOCUMENT} grew by twelve percent. Hiring paused until spring. "
) * 3


@contextlib.asynccontextmanager
async def mailed(db_url: str) -> AsyncIterator[Settings]:
    """Settings that deliver every channel on loopback, e-mail to a real SMTP server."""
    with smtp_server() as (port, _inbox):
        yield notify_settings(db_url, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)


def raw_sqlite(url: str) -> bytes:
    """Every byte of the database as it is on disk: the file, its WAL and shared memory."""
    path = Path(url.split(":///", 1)[1])
    found = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(str(path) + suffix)
        if part.exists():
            found += part.read_bytes()
    return found


def pg_dump(url: str) -> bytes:
    name = url.rpartition("/")[2]
    base = POSTGRES_URL.rpartition("/")[0]
    done = subprocess.run(
        ["pg_dump", "--no-owner", f"{base}/{name}"], capture_output=True, check=True, timeout=60
    )
    return done.stdout


async def on_disk(url: str) -> bytes:
    return await asyncio.to_thread(raw_sqlite if url.startswith("sqlite") else pg_dump, url)


def objects_on_disk(settings: Settings) -> bytes:
    """Every byte of the object store (a directory in these tests)."""
    root = Path(storage_location(settings))
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def write_through_every_path(api: httpx.AsyncClient, hook: Receiver) -> dict[str, Any]:
    """The owner's data, through each way it enters; what the owner reads back."""
    put = await api.put(
        "/api/notifications/channels",
        json={
            "emails": [EMAIL],
            "slack_webhook_url": f"{hook.base}/services/T0/B0/{SLACK}",
            "teams_webhook_url": f"{hook.base}/webhookb2/{TEAMS}",
        },
    )
    assert put.status_code == 200, put.text
    secret = (await api.post("/api/webhooks/secret/rotate")).json()["secret"]
    upload = await api.post(
        "/api/documents", files={"file": ("minutes.txt", DOCUMENT_TEXT.encode())}
    )
    assert upload.status_code == 201, upload.text
    document_id = upload.json()["document_id"]
    created = [
        await api.post(
            "/api/jobs",
            json={
                "type": "summarize_documents",
                "payload": {"document_ids": [document_id]},
                "callback_url": f"{hook.base}/callback/{CALLBACK}",
                "notify": {"email": [EMAIL], "slack": True, "teams": True},
            },
        ),
        await api.post(
            "/api/jobs",
            json={
                "type": "classify_leads",
                "payload": {
                    "leads": [
                        {
                            "id": "l1",
                            "name": PAYLOAD,
                            "company": "Acme",
                            "notes": f"{PAYLOAD} asked for a demo",
                            "email": LEAD_EMAIL,
                        }
                    ],
                    "labels": ["hot", "cold"],
                },
            },
        ),
        await api.post("/api/jobs", json={"type": "test_ask_model", "payload": {"text": PAYLOAD}}),
    ]
    for response in created:
        assert response.status_code == 201, response.text
    ids = [response.json()["job_id"] for response in created]
    for job_id in ids:
        assert (await until_done(api, job_id))["status"] == "succeeded"
    await settled(api, ids[0], count=4)  # callback, e-mail, Slack, Teams: each tried
    return {
        "secret": secret,
        "document": (await api.get(f"/api/documents/{document_id}")).json(),
        "channels": (await api.get("/api/notifications/channels")).json(),
        "callback_url": (await api.get(f"/api/jobs/{ids[0]}")).json()["callback_url"],
        "ids": ids,
        "results": [(await api.get(f"/api/jobs/{i}/result")).json() for i in ids],
    }


async def test_known_plaintexts_are_nowhere_on_disk(db_url: str, keys: Keys) -> None:
    async with (
        mailed(db_url) as settings,
        receiving(Receiver()) as hook,
        serving(settings, keys.alice, embed_worker=True) as api,
    ):
        seen = await write_through_every_path(api, hook)
        while_running = await on_disk(db_url) + objects_on_disk(settings)
    after = await on_disk(db_url) + objects_on_disk(settings)
    assert objects_on_disk(settings)  # the original is kept, as an object
    # The owner reads everything back as written.
    assert DOCUMENT in seen["document"]["text"]
    assert seen["channels"]["emails"] == [EMAIL]
    assert CALLBACK in seen["callback_url"]
    store = Database(db_url, sealer=KEYRING)
    async with store.read() as conn:
        query = sa.select(jobs.c.payload).where(jobs.c.id == seen["ids"][1])
        assert (await conn.execute(query)).scalar_one()["leads"][0]["email"] == LEAD_EMAIL
    await store.close()
    assert PAYLOAD.lower() in str(seen["results"][1]).lower()
    # The disk holds none of it (and does hold the plain columns, so the search is real).
    for raw in (while_running.lower(), after.lower()):
        assert b"classify_leads" in raw
        assert b"alice" in raw
        for plaintext in (PAYLOAD, LEAD_EMAIL, DOCUMENT, SLACK, TEAMS, CALLBACK, EMAIL):
            assert plaintext.lower().encode() not in raw, plaintext
        assert seen["secret"].lower().encode() not in raw


def other_key(key_id: str) -> str:
    return f"{key_id}:" + base64.urlsafe_b64encode(os.urandom(32)).decode()


async def test_rotation_moves_everything_to_the_new_key_and_retires_the_old(
    db_url: str, db: Database, keys: Keys
) -> None:
    async with (
        mailed(db_url) as settings,
        receiving(Receiver()) as hook,
        serving(settings, keys.alice, embed_worker=True) as api,
    ):
        before = await write_through_every_path(api, hook)
        original = (await api.get(before["document"]["content_url"])).content
    # A value from before encryption was turned on: plain JSON in the column.
    job_id = str(uuid.uuid4())
    async with db.write() as tx:
        await tx.conn.execute(
            sa.insert(jobs).values(
                id=job_id,
                owner="alice",
                type="noop",
                status="succeeded",
                payload=sa.literal_column("'{\"legacy\": true}'"),
                run_at=utcnow(),
                created_at=utcnow(),
                updated_at=utcnow(),
                max_attempts=1,
                timeout_seconds=1,
            )
        )
    new_keys = f"{other_key('next')},{TEST_KEYS}"
    rotated = fast_settings(db_url, encryption_keys=new_keys, storage_url=settings.storage_url)
    store, _ = await open_database(rotated)
    try:
        sealer = store.sealer
        assert sealer is not None
        assert sum((await encryption_store.left_to_rotate(store, sealer)).values()) > 10
        # Objects are sealed again first (what `backburner encryption rotate` does).
        objects = storage_for(rotated, store)
        assert await reseal(store, objects) == 1
        assert await reseal(store, objects) == 0  # run again: nothing left

        # Interrupted after its first batch (a kill), then run again: it carries on.
        def interrupt(_column: str, count: int) -> None:
            if count:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await encryption_store.rotate(
                store, sealer, now=utcnow, batch_size=2, on_progress=interrupt
            )
        left = await encryption_store.rotate(store, sealer, now=utcnow, batch_size=2)
        assert not any(left.values())
        async with store.read() as conn:
            keys_seen = sa.select(encryption_keys.c.key_id, encryption_keys.c.retired_at)
            states = {key: retired for key, retired in (await conn.execute(keys_seen)).all()}
            legacy = (
                await conn.execute(
                    sa.select(sa.cast(jobs.c.payload, sa.Text)).where(jobs.c.id == job_id)
                )
            ).scalar_one()
    finally:
        await store.close()
    assert states["test"] is not None  # retired
    assert states["next"] is None
    assert legacy.startswith('"bbx1:next:')
    # The old key may go now: the new one alone reads everything.
    alone = fast_settings(
        db_url, encryption_keys=new_keys.split(",")[0], storage_url=settings.storage_url
    )
    async with serving(alone, keys.alice, embed_worker=False) as api:
        assert (await api.get(before["document"]["content_url"])).content == original
        assert (
            DOCUMENT
            in (await api.get(f"/api/documents/{before['document']['document_id']}")).json()["text"]
        )
        assert (await api.get("/api/notifications/channels")).json()["emails"] == [EMAIL]
        assert (await api.get(f"/api/jobs/{job_id}")).json()["status"] == "succeeded"
    reader = Database(db_url, sealer=Keyring.parse(new_keys.split(",")[0]))
    async with reader.read() as conn:
        query = sa.select(jobs.c.payload).where(jobs.c.id == job_id)
        assert (await conn.execute(query)).scalar_one() == {"legacy": True}
    await reader.close()


async def test_a_missing_or_wrong_key_stops_a_process_before_it_writes(
    db_url: str, keys: Keys
) -> None:
    # The suite's key has sealed data here (the keys fixture's database is this one).
    async with serving(fast_settings(db_url), keys.alice, embed_worker=False):
        pass
    wrong = fast_settings(db_url, encryption_keys=other_key("test"))
    with pytest.raises(KeyringError, match="BACKBURNER_ENCRYPTION_KEYS: key 'test' is not the key"):
        await open_database(wrong)
    missing = fast_settings(db_url, encryption_keys=other_key("k2"))
    with pytest.raises(KeyringError, match="BACKBURNER_ENCRYPTION_KEYS lacks key 'test'"):
        await open_database(missing)
    async with Database(db_url, sealer=KEYRING).read() as conn:
        recorded = (await conn.execute(sa.select(encryption_keys.c.key_id))).scalars().all()
    assert recorded == ["test"]  # neither refused key sealed anything


@pytest.mark.slow
def test_the_embedded_default_creates_its_key_once_and_refuses_to_start_without_it(
    tmp_path: Path, sqlite_template: Path
) -> None:
    database = tmp_path / "backburner.db"
    shutil.copy(sqlite_template, database)
    env = child_env(f"sqlite:///{database}")
    del env["BACKBURNER_ENCRYPTION_KEYS"]
    key_file = Path(f"{database}.key")
    first = run_cli("keys", "create", "--owner", "ana", env=env)
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in first.stderr  # told where the key is
    again = run_cli("keys", "list", env=env)
    assert "ana" in again.stdout
    assert "chmod 600" not in again.stderr
    key_file.chmod(0o644)
    loose = run_cli("keys", "list", env=env)
    assert f"the key file {key_file} can be read by others" in loose.stderr
    key_file.chmod(0o600)
    key_file.rename(tmp_path / "elsewhere.key")
    refused = run_cli("serve", "--port", "0", env=env, check=False, timeout=30)
    assert refused.returncode != 0
    assert f"the key file {key_file} is missing" in refused.stderr
    assert "BACKBURNER_ENCRYPTION_KEYS" in refused.stderr
    assert not key_file.exists()  # no new key over data sealed with the old one
    env["BACKBURNER_ENCRYPTION_KEY_FILE"] = str(tmp_path / "elsewhere.key")
    assert "ana" in run_cli("keys", "list", env=env).stdout


@pytest.mark.slow
def test_postgresql_without_keys_is_refused_naming_the_setting(postgres_url: str) -> None:
    env = child_env(postgres_url)
    del env["BACKBURNER_ENCRYPTION_KEYS"]
    refused = run_cli("worker", env=env, check=False, timeout=30)
    assert refused.returncode != 0
    assert "BACKBURNER_ENCRYPTION_KEYS is not set" in refused.stderr


@pytest.mark.slow
def test_a_secret_setting_may_be_given_sealed(tmp_path: Path) -> None:
    env = child_env(f"sqlite:///{tmp_path}/db.sqlite")
    done = subprocess.run(
        [BACKBURNER, "encryption", "seal-secret", "smtp_password"],
        input="hunter2\n",
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    sealed = done.stdout.strip()
    assert sealed.startswith("bbx1:test:")
    assert "hunter2" not in sealed
    given = fast_settings(f"sqlite:///{tmp_path}/db.sqlite", smtp_password=sealed)

    async def opened() -> str:
        store, settings = await open_database(given, upgrade=True)
        await store.close()
        assert settings.smtp_password is not None
        return settings.smtp_password.get_secret_value()

    assert asyncio.run(opened()) == "hunter2"


async def test_rotation_never_undoes_a_write_made_while_it_ran(db_url: str) -> None:
    old = Database(db_url, sealer=KEYRING)
    now = utcnow()
    async with old.write() as tx:
        for index in range(2):
            await tx.conn.execute(
                sa.insert(jobs).values(
                    id=f"job-{index}",
                    owner="alice",
                    type="noop",
                    status="running",
                    payload={"n": index},
                    run_at=now,
                    created_at=now,
                    updated_at=now,
                    max_attempts=1,
                    timeout_seconds=1,
                )
            )
    await old.close()
    both = Keyring.parse(f"{other_key('next')},{TEST_KEYS}")
    store = Database(db_url, sealer=both)
    try:
        async with store.read() as conn:
            rows = await encryption_store.unsealed_rows(conn, jobs.c.payload, both, None, 10)
        assert [row["value"] for row in rows] == [{"n": 0}, {"n": 1}]
        # A worker writes job-1 between the rotation's read and its write.
        async with store.write() as tx:
            await tx.conn.execute(
                sa.update(jobs).where(jobs.c.id == "job-1").values(payload={"n": "newer"})
            )
        async with store.write() as tx:
            assert await encryption_store.reseal(tx.conn, jobs.c.payload, rows) == 1
        async with store.read() as conn:
            found = dict((await conn.execute(sa.select(jobs.c.id, jobs.c.payload))).all())
    finally:
        await store.close()
    assert found == {"job-0": {"n": 0}, "job-1": {"n": "newer"}}
