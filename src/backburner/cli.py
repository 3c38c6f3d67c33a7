"""The `backburner` command: run the service and workers, manage the database and keys,
and submit and follow jobs through the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from backburner.clock import utcnow
from backburner.config import Settings
from backburner.errors import Conflict, NotFound, StorageUnavailable
from backburner.logs import configure_logging
from backburner.privacy.sealing import SEALABLE_SETTINGS, key_source
from backburner.providers import start_provider
from backburner.store import Database, Role, erasure, migrate
from backburner.store import audit as audit_store
from backburner.store import jobs as jobs_store
from backburner.store import keys as keys_store
from backburner.store import usage as usage_store
from backburner.store.audit import Actor

# The command line acts as the system: whoever can run it can read the settings anyway.
CLI = Actor("system", user_agent="backburner cli")


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


async def _open(
    settings: Settings, *, upgrade: bool = False, listen: bool = False, pool_size: int = 10
) -> tuple[Database, Settings]:
    """The database, its encryption keys checked (a missing or wrong key ends the command
    with a message naming the setting), and the settings with sealed secrets opened."""
    from backburner.opening import open_database
    from backburner.privacy.sealing import KeyringError

    try:
        return await open_database(settings, upgrade=upgrade, listen=listen, pool_size=pool_size)
    except KeyringError as error:
        raise click.ClickException(str(error)) from None


@contextlib.asynccontextmanager
async def _opened(
    settings: Settings, *, upgrade: bool = False
) -> AsyncIterator[tuple[Database, Settings]]:
    """The database, and the settings with sealed secrets opened (for a provider)."""
    database, opened = await _open(settings, upgrade=upgrade)
    try:
        yield database, opened
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def _database(settings: Settings, *, upgrade: bool = False) -> AsyncIterator[Database]:
    async with _opened(settings, upgrade=upgrade) as (database, _):
        yield database


@contextlib.asynccontextmanager
async def _current_database(settings: Settings) -> AsyncIterator[tuple[Database, Settings]]:
    """The database for a long-running process (listening for signals, schema current),
    and its settings with sealed secrets opened."""
    db, opened = await _open(settings, listen=True, pool_size=settings.database_pool_size)
    try:
        if not await migrate.is_current(db):
            raise click.ClickException(
                "the database schema is not current: run `backburner db upgrade` first"
            )
        yield db, opened
    finally:
        await db.close()


def _stop_on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


@click.group()
@click.version_option(package_name="backburner")
def main() -> None:
    """Backburner: long AI work, off the request path."""


# --- Running -----------------------------------------------------------------------------------


async def _bootstrap(settings: Settings) -> str | None:
    """Migrate, and on first start create the admin key (returned once, never stored)."""
    async with _database(settings, upgrade=True) as db:
        if await keys_store.count_active_keys(db) > 0:
            return None
        _, secret = await keys_store.create_key(
            db,
            owner="admin",
            role=Role.ADMIN,
            name="first-start admin key",
            now=utcnow(),
            actor=CLI,
        )
        return secret


@main.command()
@click.option("--host", default=None, help="Interface to listen on [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [8000].")
@click.option("--no-worker", is_flag=True, help="Serve the API only (scaled-out mode).")
@click.option(
    "--workers-concurrency",
    "concurrency",
    type=int,
    default=None,
    help="Embedded worker's concurrent jobs.",
)
@click.option("--ssl-certfile", default=None, help="Serve https with this PEM certificate.")
@click.option("--ssl-keyfile", default=None, help="The certificate's PEM private key.")
@click.option(
    "--workers",
    "processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="API processes on the port (PostgreSQL, with --no-worker).",
)
def serve(
    host: str | None,
    port: int | None,
    no_worker: bool,
    concurrency: int | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    processes: int,
) -> None:
    """Start the API and dashboard (and, unless --no-worker, a worker) in one process, or
    in several API processes sharing the port (--workers N)."""
    import uvicorn

    from backburner.runtime import create_app

    settings = _settings(
        host=host,
        port=port,
        worker_concurrency=concurrency,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise click.UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    if processes > 1 and not no_worker:
        raise click.UsageError(
            "--workers runs API processes only: add --no-worker, and run `backburner worker` "
            "beside them"
        )
    if processes > 1 and not settings.database_url.startswith("postgresql"):
        raise click.UsageError(
            "--workers needs PostgreSQL: SQLite is the one-process embedded mode"
        )
    configure_logging(settings.log_level, settings.log_format)
    admin_key = asyncio.run(_bootstrap(settings))
    scheme = "https" if settings.ssl_certfile else "http"
    base = settings.public_url or f"{scheme}://{settings.host}:{settings.port}"
    sealed_with = f"  Data encrypted with {key_source(settings).described}\n"
    if admin_key:
        click.echo(
            f"\n  Backburner is starting at {base}/\n"
            f"  Sign in:   {base}/?token={admin_key}\n"
            f"  Admin key: {admin_key}\n"
            "  (shown once; create more with `backburner keys create`)\n" + sealed_with
        )
    else:
        click.echo(
            f"\n  Backburner is starting at {base}/  (sign in with your API key)\n" + sealed_with
        )
    if settings.public_url is None:
        # Notifications link to jobs; without BACKBURNER_PUBLIC_URL they can only name the
        # address this process listens on, which people elsewhere may not reach.
        click.echo(
            f"  Warning: BACKBURNER_PUBLIC_URL is not set; links in e-mail, Slack and Teams "
            f"messages will point at {base}/. Set it to the address people open.\n",
            err=True,
        )
    crashed: list[bool] = []

    def end_process() -> None:
        # An embedded service crashed: shut down as on SIGTERM (uvicorn's handler), and exit
        # non-zero below, so whatever supervises this process restarts it.
        crashed.append(True)
        signal.raise_signal(signal.SIGTERM)

    if processes > 1:
        # Each process builds its own app from the environment: what was given here as
        # options goes there first.
        given = {
            "host": host,
            "port": port,
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
        }
        os.environ.update({f"BACKBURNER_{k.upper()}": str(v) for k, v in given.items() if v})
    app: Any = (
        "backburner.runtime:app_from_environment"
        if processes > 1
        else create_app(
            settings,
            embed_worker=not no_worker,
            migrate_on_start=False,
            on_crash=end_process,
            tune_gc=True,
        )
    )
    uvicorn.run(
        app,
        factory=processes > 1,
        workers=processes if processes > 1 else None,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        # Forwarded headers are believed only from these proxies (none: never).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )
    if crashed:
        raise SystemExit(1)


@main.command()
@click.option("--concurrency", type=int, default=None, help="Jobs run at once [100].")
def worker(concurrency: int | None) -> None:
    """Run a worker alone (scale out: many of these on one PostgreSQL)."""
    settings = _settings(worker_concurrency=concurrency)
    configure_logging(settings.log_level, settings.log_format)
    _run_service(_run_worker(settings))


@main.command()
def dispatcher() -> None:
    """Deliver notifications only (webhooks, e-mail, Slack, Teams); `serve` and `worker`
    run one each already, this adds delivery capacity without running jobs."""
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    _run_service(_run_dispatcher(settings))


async def _run_dispatcher(settings: Settings) -> None:
    from backburner.runtime import run_dispatcher

    async with _current_database(settings) as (db, opened):
        await run_dispatcher(db, opened, install_stop=_stop_on_signals)


def _run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived process; a crashed service (logged where it crashed) exits 1."""
    from backburner.runtime import ServiceCrashed

    try:
        with asyncio.Runner(loop_factory=_fast_event_loop()) as runner:
            runner.run(main)
    except ServiceCrashed:
        raise SystemExit(1) from None


