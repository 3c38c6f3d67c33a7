"""The dispatcher: expands the outbox into deliveries and delivers them, at least once.

Many may run (one per `serve` and `worker` process): claims are leased and `SKIP LOCKED`,
so each delivery is sent by one dispatcher at a time, and again by another if that one
dies mid-send. Sends run concurrently (bounded); their results are written in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohttp
import aiosmtplib

from backburner.clock import utcnow
from backburner.config import Settings
from backburner.errors import StorageUnavailable, UnsafeTarget
from backburner.notify import messages, policy, signing
from backburner.notify.ssrf import Allowed, GuardedResolver, safe_url
from backburner.storage import ObjectMissing, Objects, open_objects
from backburner.store import CHANNEL_OUTBOX, Database, Job
from backburner.store import channels as channels_store
from backburner.store import outbox as outbox_store
from backburner.store.channels import Endpoint, OwnerChannels
from backburner.store.outbox import Attempt, AttemptResult, Delivery

log = logging.getLogger(__name__)

EXCERPT_BYTES = 2048
# What a member reads when a delivery got no HTTP answer, whatever the reason.
UNDELIVERED = "could not deliver: no HTTP answer (the receiver was unreachable or did not answer)"
USER_AGENT = "Backburner-Webhooks/1.0"
LANES = 3


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        objects: Objects | None = None,
    ) -> None:
        self.db = db
        self.objects = objects or open_objects(settings, db.sealer)
        self.settings = settings
        self.clock = clock
        self.id = f"{socket.gethostname()[:40]}-{os.getpid()}-d{secrets.token_hex(3)}"
        self.allowed = Allowed.parse(
            settings.webhook_allowed_hosts, allow_http=settings.webhook_allow_http
        )
        base = settings.public_url or f"http://{settings.host}:{settings.port}"
        self.links = messages.Links(base.rstrip("/"))
        self.retry_for = timedelta(hours=settings.notify_retry_hours)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._sending = asyncio.Semaphore(settings.notify_concurrency)
        self._client: aiohttp.ClientSession | None = None
        self.sent = 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self, _payload: str = "") -> None:
        self._wake.set()

    async def run(self) -> None:
        unsubscribe = self.db.signals.subscribe(CHANNEL_OUTBOX, self.wake)
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=GuardedResolver(self.allowed),
                limit=self.settings.notify_concurrency,
                ttl_dns_cache=10,
            ),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self.settings.notify_connect_timeout_seconds,
                sock_read=self.settings.notify_timeout_seconds,
            ),
            headers={"user-agent": USER_AGENT},
            auto_decompress=False,
        )
        try:
            # A few lanes, each claiming and sending its own batch, so one batch's database
            # round trips overlap another's HTTP; the semaphore bounds sends in all.
            async with asyncio.TaskGroup() as lanes:
                for number in range(LANES):
                    lanes.create_task(self._lane(), name=f"notify-lane-{number}")
        finally:
            unsubscribe()
            await self._client.close()

    async def _lane(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = await self.run_once()
            except Exception as error:
                if not self.db.outages.absorbed(error, "notifications"):
                    log.exception("notification dispatch failed; trying again shortly")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                self._wake.clear()

    async def run_once(self) -> bool:
        """Expand what is owed and send what is due; whether there was work."""
        unexpanded, due = await outbox_store.has_work(self.db, now=self.clock())
        if not (unexpanded or due):
            return False  # one cheap read, no write transaction, when idle
        expanded = 0
        if unexpanded:
            expanded = await outbox_store.expand_notifications(
                self.db,
                now=self.clock(),
                retry_for=self.retry_for,
                owed=self._owed,
                with_result=self._with_result,
            )
        claimed = await outbox_store.claim_deliveries(
            self.db,
            dispatcher_id=self.id,
            limit=max(1, self.settings.notify_concurrency),
            lease_seconds=self.settings.notify_lease_seconds,
            now=self.clock(),
        )
        if claimed:
            signing_secrets = await self._signing_secrets(
                {d.owner for d in claimed if d.channel == "webhook"}
            )
            results = await asyncio.gather(
                *(self._attempt(d, signing_secrets.get(d.owner, [])) for d in claimed)
            )
            await outbox_store.record_attempts(
                self.db, dispatcher_id=self.id, results=results, now=self.clock()
            )
            self.sent += sum(1 for r in results if r.status == "succeeded")
        return bool(expanded or claimed)

    async def _signing_secrets(self, owners: set[str]) -> dict[str, list[str]]:
        found = await channels_store.signing_secrets(self.db, owners, self.clock())
        for owner in owners - set(found):
            # First webhook of an owner who never asked for its secret: make it now; the
            # owner reads it with GET /api/webhooks/secret.
            made = await channels_store.current_secret(
                self.db, owner, now=self.clock(), make=signing.new_secret
            )
            found[owner] = [made]
        return found

    async def _with_result(self, job: Job) -> Job:
        """A job whose result is an object, with that result read (for the e-mail's
        excerpt); one that cannot be read now goes without an excerpt, not without mail."""
        if job.result_object is None:
            return job
        try:
            return dataclasses.replace(job, result=await self.objects.get_json(job.result_object))
        except (StorageUnavailable, ObjectMissing, ValueError) as error:
            log.warning(
                "a result object could not be read for its notification's excerpt",
                extra={"job_id": job.id, "error": str(error)},
            )
            return job

    def links_for(self, job: Job) -> messages.Links:
        """Links to BACKBURNER_PUBLIC_URL, else to the URL the API was reached at when the
        job was created (else this process's own address)."""
        if self.settings.public_url is None and job.origin:
            return messages.Links(job.origin)
        return self.links

    def _owed(
        self,
        job: Job,
        event_type: str,
        event_id: str,
        channels: OwnerChannels | None,
        endpoints: list[Endpoint],
    ) -> list[outbox_store.OwedDelivery]:
        return messages.owed_deliveries(
            job,
            event_type,
            event_id,
            channels,
            endpoints,
            links=self.links_for(job),
            inline_limit=self.settings.notify_result_inline_bytes,
        )

    async def _attempt(self, delivery: Delivery, owner_secrets: list[str]) -> AttemptResult:
        async with self._sending:
            started = time.monotonic()
            at = self.clock()
            code: int | None = None
            excerpt: str | None = None
            error: str | None = None
            detail: str | None = None  # for the log; members see `error`
            try:
                if delivery.channel == "email":
                    await self._send_email(delivery)
                    ok = True
                else:
                    code, excerpt = await self._post(delivery, owner_secrets)
                    ok = 200 <= code < 300
                    if not ok:
                        error = f"HTTP {code}"
            except UnsafeTarget as refused:
                ok, error = False, f"refused: {refused}"
            except (
                TimeoutError,
                aiohttp.ClientError,
                aiosmtplib.SMTPException,
                OSError,
            ) as failure:
                # One class of error whatever the transport said: its words would tell a
                # member whether a port is closed, open, or speaks something (a scanner).
                ok, error = False, UNDELIVERED
                detail = f"{type(failure).__name__}: {failure}"[:500]
            latency_ms = (time.monotonic() - started) * 1000
        gone = code == 410 or (error or "").startswith("refused:")
        status, next_at = policy.next_step(
            ok=ok,
            gone=gone,
            attempts=delivery.attempts,
            now=self.clock(),
            give_up_at=delivery.give_up_at,
            base=self.settings.notify_retry_base_seconds,
        )
        if status != "succeeded":
            log.info(
                "notification not delivered",
                extra={
                    "job_id": delivery.job_id,
                    "delivery_id": delivery.id,
                    "channel": delivery.channel,
                    "error": detail or error,
                    "next": status,
                },
            )
        return AttemptResult(
            Attempt(delivery.id, at, code, latency_ms, error, excerpt),
            status,
            next_at,
            disable_endpoint=code == 410 and delivery.endpoint_id is not None,
        )

    async def _post(self, delivery: Delivery, owner_secrets: list[str]) -> tuple[int, str]:
        assert self._client is not None
        target = safe_url(delivery.target, self.allowed)
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        if delivery.channel == "webhook":
            headers |= signing.headers(owner_secrets, delivery.event_id, int(time.time()), body)
        async with self._client.post(
            target, data=body, headers=headers, allow_redirects=False
        ) as response:
            # At most EXCERPT_BYTES of the answer: a receiver cannot make us read a flood.
            excerpt = await response.content.read(EXCERPT_BYTES)
            return response.status, excerpt.decode("utf-8", errors="replace")

    async def _send_email(self, delivery: Delivery) -> None:
        settings = self.settings
        if settings.smtp_host is None:
            raise aiosmtplib.SMTPException("no SMTP server configured (BACKBURNER_SMTP_HOST)")
        payload: dict[str, Any] = delivery.payload
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = payload["to"]
        message["Subject"] = payload["subject"]
        message["Message-ID"] = f"<{delivery.event_id}.{delivery.id}@backburner>"
        message["Date"] = formatdate(usegmt=True)  # some mail filters score mail without one
        message.set_content(payload["text"])
        message.add_alternative(payload["html"], subtype="html")
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            start_tls=settings.smtp_starttls and not settings.smtp_tls,
            use_tls=settings.smtp_tls,
            timeout=settings.notify_timeout_seconds,
        )
