"""The quality page (admins): evaluation scores over time per job type and model, the
latest run against the one before with the items that fell, people's ratings, and what a
job and a point of quality cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from backburner.api.state import services
from backburner.jobs.evals.scoring import LOWER_IS_BETTER, Regression, cost_per_point, deltas
from backburner.jobs.evals.scoring import regressions as find_regressions
from backburner.store import evals as evals_store
from backburner.store import feedback as feedback_store
from backburner.ui.charts import Chart, lines
from backburner.ui.pages import not_found, page, page_principal, sign_in_page

router = APIRouter(include_in_schema=False)
HISTORY = 30  # runs per chart
# Metrics drawn over time (others are in the tables).
CHARTED = ("overall", "key_fact_recall", "rouge_l", "accuracy", "macro_f1", "fields_exact")


@dataclass(frozen=True)
class Latest:
    """A type and model's latest scored run against the run before it."""

    run: evals_store.EvalRun
    previous: evals_store.EvalRun | None
    deltas: dict[str, float]
    regressions: list[Regression]
    cost_per_job: float | None
    cost_per_point: float | None


def history_chart(job_type: str, model: str, runs: list[evals_store.EvalRun]) -> Chart:
    """Scores (in points, 0-100) of a type and model's runs, oldest first."""
    shown = runs[-HISTORY:]
    names = [run.created_at.strftime("%m-%d %H:%M") for run in shown]
    metrics = [m for m in CHARTED if any(m in (run.scores or {}) for run in shown)]
    series = {m: [100 * (run.scores or {}).get(m, 0.0) for run in shown] for m in metrics}
    return lines(f"{job_type} · {model}", "points", names, series)


def by_type_and_model(
    runs: list[evals_store.EvalRun],
) -> dict[tuple[str, str], list[evals_store.EvalRun]]:
    grouped: dict[tuple[str, str], list[evals_store.EvalRun]] = {}
    for run in runs:
        grouped.setdefault((run.job_type, run.model), []).append(run)
    return dict(sorted(grouped.items()))


async def item_scores(request: Request, run_id: str) -> dict[str, dict[str, float]]:
    states = await evals_store.item_states(services(request).db, run_id, content=False)
    return {s.item_id: s.scores for s in states if s.scores is not None}


@router.get("/quality", response_class=HTMLResponse)
async def quality(request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    if not principal.is_admin:
        return not_found(request, principal, "page /quality")
    svc = services(request)
    history = await evals_store.scored_history(svc.db, limit=500)
    grouped = by_type_and_model(history)
    latest: list[Latest] = []
    for runs in grouped.values():
        run = runs[-1]
        previous = runs[-2] if len(runs) > 1 else None
        fell = (
            find_regressions(
                await item_scores(request, previous.id), await item_scores(request, run.id)
            )
            if previous
            else []
        )
        latest.append(
            Latest(
                run=run,
                previous=previous,
                deltas=deltas(previous.scores or {}, run.scores or {}) if previous else {},
                regressions=fell[:20],
                cost_per_job=run.cost_usd / run.items if run.cost_usd is not None else None,
                cost_per_point=cost_per_point(run.cost_usd, (run.scores or {}).get("overall")),
            )
        )
    context: dict[str, Any] = {
        "charts": [history_chart(t, m, runs) for (t, m), runs in grouped.items()],
        "latest": latest,
        "ratings": await feedback_store.totals(svc.db),
        "running": await evals_store.unfinished_runs(svc.db),
        "lower_is_better": LOWER_IS_BETTER,
    }
    return page(request, principal, "quality.html", context)
