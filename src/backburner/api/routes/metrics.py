"""GET /metrics: Prometheus text format, for the whole cluster.

Figures come from the database at scrape time (jobs, model calls, deliveries, workers, rate
limits), so every API process answers for all processes and workers need no port. Counters
are derived from rows that only grow (a job's creation, its end, a call's tokens), so they
never go down while rows are kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

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
from backburner.api.openapi import problems
from backburner.api.state import ServicesDep
from backburner.errors import Forbidden
from backburner.jobs.evals.scoring import Standing, standings
from backburner.store import evals as evals_store
from backburner.store import feedback as feedback_store
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


def _labelled(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    labels: list[str],
    values: Mapping[Any, float],
) -> Metric:
    """A family with one sample per key of `values` (a label value, or a tuple of them)."""
    family = kind(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def families(s: Stats) -> Iterator[Metric]:
    counter, gauge = CounterMetricFamily, GaugeMetricFamily
    yield _labelled(
        gauge,
        "backburner_jobs",
        "Jobs by type and state (waiting_provider: running, waiting on the model).",
        ["type", "state"],
        s.jobs_by_state,
    )
    yield _labelled(counter, "backburner_jobs_created", "Jobs created.", ["type"], s.created)
    yield _labelled(
        counter,
        "backburner_jobs_finished",
        "Jobs that ended, by outcome.",
        ["type", "outcome"],
        s.finished,
    )
    yield _labelled(counter, "backburner_job_retries", "Retries scheduled.", ["type"], s.retries)
    yield _labelled(
        gauge,
        "backburner_queue_depth",
        "Jobs ready to run and not yet claimed.",
        ["type"],
        s.queue_depth,
    )
    yield _labelled(
        gauge,
        "backburner_queue_oldest_seconds",
        "How long the longest-waiting ready job of the type has waited.",
        ["type"],
        s.queue_oldest,
    )
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
    yield _labelled(
        counter,
        "backburner_provider_calls",
        "Model calls by model and last status.",
        ["model", "status"],
        s.provider_calls,
    )
    yield _histogram(
        "backburner_provider_call_duration_seconds",
        "From submitting a background response to its end.",
        "model",
        s.provider_latency,
    )
    yield _labelled(
        counter,
        "backburner_provider_tokens",
        "Tokens used by model calls.",
        ["model", "kind"],
        s.tokens,
    )
    yield _labelled(
        counter,
        "backburner_provider_cost_usd",
        "Estimated cost of model calls.",
        ["model"],
        s.cost_usd,
    )
    yield _labelled(
        gauge,
        "backburner_notification_deliveries",
        "Notification deliveries by channel and state (pending, succeeded, failed).",
        ["channel", "state"],
        s.deliveries,
    )
    yield _labelled(
        counter,
        "backburner_notification_attempts",
        "Delivery attempts made.",
        ["channel"],
        s.delivery_attempts,
    )
    yield GaugeMetricFamily(
        "backburner_workers_alive", "Workers with a recent heartbeat.", value=s.workers_alive
    )
    yield _labelled(
        gauge,
        "backburner_worker_heartbeat_age_seconds",
        "Seconds since each live worker's last heartbeat.",
        ["worker"],
        s.heartbeat_age,
    )
    yield _labelled(
        gauge,
        "backburner_rate_limit_scale",
        "Share of the configured rate budget in force (below 1 after 429s).",
        ["key"],
        s.rate_limit_scale,
    )
    yield _labelled(
        gauge,
        "backburner_rate_limit_blocked_seconds",
        "Seconds left of a 429's block.",
        ["key"],
        s.rate_limit_blocked,
    )
    yield _labelled(
        counter,
        "backburner_rate_limit_waits",
        "Times a model call had to wait for the shared rate budget.",
        ["key"],
        s.rate_limit_waits,
    )
    yield _labelled(
        counter,
        "backburner_rate_limit_wait_seconds",
        "Seconds model calls were told to wait for the shared rate budget.",
        ["key"],
        s.rate_limit_waited,
    )


def quality_families(
    standings: list[Standing], ratings: list[feedback_store.RatingTotals]
) -> Iterator[Metric]:
    gauge = GaugeMetricFamily
    yield _labelled(
        gauge,
        "backburner_eval_score",
        "The latest evaluation run's score per job type, model and metric (0-1; for "
        "calibration_error and brier lower is better).",
        ["type", "model", "metric"],
        {(s.job_type, s.model, m): v for s in standings for m, v in s.scores.items()},
    )
    yield _labelled(
        gauge,
        "backburner_eval_score_change",
        "The latest evaluation run's score minus the one before, same type and model.",
        ["type", "model", "metric"],
        {(s.job_type, s.model, m): v for s in standings for m, v in s.change.items()},
    )
    yield _labelled(
        gauge,
        "backburner_job_ratings",
        "People's ratings of job results by type, model and rating (up, down).",
        ["type", "model", "rating"],
        {
            (t.job_type, t.model, rating): count
            for t in ratings
            for rating, count in (("up", t.up), ("down", t.down))
        },
    )


class _Snapshot:
    def __init__(
        self,
        stats: Stats,
        standings: list[Standing],
        ratings: list[feedback_store.RatingTotals],
    ) -> None:
        self._stats = stats
        self._standings = standings
        self._ratings = ratings

    def collect(self) -> Iterator[Metric]:
        yield from families(self._stats)
        yield from quality_families(self._standings, self._ratings)


@router.get("/metrics", response_class=Response, responses=problems(403))
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
    history = await evals_store.scored_history(svc.db, limit=500)
    current = standings([(run.job_type, run.model, run.scores) for run in history])
    ratings = await feedback_store.totals(svc.db)
    registry.register(_Snapshot(stats, current, ratings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
