"""GET /metrics: parsed with the Prometheus client's own parser, values checked after
known work."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from backburner.config import Settings
from backburner.store import Database
from backburner.store import ratelimits as ratelimits_store
from backburner.store.ratelimits import Bucket
from tests.conftest import Keys, auth, serving
from tests.e2e.test_api_jobs import assert_problem, create, until_done


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(found[(name, tuple(sorted(labels.items())))])


async def test_metrics_count_known_work(settings: Settings, keys: Keys, db: Database) -> None:
    async with serving(settings, keys.admin, embed_worker=True) as api:
        ids = [
            (await create(api, body)).json()["job_id"]
            for body in (
                {"type": "noop"},
                {"type": "noop"},
                {"type": "test_broken"},
                {"type": "test_ask_model"},
                {"type": "test_flaky", "payload": {"fail_times": 1}},
            )
        ]
        for job_id in ids:
            await until_done(api, job_id)
        # A bucket that made callers wait (the counting itself: test_costs_and_limits).
        now = datetime.now(UTC)
        bucket = Bucket("openai:gpt-x", 0.0, 0.0, 0.5, None, now)
        await ratelimits_store.update(
            db, bucket.key, bucket, lambda b: (replace(b, waits=3, waited_seconds=4.5), None)
        )
        response = await api.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        member = await api.get("/metrics", headers=auth(keys.alice))
        anonymous = await api.get("/metrics", headers={"Authorization": ""})
    assert_problem(member, 403)
    assert_problem(anonymous, 401)
    found = samples(response.text)
    assert value(found, "backburner_jobs_created_total", type="noop") == 2
    assert value(found, "backburner_jobs_finished_total", type="noop", outcome="succeeded") == 2
    assert value(found, "backburner_jobs_finished_total", type="test_broken", outcome="failed") == 1
    assert value(found, "backburner_jobs", type="noop", state="succeeded") == 2
    assert value(found, "backburner_job_retries_total", type="test_broken") == 0  # permanent
    assert value(found, "backburner_job_retries_total", type="test_flaky") == 1
    assert value(found, "backburner_job_duration_seconds_count", type="noop") == 2
    assert value(found, "backburner_job_duration_seconds_bucket", type="noop", le="+Inf") == 2
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in found.items()
        if name == "backburner_queue_latency_seconds_bucket" and dict(labels)["type"] == "noop"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == 2
    model = settings.model
    assert value(found, "backburner_provider_calls_total", model=model, status="completed") == 1
    assert value(found, "backburner_provider_tokens_total", model=model, kind="input") > 0
    assert value(found, "backburner_provider_cost_usd_total", model=model) > 0
    assert value(found, "backburner_provider_call_duration_seconds_count", model=model) == 1
    assert value(found, "backburner_workers_alive") >= 1
    assert value(found, "backburner_jobs_waiting_provider") == 0
    assert value(found, "backburner_rate_limit_waits_total", key="openai:gpt-x") == 3
    assert value(found, "backburner_rate_limit_wait_seconds_total", key="openai:gpt-x") == 4.5
    assert value(found, "backburner_rate_limit_scale", key="openai:gpt-x") == 0.5
    assert all(name.startswith("backburner_") for name, _ in found)


async def test_metrics_before_any_work_are_well_formed(api: httpx.AsyncClient, keys: Keys) -> None:
    response = await api.get("/metrics", headers=auth(keys.admin))
    found = samples(response.text)
    assert value(found, "backburner_jobs_waiting_provider") == 0
    assert value(found, "backburner_workers_alive") >= 1