def _fast_event_loop() -> Any:
    """uvloop's event loop where it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run_worker(settings: Settings) -> None:
    from backburner.runtime import run_worker

    async with _current_database(settings) as (db, opened):
        await run_worker(db, opened, install_stop=_stop_on_signals)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8089, show_default=True)
@click.option(
    "--latency",
    type=float,
    default=None,
    help="Seconds a background response takes [BACKBURNER_OFFLINE_LATENCY_S].",
)
@click.option("--latency-jitter", type=float, default=0.0, help="Up to this much more, at random.")
@click.option("--share-429", type=float, default=0.0, help="Share of requests answered 429.")
@click.option("--retry-after", type=float, default=1.0, help="The 429s' retry-after, seconds.")
@click.option("--share-500", type=float, default=0.0, help="Share of requests answered 500.")
@click.option(
    "--no-retry-after",
    "no_retry_after",
    is_flag=True,
    help="429s carry only x-ratelimit-reset-* headers, no retry-after (as some real ones).",
)
@click.option(
    "--share-insufficient-quota",
    type=float,
    default=0.0,
    help="Share of creates answered 429 insufficient_quota (never clears).",
)
@click.option(
    "--share-failed",
    type=float,
    default=0.0,
    help="Share of responses that fail with the transient server_error.",
)
@click.option(
    "--share-failed-permanent",
    type=float,
    default=0.0,
    help="Share of responses that fail with the permanent invalid_prompt.",
)
@click.option(
    "--share-incomplete", type=float, default=0.0, help="Share of responses that end incomplete."
)
@click.option(
    "--share-stuck", type=float, default=0.0, help="Share of responses that stay queued forever."
)
@click.option("--rpm-limit", type=int, default=None, help="Requests per minute it accepts.")
@click.option("--tpm-limit", type=int, default=None, help="Tokens per minute it accepts.")
@click.option("--seed", type=int, default=None, help="Make the faults repeatable.")
@click.option("--webhook-url", default=None, help="Send signed response.* webhooks here.")
@click.option("--webhook-secret", default=None, help="whsec_... secret to sign them with.")
@click.option(
    "--share-webhook-lost",
    type=float,
    default=0.0,
    help="Share of webhooks never sent (polling must notice).",
)
def emulator(
    host: str,
    port: int,
    latency: float | None,
    latency_jitter: float,
    share_429: float,
    retry_after: float,
    share_500: float,
    no_retry_after: bool,
    share_insufficient_quota: float,
    share_failed: float,
    share_failed_permanent: float,
    share_incomplete: float,
    share_stuck: float,
    rpm_limit: int | None,
    tpm_limit: int | None,
    seed: int | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    share_webhook_lost: float,
) -> None:
    """Serve an emulator of OpenAI's Responses API (background mode) on the offline engine.

    Point the SDK (or Backburner) at it: OPENAI_BASE_URL=http://HOST:PORT/v1 and any
    OPENAI_API_KEY. Counters at /_emulator/stats; change the fault knobs while it runs with
    POST /_emulator/faults (JSON of the knobs to change).
    """
    import uvicorn

    from backburner.providers.emulator import EmulatorConfig, create_emulator_app

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    config = EmulatorConfig(
        latency_s=settings.offline_latency_s if latency is None else latency,
        latency_jitter_s=latency_jitter,
        share_429=share_429,
        retry_after_s=retry_after,
        retry_after_header=not no_retry_after,
        share_insufficient_quota=share_insufficient_quota,
        share_500=share_500,
        share_failed=share_failed,
        share_failed_permanent=share_failed_permanent,
        share_incomplete=share_incomplete,
        share_stuck=share_stuck,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        seed=seed,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        share_webhook_lost=share_webhook_lost,
    )
    if (webhook_url is None) != (webhook_secret is None):
        raise click.UsageError("--webhook-url and --webhook-secret go together")
    click.echo(f"Responses API emulator at http://{host}:{port}/v1 (latency {config.latency_s:g}s)")
    uvicorn.run(
        create_emulator_app(config), host=host, port=port, log_config=None, access_log=False
    )


# --- Database and keys ----------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision."""
    settings = _settings()

    async def run() -> str | None:
        async with _database(settings, upgrade=True) as database:
            return await migrate.current_revision(database)

    click.echo(f"database at revision {asyncio.run(run())}")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--owner", required=True, help="Who the key belongs to (jobs are theirs).")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.MEMBER.value)
