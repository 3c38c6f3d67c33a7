"""GET /metrics: Prometheus text format, for the whole cluster.

Figures come from the database at scrape time (jobs, model calls, deliveries, workers, rate
limits), so every API process answers for all processes and workers need no port. Counters
are derived from rows that only grow (a job's creation, its end, a call's tokens), so they
never go down while rows are kept.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from backburner.api.auth import CurrentPrincipal
from backburner.api.state import ServicesDep
from backburner.errors import Forbidden
from backburner.store import stats as stats_store
from backburner.store.stats import Histogram, Stats

router = APIRouter(tags=["meta"])

DURATION_BOUNDS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 28800)
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


def _histogram(name: str, doc: str, label: str, found: dict[str, Histogram]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, hist in sorted(found.items()):
        buckets = [("+Inf" if b == float("inf") else f"{b:g}", n) for b, n in hist.buckets]
        family.add_metric([key], buckets, hist.total)
    return family


def families(s: Stats) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "backburner_jobs",
        "Jobs by type and state (waiting_provider: running, waiting on the model).",
        labels=["type", "state"],
    )
    for (job_type, state), n in sorted(s.jobs_by_state.items()):
        jobs.add_metric([job_type, state], n)
    yield jobs
    created = CounterMetricFamily("backburner_jobs_created", "Jobs created.", labels=["type"])
    for job_type, n in sorted(s.created.items()):
        created.add_metric([job_type], n)
    yield created
    finished = CounterMetricFamily(
        "backburner_jobs_finished", "Jobs that ended, by outcome.", labels=["type", "outcome"]
    )
    for (job_type, outcome), n in sorted(s.finished.items()):
        finished.add_metric([job_type, outcome], n)
    yield finished
    retries = CounterMetricFamily("backburner_job_retries", "Retries scheduled.", labels=["type"])
    for job_type, n in sorted(s.retries.items()):
        retries.add_metric([job_type], n)
    yield retries
    depth = GaugeMetricFamily(
        "backburner_queue_depth", "Jobs ready to run and not yet claimed.", labels=["type"]
    )
    for job_type, n in sorted(s.queue_depth.items()):
        depth.add_metric([job_type], n)
    yield depth
    yield GaugeMetricFamily(
        "backburner_jobs_waiting_provider",
        "Running jobs waiting on a model response.",
        value=s.waiting_provider,
    )
    yield _histogram(
        "backburner_job_duration_seconds",
        "From start to end of jobs that ended.",
        "type",
        s.durations,
    )
    yield _histogram(
        "backburner_queue_latency_seconds",
        "From creation to first start.",
        "type",
        s.queue_latency,
    )
    calls = CounterMetricFamily(
        "backburner_provider_calls",
        "Model calls by model and last status.",
        labels=["model", "status"],
    )
    for (model, status), n in sorted(s.provider_calls.items()):
        calls.add_metric([model, status], n)
    yield calls
    yield _histogram(
        "backburner_provider_call_duration_seconds",
        "From submitting a background response to its end.",
        "model",
        s.provider_latency,
    )
    tokens = CounterMetricFamily(
        "backburner_provider_tokens", "Tokens used by model calls.", labels=["model", "kind"]
    )
    for (model, kind), n in sorted(s.tokens.items()):
        tokens.add_metric([model, kind], n)
    yield tokens
    cost = CounterMetricFamily(
        "backburner_provider_cost_usd", "Estimated cost of model calls.", labels=["model"]
    )
    for model, usd in sorted(s.cost_usd.items()):
        cost.add_metric([model], usd)
    yield cost
    deliveries = GaugeMetricFamily(
        "backburner_notification_deliveries",
        "Notification deliveries by channel and state (pending, succeeded, failed).",
        labels=["channel", "state"],
    )
    for (channel, status), n in sorted(s.deliveries.items()):
        deliveries.add_metric([channel, status], n)
    yield deliveries
    attempts = CounterMetricFamily(
        "backburner_notification_attempts", "Delivery attempts made.", labels=["channel"]
    )
    for channel, n in sorted(s.delivery_attempts.items()):
        attempts.add_metric([channel], n)
    yield attempts
    yield GaugeMetricFamily(
        "backburner_workers_alive", "Workers with a recent heartbeat.", value=s.workers_alive
    )
    ages = GaugeMetricFamily(
        "backburner_worker_heartbeat_age_seconds",
        "Seconds since each live worker's last heartbeat.",
        labels=["worker"],
    )
    for worker, age in sorted(s.heartbeat_age.items()):
        ages.add_metric([worker], age)
    yield ages
    scale = GaugeMetricFamily(
        "backburner_rate_limit_scale",
        "Share of the configured rate budget in force (below 1 after 429s).",
        labels=["key"],
    )
    blocked = GaugeMetricFamily(
        "backburner_rate_limit_blocked_seconds",
        "Seconds left of a 429's block.",
        labels=["key"],
    )
    for key in sorted(s.rate_limit_scale):
        scale.add_metric([key], s.rate_limit_scale[key])
        blocked.add_metric([key], s.rate_limit_blocked[key])
    yield scale
    yield blocked


class _Snapshot:
    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        return families(self._stats)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, svc: ServicesDep, principal: CurrentPrincipal) -> Response:
    """Prometheus metrics (admins' keys; scrape with `authorization: Bearer <key>`)."""
    if not principal.is_admin:
        raise Forbidden("metrics need an admin key")
    stats = await stats_store.collect(
        svc.db,
        now=svc.clock(),
        duration_bounds=DURATION_BOUNDS,
        latency_bounds=LATENCY_BOUNDS,
        heartbeat_timeout=svc.settings.lease_seconds,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
