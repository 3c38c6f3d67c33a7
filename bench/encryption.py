"""What does encryption at rest cost? The same work on this tree and on a tree from before
encryption (a git worktree of --before), in one run, the two taking turns.

- No-op jobs: `bench/queue.py` of each tree (enqueue through the API, no-op completion
  with one worker process, pickup latency), on SQLite and PostgreSQL.
- The store alone, in one process, per job: `insert_job` one at a time, and claim and finish
  in batches of 100 (the worker's statements), on a fresh SQLite file and PostgreSQL
  database; the figure closest to what encryption itself costs.
- A summarize job over 150 documents: `backburner serve` of each tree (embedded: SQLite,
  the offline engine with --latency per model call), 150 text documents uploaded through
  the API, then one summarize_documents job over them, timed from create to succeeded,
  and the result fetched.

    python bench/encryption.py                       # before = the commit before encryption
    python bench/encryption.py --before <rev> --runs 3 --jobs 5000

Loopback only; every step is bounded by its count and a timeout.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`: this folder goes last on
# the import path, so the standard library wins and `bench_support` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import tempfile
import time

import httpx
from bench_support import BACKBURNER, clean_env, describe, free_port, process, wait_http

REPO = _HERE.parent
# The last commit without encryption at rest.
BEFORE = "aedb240"
WORDS = [
    "revenue",
    "margin",
    "customer",
    "churn",
    "forecast",
    "contract",
    "renewal",
    "pipeline",
    "quarter",
    "region",
    "supplier",
    "logistics",
    "hiring",
    "budget",
    "audit",
    "compliance",
    "roadmap",
    "launch",
    "pricing",
    "survey",
]


def document_text(index: int, chars: int) -> str:
    """A deterministic document of about `chars` characters: sentences of plain words."""
    out: list[str] = [f"Report {index}."]
    size = 0
    n = index
    while size < chars:
        n = (n * 1103515245 + 12345) % 2**31
        sentence = " ".join(WORDS[(n >> shift) % len(WORDS)] for shift in range(0, 24, 2))
        out.append(sentence.capitalize() + ".")
        size += len(sentence) + 2
    return " ".join(out)


def tree_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment for a tree's processes: its own source first on the import path."""
    return clean_env() | {"PYTHONPATH": str(tree / "src"), **extra}


# --- No-op jobs: each tree's bench/queue.py ---------------------------------------------------

ROW = re.compile(
    r"^(sqlite|postgresql) \| ([\d,.]+) \| ([\d,.]+) \| ([\d.]+) \| ([\d.]+) \| "
    r"(?:[\d.]+x \(([\d,]+)/s\)|n/a)"
)


