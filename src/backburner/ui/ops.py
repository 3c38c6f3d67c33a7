"""The operator page (admins): the queue, the last hour and day as charts, the workers with
their leases, the shared rate limiter and the schedules."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from backburner.api.state import services
from backburner.store import ops as ops_store
from backburner.store import ratelimits as ratelimits_store
from backburner.store import schedules as schedules_store
from backburner.ui.charts import Chart, grouped_bars, lines, stacked_bars
from backburner.ui.pages import not_found, page, page_principal, sign_in_page

router = APIRouter(include_in_schema=False)
QUEUE_STATES = ("pending", "running", "waiting_provider")
OUTCOMES = ("succeeded", "failed", "canceled")


def bucket_names(activity: ops_store.Activity) -> list[str]:
    window = activity.window
    return [window.start_of(i).strftime("%H:%M") for i in range(window.buckets)]


def activity_charts(activity: ops_store.Activity) -> list[Chart]:
    names = bucket_names(activity)
    zeros = [0] * activity.window.buckets
    finished = {
        outcome: [float(n) for n in activity.finished.get(outcome, zeros)] for outcome in OUTCOMES
    }
    rate = [
        (finished["failed"][i] / done if (done := sum(s[i] for s in finished.values())) else 0.0)
        * 100
        for i in range(len(names))
    ]
    latency = {
        "queue wait": activity.queue_wait,
        "run time": activity.run_time,
    }
    return [
        stacked_bars("Jobs finished", "jobs", names, finished),
        lines("Jobs created", "jobs", names, {"created": [float(n) for n in activity.created]}),
        lines("Error rate", "%", names, {"failed": rate}),
        grouped_bars(
            "Latency percentiles",
            "s",
            ["p50", "p95", "p99"],
            {name: [p.p50, p.p95, p.p99] if p else [0.0, 0.0, 0.0] for name, p in latency.items()},
        ),
        stacked_bars(
            "Provider calls",
            "calls",
            names,
            {status: [float(n) for n in counts] for status, counts in activity.calls.items()},
        ),
        lines("Tokens", "tokens", names, {"input + output": [float(n) for n in activity.tokens]}),
        lines("Cost", "USD", names, {"estimated cost": activity.cost_usd}),
    ]


@router.get("/ops", response_class=HTMLResponse)
async def operations(request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    if not principal.is_admin:
        # Members do not learn that the page exists, as with other owners' jobs.
        return not_found(request, principal, "page /ops")
    svc = services(request)
    now = svc.clock()
    queue = await ops_store.queue_by_type_and_state(svc.db)
    types = sorted(queue)
    queue_chart = stacked_bars(
        "Queue by type and state",
        "jobs",
        types,
        {state: [float(queue[t].get(state, 0)) for t in types] for state in QUEUE_STATES},
    )
    activities = [await ops_store.activity(svc.db, window) for window in ops_store.windows(now)]
    # A worker silent for a whole lease has lost its jobs to the reaper anyway.
    silence = timedelta(seconds=svc.settings.lease_seconds)
    return page(
        request,
        principal,
        "ops.html",
        {
            "now": now,
            "queue": queue,
            "queue_chart": queue_chart,
            "activities": [(a, activity_charts(a)) for a in activities],
            "workers": await ops_store.live_workers(svc.db, now=now, silence=silence),
            "buckets": await ratelimits_store.list_buckets(svc.db),
            "schedules": await schedules_store.list_schedules(svc.db),
        },
    )