@click.option("--name", default=None, help="A note to recognise the key by.")
def keys_create(owner: str, role: str, name: str | None) -> None:
    """Create a key; the key itself is printed alone on the last line (shown only once)."""
    settings = _settings()

    async def run() -> str:
        async with _database(settings, upgrade=True) as database:
            key, secret = await keys_store.create_key(
                database, owner=owner, role=Role(role), name=name, now=utcnow(), actor=CLI
            )
            click.echo(f"created {key.role.value} key {key.id} for owner {key.owner}")
            return secret

    click.echo(asyncio.run(run()))


@keys.command("list")
def keys_list() -> None:
    """List keys (their prefixes, never the keys)."""
    settings = _settings()

    async def run() -> None:
        async with _database(settings) as database:
            for key in await keys_store.list_keys(database):
                state = "revoked" if key.revoked_at else "active"
                click.echo(
                    f"{key.id}  {key.prefix}…  {key.owner:<20} {key.role.value:<7} "
                    f"{state:<8} {key.name or ''}"
                )

    asyncio.run(run())


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id."""
    settings = _settings()

    async def run() -> None:
        async with _database(settings) as database:
            await keys_store.revoke_key(database, key_id, now=utcnow(), actor=CLI)

    try:
        asyncio.run(run())
    except Exception as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"revoked {key_id}")


@main.group()
def owners() -> None:
    """Per-owner limits (running jobs, monthly budget) and what owners spend."""


def _limit_value(kind: type[int] | type[float]) -> Callable[[Any, Any, Any], Any]:
    def parse(_ctx: Any, _param: Any, value: str | None) -> Any:
        if value is None or value == "none":
            return value
        try:
            number = kind(value)
        except ValueError:
            raise click.BadParameter(
                f"a number, or 'none' to remove the limit: {value!r}"
            ) from None
        if number < 0 or (kind is int and number < 1):
            raise click.BadParameter("must be positive")
        return number

    return parse


@owners.command("set")
@click.argument("owner")
@click.option(
    "--max-running",
    callback=_limit_value(int),
    help="Jobs the owner may have running at once ('none': the default applies).",
)
@click.option(
    "--budget-usd",
    callback=_limit_value(float),
    help="USD per calendar month (UTC) for model calls ('none': the default applies).",
)
def owners_set(owner: str, max_running: Any, budget_usd: Any) -> None:
    """Set an owner's own limits; options left out keep their current value."""
    settings = _settings()

    async def run() -> usage_store.OwnerLimits:
        async with _database(settings) as database:
            current = await usage_store.get_limits(database, owner)
            running = current.max_running if current else None
            budget = current.monthly_budget_usd if current else None
            return await usage_store.set_limits(
                database,
                owner,
                max_running=running if max_running is None else _none_or(max_running),
                monthly_budget_usd=budget if budget_usd is None else _none_or(budget_usd),
                requests_per_minute=current.requests_per_minute if current else None,
                now=utcnow(),
                actor=CLI,
            )

    limits = asyncio.run(run())
    click.echo(
        f"{owner}: max running {_shown(limits.max_running)}, "
        f"monthly budget {_shown(limits.monthly_budget_usd, '$')}"
    )


def _none_or(value: Any) -> Any:
    return None if value == "none" else value


def _shown(value: float | None, unit: str = "") -> str:
    return "default" if value is None else f"{unit}{value:g}"