def queue_bench(
    tree: Path, jobs: int, api_jobs: int, samples: int, dialects: str
) -> dict[str, list[float]]:
    done = subprocess.run(
        [
            sys.executable,
            str(tree / "bench" / "queue.py"),
            f"--jobs={jobs}",
            f"--api-jobs={api_jobs}",
            f"--samples={samples}",
            f"--dialects={dialects}",
        ],
        env=tree_env(tree),
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    rows: dict[str, list[float]] = {}
    for line in done.stdout.splitlines():
        match = ROW.match(line)
        if match:
            values = [float(v.replace(",", "")) for v in match.groups()[1:5]]
            # PgQueuer, untouched by either tree, in the same run: the machine's drift.
            if match[6]:
                values.append(values[1] / float(match[6].replace(",", "")))
            rows[match[1]] = values
    return rows


# --- 150 documents: each tree's embedded service ----------------------------------------------


def embedded_service(tree: Path, workdir: Path, latency: float) -> tuple[dict[str, str], str]:
    """A tree's embedded default (SQLite, key file, offline engine) made ready: its
    environment and a member key."""
    env = tree_env(
        tree,
        BACKBURNER_DATABASE_URL=f"sqlite:///{workdir}/bench.db",
        BACKBURNER_PORT=str(free_port()),
        BACKBURNER_LOG_LEVEL="WARNING",
        BACKBURNER_OFFLINE_LATENCY_S=str(latency),
        BACKBURNER_POLL_INITIAL_SECONDS="0.05",
        BACKBURNER_POLL_MAX_SECONDS="0.1",
    )
    env.pop("BACKBURNER_ENCRYPTION_KEYS")  # the embedded default: a key file
    created = subprocess.run(
        [BACKBURNER, "keys", "create", "--owner", "bench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return env, next(word for word in created.stdout.split() if word.startswith("bb_"))


async def summarize_run(
    env: dict[str, str], key: str, documents: int, chars: int
) -> dict[str, float]:
    base = f"http://127.0.0.1:{env['BACKBURNER_PORT']}"
    with process("serve", env=env):
        await wait_http(f"{base}/healthz", within=60)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as api:
            started = time.perf_counter()
            ids = []
            for index in range(documents):
                text = document_text(index, chars).encode()
                answer = await api.post(
                    "/api/documents", files={"file": (f"report-{index}.txt", text)}
                )
                answer.raise_for_status()
                ids.append(answer.json()["document_id"])
            uploaded = time.perf_counter() - started
            started = time.perf_counter()
            job = await api.post(
                "/api/jobs",
                json={"type": "summarize_documents", "payload": {"document_ids": ids}},
            )
            job.raise_for_status()
            job_id = job.json()["job_id"]
            deadline = time.monotonic() + 600
            while True:
                status = (await api.get(f"/api/jobs/{job_id}")).json()["status"]
                if status in ("succeeded", "failed", "canceled"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the summarize job did not finish in 10 minutes")
                await asyncio.sleep(0.05)
            if status != "succeeded":
                raise RuntimeError(f"the summarize job {status}")
            finished = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(20):
                (await api.get(f"/api/jobs/{job_id}/result")).raise_for_status()
            fetched = (time.perf_counter() - started) / 20
    return {"upload": uploaded, "job": finished, "result": fetched}


def summarize_bench(tree: Path, documents: int, chars: int, latency: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        env, key = embedded_service(tree, Path(workdir), latency)
        return asyncio.run(summarize_run(env, key, documents, chars))


STORE_PROBE = """
import asyncio, inspect, json, sys, time
from datetime import UTC, datetime
from pathlib import Path
sys.path.append(sys.argv[3])
from bench_support import drop_database, fresh_database
from backburner.store import Database, Event, NewJob, Outcome
from backburner.store import jobs as jobs_store, queue as queue_store

async def main(dialect, count):
    kw = {}
    if "sealer" in inspect.signature(Database.__init__).parameters:
        from backburner.privacy.sealing import Keyring
        kw["sealer"] = Keyring.generate()
    url = await fresh_database(dialect, Path("/tmp"))
    db = Database(url, **kw)
    now = datetime.now(UTC)
    payload = {"echo": {"text": "hello world", "n": 1}}
    started = time.perf_counter()
    for _ in range(count):
        job = NewJob(owner="b", type="noop", payload=payload, max_attempts=3, timeout_seconds=60)
        await jobs_store.insert_job(db, job, now=now)
    inserted = time.perf_counter() - started
    started, done = time.perf_counter(), 0
    while claimed := await queue_store.claim_jobs(
        db, worker_id="w", limit=100, lease_seconds=30, now=now
    ):
        result = {"echo": payload["echo"], "slept_seconds": 0}
        outcomes = [Outcome(j.id, 1, Event.SUCCEEDED, result=result) for j in claimed]
        await queue_store.finish_jobs(db, worker_id="w", outcomes=outcomes, now=now)
        done += len(claimed)
    worked = time.perf_counter() - started
    await db.close()
    await drop_database(url)
    print(json.dumps({"insert": inserted / count * 1e6, "claim_finish": worked / done * 1e6}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def store_bench(tree: Path, dialect: str, count: int) -> dict[str, float]:
    """Microseconds per job in the store of one tree (its bench_support for databases)."""
    done = subprocess.run(
        [sys.executable, "-c", STORE_PROBE, dialect, str(count), str(tree / "bench")],
        env=tree_env(tree),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    values: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return values


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), rev],
        check=True,
        capture_output=True,
    )
    return into


def change(before: float, after: float) -> str:
    return f"{(after - before) / before * 100:+.1f}%" if before else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="a revision without encryption")
    parser.add_argument("--runs", type=int, default=2, help="turns per tree")
    parser.add_argument("--jobs", type=int, default=5_000, help="no-op jobs per completion run")
    parser.add_argument("--api-jobs", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--documents", type=int, default=150)
    parser.add_argument("--chars", type=int, default=30_000, help="characters per document")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per model call")
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--skip-queue", action="store_true")
    parser.add_argument("--skip-documents", action="store_true")
    parser.add_argument("--store-jobs", type=int, default=2_000, help="0: skip the store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        before = worktree(args.before, Path(workdir) / "before")
        trees = {"before": before, "after": REPO}
        queue: dict[str, dict[str, list[list[float]]]] = {"before": {}, "after": {}}
        docs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        store: dict[str, dict[str, list[dict[str, float]]]] = {"before": {}, "after": {}}
        try:
            for turn in range(args.runs):
                order = ["before", "after"] if turn % 2 == 0 else ["after", "before"]
                for name in order:
                    print(f"turn {turn + 1}: {name}", file=sys.stderr)
                    for dialect in args.dialects.split(",") if args.store_jobs else []:
                        store[name].setdefault(dialect, []).append(
                            store_bench(trees[name], dialect, args.store_jobs)
                        )
                    if not args.skip_queue:
                        rows = queue_bench(
                            trees[name], args.jobs, args.api_jobs, args.samples, args.dialects
                        )
                        for dialect, values in rows.items():
                            queue[name].setdefault(dialect, []).append(values)
                    if not args.skip_documents:
                        docs[name].append(
                            summarize_bench(trees[name], args.documents, args.chars, args.latency)
                        )
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)],
                check=False,
                capture_output=True,
            )
    print(f"\nbench/encryption.py — {describe()}")
    print(
        f"before = {args.before} (no encryption), after = this tree (AES-256-GCM at rest); "
        f"{args.runs} turns each, alternating; medians\n"
    )
    print("measurement | before | after | change")
    print("--- | --- | --- | ---")
    names = [
        "enqueue via API (jobs/s)",
        "no-op completed (jobs/s)",
        "pickup p50 (ms)",
        "pickup p99 (ms)",
        "no-op completed ÷ PgQueuer's, same run",
    ]
    for dialect, runs in store["after"].items():
        for key, label in (
            ("insert", "insert_job, one at a time"),
            ("claim_finish", "claim + finish"),
        ):
            b = statistics.median(run[key] for run in store["before"][dialect])
            a = statistics.median(run[key] for run in runs)
            print(f"{dialect}: store, {label} (µs/job) | {b:,.0f} | {a:,.0f} | {change(b, a)}")
    for dialect in queue["after"]:
        for column, label in enumerate(names):
            runs = [run for run in queue["after"][dialect] if len(run) > column]
            if not runs:
                continue
            b = statistics.median(run[column] for run in queue["before"][dialect])
            a = statistics.median(run[column] for run in runs)
            print(f"{dialect}: {label} | {b:,.2f} | {a:,.2f} | {change(b, a)}")
    for key, label in (
        ("upload", f"upload {args.documents} documents of {args.chars:,} chars (s)"),
        ("job", f"summarize {args.documents} documents, create → succeeded (s)"),
        ("result", "fetch the summary (ms)"),
    ):
        if not docs["after"]:
            break
        scale = 1000 if key == "result" else 1
        b = statistics.median(run[key] for run in docs["before"]) * scale
        a = statistics.median(run[key] for run in docs["after"]) * scale
        print(f"sqlite: {label} | {b:,.2f} | {a:,.2f} | {change(b, a)}")


if __name__ == "__main__":
    main()
