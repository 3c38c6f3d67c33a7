"""Evaluation runs through the real path: every dataset item is a job of its type on the
same queue and provider, scored once they have all ended. With the offline engine the
scores are deterministic, so they are asserted exactly: a change to the engine or a
built-in type that lowers quality fails here, naming the metric that fell."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from backburner.config import Settings
from backburner.jobs.evals.datasets import parse_items
from backburner.jobs.registry import JobRegistry
from backburner.jobs.types import register_builtin_types
from backburner.store import Database
from backburner.store import evals as evals_store
from backburner.store.schema import audit_events, eval_items, eval_runs, jobs, provider_calls
from backburner.worker.evaluations import EVALUATOR, Evaluations
from tests.conftest import REPO, Keys, auth, serving, wait_for
from tests.e2e.test_api_jobs import assert_problem

# The built-in types on the built-in datasets, offline engine, test settings (chunks of
# 2,000 characters, batches of 10 leads). Lower a figure only on purpose.
EXPECTED = {
    "classify_leads": {
        "accuracy": 0.694444,
        "brier": 0.200672,
        "calibration_error": 0.195556,
        "completed": 1.0,
        "macro_f1": 0.690665,
        "overall": 0.694444,
    },
    "generate_report": {
        "completed": 1.0,
        "fields_exact": 1.0,
        "overall": 1.0,
        "sections_present": 1.0,
        "tool_calls_exact": 1.0,
    },
    "summarize_documents": {
        "completed": 1.0,
        "key_fact_recall": 1.0,
        "length_fit": 0.895,
        "overall": 0.759075,
        "rouge_l": 0.382226,
    },
}


async def scored(api: httpx.AsyncClient, run_id: str, within: float = 120.0) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/api/evals/{run_id}")).json()
        return body if body["status"] == "scored" else None

    found: dict[str, Any] = await wait_for(done, within=within, interval=0.1)
    return found


async def count(db: Database, table: sa.Table) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


@pytest.fixture
async def admin_api(settings: Settings, keys: Keys) -> Any:
    async with serving(settings, keys.admin, embed_worker=True) as client:
        yield client


@pytest.mark.parametrize("job_type", sorted(EXPECTED))
async def test_builtin_datasets_score_exactly(
    admin_api: httpx.AsyncClient, db: Database, job_type: str
) -> None:
    started = await admin_api.post("/api/evals", json={"type": job_type, "label": "nightly"})
    assert started.status_code == 202, started.text
    run = await scored(admin_api, started.json()["id"])
    assert run["scores"] == EXPECTED[job_type]
    assert run["dataset"] == f"{job_type}.jsonl"
    assert run["label"] == "nightly"
    assert run["ended_items"] == run["items"] == len(run["item_results"])
    assert run["cost_usd"] > 0
    assert run["cost_per_point_usd"] > 0
    assert all(item["job_status"] == "succeeded" for item in run["item_results"])
    # Every item was a job of the type, on the queue, owned by the admin's owner, pinned
    # to the run's model.
    async with db.read() as conn:
        rows = (
            await conn.execute(sa.select(jobs.c.type, jobs.c.owner, jobs.c.model).distinct())
        ).all()
    assert rows == [(job_type, "admin", run["model"])]
    if job_type == "classify_leads":
        assert run["details"]["confusion"]["hot"]["hot"] > 0
        assert set(run["details"]["per_label"]) == {"cold", "hot", "warm"}


async def test_runs_are_listed_compared_and_exported_as_metrics(
    admin_api: httpx.AsyncClient,
) -> None:
    first = (await admin_api.post("/api/evals", json={"type": "classify_leads"})).json()
    await scored(admin_api, first["id"])
    second = (
        await admin_api.post(
            "/api/evals", json={"type": "classify_leads", "model": "gpt-4.1-nano", "window": "2h"}
        )
    ).json()
    assert second["model"] == "gpt-4.1-nano"
    assert second["window"] == "2h"
    done = await scored(admin_api, second["id"])
    # The offline engine answers the same whatever the model: nothing moved but the cost.
    assert done["previous_run_id"] == first["id"]
    assert set(done["deltas"].values()) == {0.0}
    assert done["regressions"] == []
    listed = (await admin_api.get("/api/evals", params={"limit": 1})).json()
    assert [r["id"] for r in listed["items"]] == [second["id"]]
    rest = (await admin_api.get("/api/evals", params={"cursor": listed["next_cursor"]})).json()
    assert [r["id"] for r in rest["items"]] == [first["id"]]
    assert rest["next_cursor"] is None
    compared = (
        await admin_api.get("/api/evals/compare", params={"a": first["id"], "b": second["id"]})
    ).json()
    assert compared["deltas"]["accuracy"] == 0.0
    assert compared["b"]["cost_usd"] < compared["a"]["cost_usd"]  # nano, in the 2h window
    metrics = (await admin_api.get("/metrics")).text
    assert (
        'backburner_eval_score{metric="accuracy",model="gpt-4.1-nano",type="classify_leads"} '
        "0.694444" in metrics
    )
    assert 'backburner_eval_score_change{metric="accuracy"' not in metrics  # one run each


async def test_your_own_type_with_a_dataset_sent_in_the_request(
    admin_api: httpx.AsyncClient,
) -> None:
    items = [
        {"id": "echo-1", "input": {"echo": 1}, "expected": {"fields": {"echo": 1}}},
        {"id": "echo-2", "input": {"echo": "two"}, "expected": {"fields": {"echo": 3}}},
    ]
    started = await admin_api.post(
        "/api/evals", json={"type": "noop", "dataset_items": items, "dataset_name": "echoes"}
    )
    assert started.status_code == 202, started.text
    run = await scored(admin_api, started.json()["id"])
    assert run["dataset"] == "echoes"
    assert run["scores"] == {"completed": 1.0, "fields_exact": 0.5, "overall": 0.5}
    assert [i["scores"]["fields_exact"] for i in run["item_results"]] == [1.0, 0.0]


async def test_an_item_whose_job_fails_scores_nothing_and_says_why(
    admin_api: httpx.AsyncClient,
) -> None:
    items = [
        {"id": "never", "input": {}, "expected": {"fields": {"ok": True}}},
        {"id": "bug", "input": {}, "expected": {"fields": {"ok": True}}},
    ]
    run_of = {}
    for job_type, item in zip(["test_broken", "test_buggy"], items, strict=True):
        answer = await admin_api.post(
            "/api/evals", json={"type": job_type, "dataset_items": [item]}
        )
        run_of[job_type] = await scored(admin_api, answer.json()["id"])
    for run in run_of.values():
        assert run["scores"] == {"completed": 0.0, "fields_exact": 0.0, "overall": 0.0}
        assert run["item_results"][0]["error"] == "the job ended failed"


async def test_a_model_graded_rubric_is_its_own_jobs(
    admin_api: httpx.AsyncClient, db: Database
) -> None:
    items = [
        {
            "id": "lead",
            "input": {
                "leads": [{"id": "l1", "notes": "Budget approved, wants a quote"}],
                "labels": ["hot", "cold"],
            },
            "expected": {"labels": {"l1": "hot"}, "rubric": "The reason names the budget."},
        }
    ]
    started = await admin_api.post(
        "/api/evals", json={"type": "classify_leads", "dataset_items": items, "rubric": True}
    )
    run = await scored(admin_api, started.json()["id"])
    assert 0.0 <= run["scores"]["rubric"] <= 1.0
    assert run["scores"]["accuracy"] == 1.0
    async with db.read() as conn:
        graders = (
            await conn.execute(sa.select(jobs.c.status).where(jobs.c.type == "grade_output"))
        ).all()
    assert graders == [("succeeded",)]
    assert run["cost_usd"] > run["details"]["grading_cost_usd"] > 0  # counted with the run


async def test_members_and_bad_requests_are_refused_and_nothing_is_stored(
    settings: Settings, keys: Keys, db: Database
) -> None:
    async with serving(settings, keys.admin, embed_worker=False) as api:
        member = auth(keys.alice)
        assert_problem(await api.post("/api/evals", json={"type": "noop"}, headers=member), 403)
        assert_problem(await api.get("/api/evals", headers=member), 403)
        assert_problem(await api.get("/api/evals/ev_x", headers=member), 403)
        assert_problem(await api.post("/api/evals", json={"type": "nope"}), 422, "type")
        # No built-in dataset for a type without one.
        assert_problem(await api.post("/api/evals", json={"type": "noop"}), 422, "dataset_items")
        good = {"id": "a", "input": {"echo": 1}, "expected": {}}
        cases: list[tuple[list[dict[str, Any]], str]] = [
            ([good, {**good}], "dataset_items.1.id"),  # the same id twice
            ([{**good, "id": "a\u0000b"}], "dataset_items.0.id"),
            ([{**good, "surprise": 1}], "dataset_items.0.surprise"),
            (
                [{"id": "b", "input": {}, "expected": {"labels": "hot"}}],
                "dataset_items.0.expected.labels",
            ),
            ([{**good, "input": {"document_ids": ["$doc:3"]}}], "dataset_items.0.input"),
            ([{**good, "input": {"echo": 1, "extra": True}}], "dataset_items.0.input.extra"),
        ]
        for items, field in cases:
            answer = await api.post("/api/evals", json={"type": "noop", "dataset_items": items})
            assert_problem(answer, 422, field)
        too_many = [{**good, "id": str(n)} for n in range(501)]
        assert_problem(
            await api.post("/api/evals", json={"type": "noop", "dataset_items": too_many}), 422
        )
        assert_problem(
            await api.post(
                "/api/evals", json={"type": "noop", "dataset_items": [good], "window": "1h"}
            ),
            422,
        )
        assert_problem(
            await api.post("/api/evals", json={"type": "noop", "model": "a b"}), 422, "model"
        )
        assert_problem(await api.get("/api/evals/ev_nothing"), 404)
        assert_problem(await api.get("/api/evals", params={"cursor": "not-ours"}), 422)
        assert_problem(await api.get("/api/evals/compare", params={"a": "x", "b": "y"}), 422)
    assert await count(db, eval_runs) == 0
    assert await count(db, eval_items) == 0
    assert await count(db, jobs) == 0


async def test_a_run_cut_off_before_its_jobs_gets_each_job_once(
    db: Database, settings: Settings
) -> None:
    """A run is written before its jobs: a process that stops between the two leaves the
    jobs to the next round of any worker, and two workers at once make each job once."""
    registry = JobRegistry()
    register_builtin_types(registry)
    evaluations = Evaluations(db, registry, settings, lambda: _now())
    dataset = parse_items(
        "two", [{"id": str(n), "input": {"echo": n}, "expected": {}} for n in range(2)]
    )
    run, created = await evals_store.insert_run(
        db,
        {
            "id": "ev_00000000-0000-7000-8000-000000000001",
            "owner": "admin",
            "job_type": "noop",
            "dataset": dataset.name,
            "dataset_sha256": dataset.sha256,
            "model": "m",
            "prompt_version": "p",
            "status": evals_store.RUNNING,
            "items": 2,
            "created_at": _now(),
        },
        [evals_store.NewItem(n + 1, str(n), {"echo": n}, {}) for n in range(2)],
        actor=EVALUATOR,
    )
    assert created
    await asyncio.gather(*(Evaluations(db, registry, settings, _now).advance() for _ in range(4)))
    await evaluations.advance()
    states = await evals_store.item_states(db, run.id, content=False)
    assert all(s.job_id for s in states)
    assert await count(db, jobs) == 2
    # Scoring is a compare-and-set: only the first of two writers stores scores.
    kwargs: dict[str, Any] = {
        "item_scores": [],
        "scores": {"overall": 1.0},
        "details": {},
        "cost_usd": None,
        "ended_at": _now(),
        "duration_seconds": 0.0,
    }
    assert await evals_store.finish_run(db, run.id, **kwargs)
    assert not await evals_store.finish_run(db, run.id, **{**kwargs, "scores": {"overall": 0.0}})
    again = await evals_store.get_run(db, run.id)
    assert again is not None
    assert again.scores == {"overall": 1.0}
    async with db.read() as conn:
        audited = (
            await conn.execute(
                sa.select(sa.func.count()).where(audit_events.c.action == "eval.started")
            )
        ).scalar_one()
    assert audited == 1


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_a_run_whose_jobs_are_deleted_or_canceled_is_still_scored(
    admin_api: httpx.AsyncClient,
) -> None:
    items = [
        {"id": "quick", "input": {"seconds": 0}, "expected": {"fields": {"ok": True}}},
        {"id": "slow", "input": {"seconds": 60}, "expected": {"fields": {"ok": True}}},
    ]
    started = await admin_api.post(
        "/api/evals", json={"type": "test_slow_no_timeout", "dataset_items": items}
    )
    run_id = started.json()["id"]

    async def jobs_when_quick_is_done() -> list[str] | None:
        detail = (await admin_api.get(f"/api/evals/{run_id}")).json()
        states = [i["job_status"] for i in detail["item_results"]]
        return [i["job_id"] for i in detail["item_results"]] if states[0] == "succeeded" else None

    quick, slow = await wait_for(jobs_when_quick_is_done)
    assert (await admin_api.delete(f"/api/jobs/{quick}")).status_code == 204
    assert (await admin_api.post(f"/api/jobs/{slow}/cancel")).status_code == 202
    run = await scored(admin_api, run_id)
    assert [i["error"] for i in run["item_results"]] == [
        "the job was deleted",
        "the job ended canceled",
    ]
    assert run["scores"] == {"completed": 0.0, "fields_exact": 0.0, "overall": 0.0}


async def test_an_evaluation_on_a_throttled_failing_provider_scores_the_same_and_pays_once(
    settings: Settings, keys: Keys, db: Database
) -> None:
    """Eval jobs are jobs: the provider's 429s and 500s are waited out inside their
    attempts, each model call is created once, and the scores are those of a calm day."""
    from backburner.runtime import create_app
    from tests.servers import emulated, emulator_stats

    lines = (REPO / "evals" / "generate_report.jsonl").read_text().splitlines()[:4]
    items = [json.loads(line) for line in lines]
    async with emulated(share_429=0.2, share_500=0.2, retry_after_s=0.05) as (provider, base):
        app = create_app(settings, embed_worker=True, migrate_on_start=False, provider=provider)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers=auth(keys.admin)
            ) as api:
                started = await api.post(
                    "/api/evals", json={"type": "generate_report", "dataset_items": items}
                )
                run = await scored(api, started.json()["id"], within=150)
        counters = await emulator_stats(base)
    assert run["scores"] == EXPECTED["generate_report"]
    async with db.read() as conn:
        calls = (
            await conn.execute(sa.select(sa.func.count()).select_from(provider_calls))
        ).scalar_one()
        attempts = (await conn.execute(sa.select(sa.func.max(jobs.c.attempts)))).scalar_one()
    assert counters["responses_created"] == calls == 8  # two rounds per report
    assert attempts == 1
    assert counters["rate_limited"] + counters["server_errors"] > 0