@owners.command("erase")
@click.argument("owner")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--wait",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the owner's running jobs to end once cancelled.",
)
def owners_erase(owner: str, yes: bool, wait: float) -> None:
    """Erase everything of OWNER (GDPR erasure): jobs, documents, channels, secrets, limits
    and sessions; keys revoked; usage kept as anonymous totals; the audit keeps that it
    happened. Running jobs are cancelled first (a worker must be running to end them)."""
    if not yes:
        click.confirm(f"Erase everything of {owner!r}? This cannot be undone.", abort=True)
    from backburner.api.deletion import delete_at_provider

    settings = _settings()

    async def run() -> dict[str, int]:
        async with _opened(settings) as (database, opened):
            for job_id in await erasure.unfinished_jobs(database, owner):
                with contextlib.suppress(Conflict, NotFound):  # it ended meanwhile
                    await jobs_store.request_cancel(
                        database, job_id, owner=owner, now=utcnow(), actor=CLI
                    )
            deadline = time.monotonic() + wait
            while left := await erasure.unfinished_jobs(database, owner):
                if time.monotonic() > deadline:
                    raise click.ClickException(
                        f"{len(left)} jobs of {owner} are still ending (is a worker running?); "
                        "nothing was erased yet — run this again"
                    )
                await asyncio.sleep(0.5)
            provider = await start_provider(opened) if opened.openai_api_key else None
            deleted = not_deleted_at_provider = 0
            try:
                while ids := await erasure.job_ids(database, owner, limit=200):
                    for job_id in ids:
                        responses = await jobs_store.delete_job(
                            database, job_id, owner=owner, now=utcnow(), actor=CLI
                        )
                        deleted += 1
                        if provider is not None:
                            not_deleted_at_provider += await delete_at_provider(
                                provider, job_id, responses
                            )
            finally:
                if provider is not None:
                    await provider.aclose()
            counts = await erasure.erase_rest(
                database, owner, now=utcnow(), actor=CLI, jobs_deleted=deleted
            )
            # Their originals and large results now (a store that fails: the workers'
            # sweep deletes them later; the rows naming them are gone either way).
            from backburner.opening import storage_for
            from backburner.worker.objects import sweep

            with contextlib.suppress(StorageUnavailable):
                await sweep(database, storage_for(opened, database), utcnow())
            return counts | {"responses_not_deleted_at_provider": not_deleted_at_provider}

    counts = asyncio.run(run())
    click.echo(f"erased {owner}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@owners.command("ls")
def owners_ls() -> None:
    """Owners with limits of their own, and every owner's spend this month."""
    settings = _settings()

    async def run() -> None:
        async with _database(settings) as database:
            month = usage_store.month_of(utcnow())
            limits = {item.owner: item for item in await usage_store.list_limits(database)}
            spend = await usage_store.spend_by_owner(database, month)
            click.echo(
                f"{'OWNER':<24} {'MAX RUNNING':>11} {'BUDGET/MONTH':>12} {'SPENT ' + month:>15}"
            )
            for owner in sorted(set(limits) | set(spend)):
                own = limits.get(owner)
                click.echo(
                    f"{owner:<24} {_shown(own.max_running if own else None):>11} "
                    f"{_shown(own.monthly_budget_usd if own else None, '$'):>12} "
                    f"{'$' + format(spend.get(owner, 0.0), '.4f'):>15}"
                )
            defaults = settings.owner_max_running, settings.owner_monthly_budget_usd
            click.echo(
                f"defaults: max running {_shown(defaults[0])}, budget {_shown(defaults[1], '$')}"
            )

    asyncio.run(run())


# --- Client commands -------------------------------------------------------------------------

url_option = click.option(
    "--url",
    envvar="BACKBURNER_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The service's base URL.",
)
key_option = click.option(
    "--api-key",
    envvar="BACKBURNER_API_KEY",
    required=True,
    help="Your API key (or set BACKBURNER_API_KEY).",
)


def _client(url: str, api_key: str) -> Any:
    from backburner.client import Client

    return Client(url, api_key)


def _fail_on_api_error(run: Any) -> Any:
    from backburner.client import ApiError

    try:
        return run()
    except ApiError as error:
        problems = error.problem.get("errors") or []
        lines = [f"{error.status}: {error.detail}"] + [
            f"  {p.get('field')}: {p.get('message')}" for p in problems
        ]
        raise click.ClickException("\n".join(lines)) from None
    except OSError as error:
        raise click.ClickException(f"cannot reach the service: {error}") from None


def _read_payload(payload: str) -> dict[str, Any]:
    text = Path(payload[1:]).read_text() if payload.startswith("@") else payload
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint="--payload") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    return value


def _jobs_of_lines(lines: Any, job_type: str | None, priority: int) -> list[dict[str, Any]]:
    """Every line checked before anything is sent: a bad line names its number."""
    jobs: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise click.BadParameter(
                f"line {number}: not JSON ({error.msg})", param_hint="--from-jsonl"
            ) from None
        if not isinstance(value, dict):
            raise click.BadParameter(f"line {number}: not a JSON object", param_hint="--from-jsonl")
        if job_type is not None:
            value = {"type": job_type, "payload": value}
        elif "type" not in value:
            raise click.BadParameter(
                f'line {number}: no "type" (or give JOB_TYPE)', param_hint="--from-jsonl"
            )
        jobs.append({"priority": priority, **value} if priority else value)
    if not jobs:
        raise click.BadParameter("no jobs in it", param_hint="--from-jsonl")
    return jobs


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@main.command()
@click.argument("job_type", required=False)
@click.option("--payload", default="{}", help="JSON object, or @file.json.")
@click.option(
    "--from-jsonl",
    "jsonl",
    type=click.File("r"),
    default=None,
    help="Many jobs, one JSON object per line (- for stdin): payloads of JOB_TYPE, or whole "
    'jobs ({"type": …, "payload": …}) without it. Sent 1,000 to a request.',
)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Upload a document and add its id to payload.document_ids (repeatable).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="With --file: stop at the first file the service refuses (and remove those "
    "uploaded) rather than go on with the good ones.",
)
@click.option("--callback-url", default=None, help="POST the signed result here when it ends.")
@click.option(
    "--notify-email", "emails", multiple=True, help="E-mail this address when it ends (repeatable)."
)
@click.option("--notify-slack", is_flag=True, help="Tell your Slack channel when it ends.")
@click.option("--notify-teams", is_flag=True, help="Tell your Teams channel when it ends.")
@click.option("--priority", type=int, default=0)
@click.option("--idempotency-key", default=None)
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@url_option
@key_option
def submit(
    job_type: str | None,
    payload: str,
    jsonl: Any,
    files: tuple[str, ...],
    strict: bool,
    callback_url: str | None,
    emails: tuple[str, ...],
    notify_slack: bool,
    notify_teams: bool,
    priority: int,
    idempotency_key: str | None,
    wait: bool,
    url: str,
    api_key: str,
) -> None:
    """Create a job (prints its id; with --wait, its result), or many (--from-jsonl: prints
    their ids, one a line, in order)."""
    if jsonl is not None:
        if files or wait or idempotency_key:
            raise click.UsageError("--from-jsonl goes without --file, --wait, --idempotency-key")
        jobs = _jobs_of_lines(jsonl, job_type, priority)
        with _client(url, api_key) as client:
            for entry in _fail_on_api_error(lambda: client.create_jobs(jobs)):
                click.echo(entry.job_id)
        return
    if job_type is None:
        raise click.UsageError("give JOB_TYPE, or --from-jsonl")
    body = _read_payload(payload)
    notify: dict[str, Any] = {"email": list(emails)} if emails else {}
    notify.update({"slack": True} if notify_slack else {})
    notify.update({"teams": True} if notify_teams else {})
    with _client(url, api_key) as client:
        if files:
            ids = _upload_all(client, files, strict=strict)
            body["document_ids"] = [*body.get("document_ids", []), *ids]
        created = _fail_on_api_error(
            lambda: client.create_job(
                job_type,
                body,
                priority=priority,
                idempotency_key=idempotency_key,
                callback_url=callback_url,
                notify=notify or None,
            )
        )
        if not wait:
            click.echo(created.job_id)
            return
        click.echo(
            f"job {created.job_id} queued "
            f"(estimated {created.estimated_completion_seconds or 0:.0f}s)",
            err=True,
        )
        job = _follow(client, created.job_id)
    _print_json(job.result if job.status == "succeeded" else job.model_dump(mode="json"))
    sys.exit(0 if job.status == "succeeded" else 1)


