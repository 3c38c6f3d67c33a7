"""How close is the ETA? A mixed stream of jobs of very different sizes (classifications
of 10 to 2,000 leads, summaries of 1 to 30 generated reports), one at a time through the
real service in this process (API, embedded worker, SQLite, the offline engine with a
fixed latency a model call, so time grows with the work as it does with a model). Each
job's ETA at creation (an empty queue: the ETA is the run) is set against how long it
took, once ten jobs of its type have run.

Side by side in the same run: the ETA as it is now (the type's runs fitted against their
input's size) and as it was (the median of the type's recent runs, size ignored),
computed from the same history.

    python bench/eta.py                 # 40 jobs of each type
    python bench/eta.py --jobs 20
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import asyncio
import random
import statistics
from datetime import datetime

import httpx
from bench_support import describe, service_in_process

from backburner.jobs.sample_corpus import reports

WARM_UP = 10  # jobs of a type before its ETAs count


async def until_done(api: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    while True:
        body: dict[str, object] = (await api.get(f"/api/jobs/{job_id}")).json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        await asyncio.sleep(0.05)


def seconds_between(start: object, end: object) -> float:
    return (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()


async def run(jobs: int, latency: float) -> None:
    rng = random.Random(5)
    corpus = reports(30, pages=3)
    async with service_in_process(offline_latency_s=latency) as api:
        ids = []
        for item in corpus:
            name = item.filename.replace(".pdf", ".txt")
            answer = await api.post(
                "/api/documents", files={"file": (name, item.text.encode(), "text/plain")}
            )
            ids.append(answer.json()["document_id"])
        plan = []
        for _ in range(jobs):
            leads = int(10 * 200 ** rng.random())  # 10 to 2,000, spread evenly on a log scale
            plan.append(
                (
                    "classify_leads",
                    {
                        "leads": [{"id": str(n), "notes": "wants a demo"} for n in range(leads)],
                        "labels": ["hot", "warm", "cold"],
                    },
                )
            )
            chosen = rng.sample(ids, rng.randint(1, 30))
            plan.append(("summarize_documents", {"document_ids": chosen}))
        rng.shuffle(plan)
        history: dict[str, list[float]] = {}
        errors: dict[str, list[tuple[float, float]]] = {}
        for job_type, payload in plan:
            made = (await api.post("/api/jobs", json={"type": job_type, "payload": payload})).json()
            eta = float(made["estimated_completion_seconds"])
            done = await until_done(api, str(made["job_id"]))
            took = seconds_between(done["created_at"], done["completed_at"])
            seen = history.setdefault(job_type, [])
            if len(seen) >= WARM_UP:
                before = statistics.median(seen)  # the old ETA: the median run
                errors.setdefault(job_type, []).append(
                    (abs(eta - took) / took, abs(before - took) / took)
                )
            seen.append(seconds_between(done["started_at"], done["completed_at"]))
    print(describe())
    print(
        f"{jobs} jobs of each type, offline engine at {latency:.2f} s a model call, one job at "
        f"a time; ETA at creation against the time taken, after {WARM_UP} jobs of the type\n"
    )
    print(
        f"{'type':22} {'jobs':>5} {'median error now':>17} {'p90 now':>8}"
        f" {'median error before':>20} {'p90 before':>11}"
    )
    for job_type, pairs in sorted(errors.items()):
        now = sorted(p[0] for p in pairs)
        before = sorted(p[1] for p in pairs)
        print(
            f"{job_type:22} {len(pairs):5} {statistics.median(now):17.0%} "
            f"{now[int(0.9 * (len(now) - 1))]:8.0%} {statistics.median(before):20.0%} "
            f"{before[int(0.9 * (len(before) - 1))]:11.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(run(args.jobs, args.latency))


if __name__ == "__main__":
    main()