def _upload_all(client: Any, files: tuple[str, ...], *, strict: bool) -> list[str]:
    """Upload each file, one line of progress each on stderr. A file the service refuses
    is named with its reason and left out (with --strict: the ones uploaded are removed
    and the command stops). Stops when none could be uploaded."""
    from backburner.client import ApiError

    ids: list[str] = []
    refused: list[str] = []
    for number, path in enumerate(files, start=1):
        name = Path(path).name
        try:
            document = client.upload_document(path)
        except ApiError as error:
            reason = f"{name}: {error.status} {error.detail}"
            if strict:
                for document_id in ids:
                    with contextlib.suppress(ApiError, OSError):
                        client.delete_document(document_id)
                raise click.ClickException(
                    f"refused {reason} (--strict: the {len(ids)} uploaded before it removed)"
                ) from None
            refused.append(reason)
            click.echo(f"[{number}/{len(files)}] refused {reason}", err=True)
            continue
        except OSError as error:
            raise click.ClickException(f"cannot reach the service: {error}") from None
        ids.append(document.document_id)
        seen = " (the same text as before)" if (document.model_extra or {}).get("duplicate") else ""
        click.echo(f"[{number}/{len(files)}] uploaded {name}{seen}", err=True)
    if not ids:
        raise click.ClickException("no file could be uploaded:\n  " + "\n  ".join(refused))
    if refused:
        click.echo(
            f"going on with {len(ids)} of {len(files)} files; refused: "
            + "; ".join(r.split(":", 1)[0] for r in refused),
            err=True,
        )
    return ids


def _follow(client: Any, job_id: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # Progress goes to stderr so stdout carries only the result (pipe it to jq).
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("pending", total=1.0)

        def update(job: Any) -> None:
            label = job.status + (f" ({job.substate})" if job.substate else "")
            if job.progress_message:
                label += f": {job.progress_message}"
            bar.update(task, completed=job.progress, description=label)

        def lost(error: Exception) -> None:
            # The job goes on in the service; only this view of it was cut.
            bar.update(task, description=f"service unreachable ({error}); reconnecting")

        return _fail_on_api_error(lambda: client.wait(job_id, on_update=update, on_reconnect=lost))


@main.command()
@click.argument("job_id")
@url_option
@key_option
def status(job_id: str, url: str, api_key: str) -> None:
    """Show a job."""
    with _client(url, api_key) as client:
        _print_json(_fail_on_api_error(lambda: client.get_job(job_id)).model_dump(mode="json"))


@main.command()
@click.argument("job_id")
@url_option
@key_option
def result(job_id: str, url: str, api_key: str) -> None:
    """Print a succeeded job's result (also one kept in object storage)."""
    with _client(url, api_key) as client:
        _print_json(_fail_on_api_error(lambda: client.get_result(job_id)))


@main.group()
def documents() -> None:
    """Your uploaded documents."""


@documents.command("ls")
@click.option("--limit", type=int, default=None, help="At most this many [all].")
@url_option
@key_option
def documents_ls(limit: int | None, url: str, api_key: str) -> None:
    """Your documents, newest first: id, name, size, characters, uploaded."""
    with _client(url, api_key) as client:
        found = _fail_on_api_error(lambda: list(itertools.islice(client.iter_documents(), limit)))
    for d in found:
        click.echo(
            f"{d.document_id}\t{d.filename}\t{d.size_bytes}\t{d.char_count}\t"
            f"{(d.model_extra or {}).get('created_at', '')}"
        )


@documents.command("get")
@click.argument("document_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="Write the original file here.",
)
@url_option
@key_option
def documents_get(document_id: str, output: str, url: str, api_key: str) -> None:
    """Download a document's original file."""
    with _client(url, api_key) as client:
        data = _fail_on_api_error(lambda: client.document_content(document_id))
    Path(output).write_bytes(data)
    click.echo(f"wrote {len(data)} bytes to {output}")


@documents.command("rm")
@click.argument("document_ids", nargs=-1, required=True)
@url_option
@key_option
def documents_rm(document_ids: tuple[str, ...], url: str, api_key: str) -> None:
    """Delete documents (jobs that read them keep their results)."""
    with _client(url, api_key) as client:
        for document_id in document_ids:
            _fail_on_api_error(lambda d=document_id: client.delete_document(d))
            click.echo(f"deleted {document_id}")


@main.group()
def jobs() -> None:
    """List jobs."""


@jobs.command("ls")
@click.option("--status", "status_", default=None)
@click.option("--type", "job_type", default=None)
@click.option("--limit", type=int, default=20, show_default=True)
@url_option
@key_option
def jobs_ls(status_: str | None, job_type: str | None, limit: int, url: str, api_key: str) -> None:
    """Your most recent jobs."""
    with _client(url, api_key) as client:
        page = _fail_on_api_error(
            lambda: client.list_jobs(status=status_, type=job_type, limit=limit)
        )
    for job in page.items:
        click.echo(
            f"{job.job_id}  {job.type:<20} {job.status:<10} {job.progress:>4.0%}  "
            f"{job.created_at:%Y-%m-%d %H:%M:%S}"
        )


@main.command()
@click.argument("job_id")
@url_option
@key_option
def cancel(job_id: str, url: str, api_key: str) -> None:
    """Cancel a job."""
    with _client(url, api_key) as client:
        job = _fail_on_api_error(lambda: client.cancel_job(job_id))
    click.echo(
        f"{job.job_id} {job.status}" + (" (cancel requested)" if job.status == "running" else "")
    )


@main.command()
@click.argument("job_id")
@url_option
@key_option
def retry(job_id: str, url: str, api_key: str) -> None:
    """Run a failed or canceled job again."""
    with _client(url, api_key) as client:
        job = _fail_on_api_error(lambda: client.retry_job(job_id))
    click.echo(f"{job.job_id} {job.status}")


if __name__ == "__main__":
    main()


@main.group()
def audit() -> None:
    """The audit trail: who did what to whose data."""


@audit.command("export")
@click.option(
    "--since",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    help="From this moment (UTC unless it says otherwise), e.g. 2026-11-01.",
)
def audit_export(since: datetime) -> None:
    """Write the audit events since a moment as JSON lines, oldest first."""
    settings = _settings()
    start = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def run() -> None:
        async with _database(settings) as database:
            after = 0
            while True:
                page = await audit_store.events_since(database, start, after_id=after, limit=1000)
                for event in page:
                    click.echo(json.dumps(audit_line(event), default=str))
                if len(page) < 1000:
                    return
                after = page[-1].id

    asyncio.run(run())


def audit_line(event: audit_store.AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": vars(event.actor),
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "owner": event.owner,
        "detail": event.detail,
    }


# --- Encryption at rest ----------------------------------------------------------------------


@main.group()
def encryption() -> None:
    """Keys for the data encrypted at rest: new keys, rotation, sealed settings."""


@encryption.command("new-key")
@click.option("--id", "key_id", default="k1", show_default=True, help="The key's id.")
def encryption_new_key(key_id: str) -> None:
    """Print a new key as BACKBURNER_ENCRYPTION_KEYS takes it (id:base64key). To rotate,
    put the new one first (`new,old`), restart every process, then run `rotate`."""
    from backburner.privacy.sealing import Keyring, KeyringError

    try:
        click.echo(Keyring.generate(key_id).spec())
    except KeyringError as error:
        raise click.BadParameter(str(error).split(": ", 1)[-1], param_hint="--id") from None


@encryption.command("rotate")
@click.option("--batch", "batch_size", default=500, show_default=True, type=click.IntRange(1))
def encryption_rotate(batch_size: int) -> None:
    """Seal everything with the first key: objects (originals, large results) and values
    under older keys, and values written before encryption. Batched (workers keep running)
    and resumable (run it again after an interruption). Retires the older keys once nothing
    is sealed with them."""
    from backburner.store import encryption as encryption_store

    settings = _settings()

    def progress(column: str, count: int) -> None:
        if count:
            click.echo(f"  {column}: {count} re-sealed")

    async def run() -> dict[str, int]:
        from backburner.opening import storage_for
        from backburner.worker.objects import reseal

        async with _opened(settings, upgrade=True) as (database, opened):
            assert database.sealer is not None
            # Objects first: the columns' rotation retires the older keys when it is done.
            await reseal(database, storage_for(opened, database), on_progress=progress)
            return await encryption_store.rotate(
                database,
                database.sealer,
                now=utcnow,
                batch_size=batch_size,
                on_progress=progress,
            )

    left = asyncio.run(run())
    if any(left.values()):
        pending = ", ".join(f"{column} {count}" for column, count in left.items() if count)
        raise click.ClickException(
            f"values were written under an older key meanwhile ({pending}): a process still "
            "seals with it; restart every process with the new keys, then run rotate again"
        )
    click.echo("Everything is sealed with the first key; older keys are retired.")


@encryption.command("status")
def encryption_status() -> None:
    """How many values of each encrypted column are not yet sealed with the first key."""
    from backburner.store import encryption as encryption_store

    settings = _settings()

    async def run() -> dict[str, int]:
        async with _database(settings) as database:
            assert database.sealer is not None
            return await encryption_store.left_to_rotate(database, database.sealer)

    left = asyncio.run(run())
    for column, count in left.items():
        click.echo(f"{column}\t{count}")


@encryption.command("seal-secret")
@click.argument("name", type=click.Choice(SEALABLE_SETTINGS))
def encryption_seal_secret(name: str) -> None:
    """Read a secret on standard input and print it sealed with the first key, for
    BACKBURNER_<NAME> in a .env file or a manifest (the service opens it at start-up)."""
    from backburner.privacy.sealing import KeyringError, key_source, seal_setting

    value = sys.stdin.read().strip()
    if not value:
        raise click.UsageError("give the secret on standard input")
    try:
        source = key_source(_settings())
    except KeyringError as error:
        raise click.ClickException(str(error)) from None
    if source.unsaved:
        raise click.ClickException(
            f"{source.described} does not exist yet: start the service once, or set "
            "BACKBURNER_ENCRYPTION_KEYS"
        )
    click.echo(seal_setting(source.keyring, name, value))


# --- The queue, for operators and autoscalers --------------------------------------------------


@main.group()
def queue() -> None:
    """The queue as it stands."""


@queue.command("stats")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (for scripts, KEDA).")
def queue_stats(as_json: bool) -> None:
    """Per job type: ready (may start now), how long the oldest ready one has waited,
    scheduled for later, running, and of those waiting on the model."""
    from backburner.store import stats as stats_store

    settings = _settings()

    async def run() -> dict[str, Any]:
        async with _database(settings) as database:
            found = await stats_store.queue_by_type(database, utcnow())
        return {job_type: vars(queue) for job_type, queue in found.items()}

    found = asyncio.run(run())
    if as_json:
        total = {
            "ready": sum(q["ready"] for q in found.values()),
            "oldest_ready_seconds": max(
                (q["oldest_ready_seconds"] for q in found.values()), default=0.0
            ),
        }
        click.echo(json.dumps({"types": found, "total": total}))
        return
    click.echo("type\tready\toldest ready (s)\tscheduled\trunning\twaiting on the model")
    for job_type, q in found.items():
        click.echo(
            f"{job_type}\t{q['ready']}\t{q['oldest_ready_seconds']:.1f}\t{q['scheduled']}\t"
            f"{q['running']}\t{q['waiting_provider']}"
        )


# --- Quality: evaluation runs, schedules, ratings ---------------------------------------------


@main.group("eval")
def eval_group() -> None:
    """Evaluation runs over golden datasets (admin keys)."""


def _dataset_items(path: Path) -> list[dict[str, Any]]:
    """A JSON Lines dataset, each line checked before anything is sent."""
    items: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise click.BadParameter(
                f"line {number}: not JSON ({error.msg})", param_hint="--dataset"
            ) from None
        if not isinstance(value, dict):
            raise click.BadParameter(f"line {number}: not a JSON object", param_hint="--dataset")
        items.append(value)
    if not items:
        raise click.BadParameter("no items in it", param_hint="--dataset")
    return items


def _scores_table(scores: dict[str, float] | None) -> list[str]:
    return [f"  {name:<18} {value:.4f}" for name, value in sorted((scores or {}).items())]


def _show_run(run: dict[str, Any]) -> None:
    cost = run.get("cost_usd")
    per_point = run.get("cost_per_point_usd")
    click.echo(
        f"{run['id']}  {run['type']}  model {run['model']}  {run['status']}  "
        f"{run['items']} items  dataset {run['dataset']} ({run['dataset_sha256'][:12]})  "
        f"prompt {run['prompt_version']}"
    )
    click.echo(
        f"cost {'-' if cost is None else f'${cost:.4f}'}"
        f"  per point of quality {'-' if per_point is None else f'${per_point:.6f}'}"
        f"  duration {run.get('duration_seconds') or 0:.1f}s"
    )
    for line in _scores_table(run.get("scores")):
        click.echo(line)
    if run.get("previous_run_id"):
        click.echo(f"against {run['previous_run_id']}:")
        for name, delta in sorted((run.get("deltas") or {}).items()):
            click.echo(f"  {name:<18} {delta:+.4f}")
    for r in (run.get("regressions") or [])[:20]:
        click.echo(f"  fell: {r['item_id']} {r['metric']} {r['before']:.3f} -> {r['after']:.3f}")


@eval_group.command("run")
@click.argument("job_type")
@click.option(
    "--dataset",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A JSON Lines dataset [the type's built-in one].",
)
@click.option("--model", default=None, help="The model the jobs use [the type's configured one].")
@click.option(
    "--window", type=click.Choice(["2h", "8h"]), default=None, help="A discounted window."
)
@click.option("--label", default=None, help="A name to tell this run by.")
@click.option("--rubric", is_flag=True, help="Also have a model grade each answer (costs more).")
@click.option("--no-wait", is_flag=True, help="Print the run's id and return.")
@url_option
@key_option
def eval_run(
    job_type: str,
    dataset: Path | None,
    model: str | None,
    window: str | None,
    label: str | None,
    rubric: bool,
    no_wait: bool,
    url: str,
    api_key: str,
) -> None:
    """Submit every item of a dataset as a job of JOB_TYPE, wait, and print the scores."""
    items = _dataset_items(dataset) if dataset is not None else None
    with _client(url, api_key) as client:
        run = _fail_on_api_error(
            lambda: client.start_eval(
                job_type,
                items=items,
                dataset_name=dataset.name if dataset is not None else None,
                model=model,
                window=window,
                label=label,
                rubric=rubric,
            )
        )
        if no_wait:
            click.echo(run.id)
            return
        with click.progressbar(length=run.items, label=f"{run.id}") as bar:
            seen = 0

            def advance(current: Any) -> None:
                nonlocal seen
                ended = int((current.model_extra or {}).get("ended_items", 0))
                bar.update(max(0, ended - seen))
                seen = max(seen, ended)

            _fail_on_api_error(lambda: client.wait_eval(run.id, on_update=advance))
        _show_run(_fail_on_api_error(lambda: client.eval_detail(run.id)))


@eval_group.command("show")
@click.argument("run_id")
@url_option
@key_option
def eval_show(run_id: str, url: str, api_key: str) -> None:
    """A run's scores, against the run of its type before it, and items that fell."""
    with _client(url, api_key) as client:
        _show_run(_fail_on_api_error(lambda: client.eval_detail(run_id)))


@eval_group.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True)
@url_option
@key_option
def eval_compare(run_a: str, run_b: str, as_json: bool, url: str, api_key: str) -> None:
    """RUN_B against RUN_A: each metric's change, items that fell, and cost per point."""
    with _client(url, api_key) as client:
        found = _fail_on_api_error(lambda: client.compare_evals(run_a, run_b))
    if as_json:
        _print_json(found)
        return
    a, b = found["a"], found["b"]
    click.echo(f"{'metric':<18} {a['id'][-8:]:>10} {b['id'][-8:]:>10} {'change':>9}")
    for name in sorted(set(a["scores"] or {}) | set(b["scores"] or {})):
        before, after = (a["scores"] or {}).get(name), (b["scores"] or {}).get(name)
        change = found["deltas"].get(name)
        click.echo(
            f"{name:<18} {'-' if before is None else f'{before:.4f}':>10} "
            f"{'-' if after is None else f'{after:.4f}':>10} "
            f"{'' if change is None else f'{change:+.4f}':>9}"
        )
    for run in (a, b):
        per_point, cost = run.get("cost_per_point_usd"), run.get("cost_usd")
        click.echo(
            f"{run['id']} ({run['model']}): cost "
            f"{'-' if cost is None else f'${cost:.4f}'}, per point "
            f"{'-' if per_point is None else f'${per_point:.6f}'}"
        )
    for r in found["regressions"][:30]:
        click.echo(f"fell: {r['item_id']} {r['metric']} {r['before']:.3f} -> {r['after']:.3f}")


@eval_group.command("ls")
@click.option("--type", "job_type", default=None)
@click.option("--limit", type=int, default=20, show_default=True)
@url_option
@key_option
def eval_ls(job_type: str | None, limit: int, url: str, api_key: str) -> None:
    """Evaluation runs, newest first."""
    with _client(url, api_key) as client:
        runs = _fail_on_api_error(lambda: client.list_evals(type=job_type, limit=limit))
    for run in runs:
        overall = (run.scores or {}).get("overall")
        click.echo(
            f"{run.id}\t{run.type}\t{run.model}\t{run.status}\t"
            f"{'-' if overall is None else f'{overall:.4f}'}\t{run.created_at:%Y-%m-%d %H:%M}"
        )


@main.group()
def schedules() -> None:
    """Jobs and evaluation runs on a cron schedule (admin keys)."""


@schedules.command("add")
@click.argument("name")
@click.option("--cron", required=True, help='Five fields, e.g. "0 3 * * *" (03:00 daily).')
@click.option("--type", "job_type", required=True)
@click.option("--payload", default=None, help="A job's payload: JSON object, or @file.json.")
@click.option("--eval", "as_eval", is_flag=True, help="An evaluation run of the type instead.")
@click.option("--model", default=None, help="With --eval: the model to evaluate.")
@click.option("--timezone", default="UTC", show_default=True)
@url_option
@key_option
def schedules_add(
    name: str,
    cron: str,
    job_type: str,
    payload: str | None,
    as_eval: bool,
    model: str | None,
    timezone: str,
    url: str,
    api_key: str,
) -> None:
    """Create a schedule; prints it with its first slot."""
    fields: dict[str, Any] = {"name": name, "cron": cron, "type": job_type, "timezone": timezone}
    if as_eval:
        fields["eval"] = {"model": model} if model else {}
    else:
        fields["payload"] = _read_payload(payload or "{}")
    with _client(url, api_key) as client:
        _print_json(_fail_on_api_error(lambda: client.create_schedule(**fields)))


@schedules.command("ls")
@url_option
@key_option
def schedules_ls(url: str, api_key: str) -> None:
    """Every schedule with its next slot."""
    with _client(url, api_key) as client:
        found = _fail_on_api_error(client.list_schedules)
    for s in found:
        click.echo(
            f"{s['id']}\t{s['name']}\t{s['cron']} ({s['timezone']})\t{s['kind']}:{s['type']}\t"
            f"{'on' if s['enabled'] else 'paused'}\tnext {s['next_at']}"
        )


def _set_schedule(schedule_id: str, enabled: bool, url: str, api_key: str) -> None:
    with _client(url, api_key) as client:
        _fail_on_api_error(lambda: client.set_schedule_enabled(schedule_id, enabled))
    click.echo("resumed" if enabled else "paused")


@schedules.command("pause")
@click.argument("schedule_id")
@url_option
@key_option
def schedules_pause(schedule_id: str, url: str, api_key: str) -> None:
    """Stop making runs until resumed."""
    _set_schedule(schedule_id, False, url, api_key)


@schedules.command("resume")
@click.argument("schedule_id")
@url_option
@key_option
def schedules_resume(schedule_id: str, url: str, api_key: str) -> None:
    """Resume from the next slot after now (skipped slots are not caught up)."""
    _set_schedule(schedule_id, True, url, api_key)


@schedules.command("rm")
@click.argument("schedule_id")
@url_option
@key_option
def schedules_rm(schedule_id: str, url: str, api_key: str) -> None:
    with _client(url, api_key) as client:
        _fail_on_api_error(lambda: client.delete_schedule(schedule_id))
    click.echo("removed")


@main.command()
@click.argument("job_id")
@click.argument("rating", type=click.Choice(["up", "down"]))
@click.option("--comment", default=None)
@url_option
@key_option
def rate(job_id: str, rating: str, comment: str | None, url: str, api_key: str) -> None:
    """Rate a job's result, thumbs up or down."""
    with _client(url, api_key) as client:
        _fail_on_api_error(lambda: client.rate_job(job_id, rating, comment))
    click.echo(f"rated {rating}")
