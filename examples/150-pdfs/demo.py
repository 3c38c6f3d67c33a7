"""The guide's headline example, end to end: 150 PDFs uploaded, summarised in the
background, a signed callback and an e-mail when it is done.

It generates the corpus (annual reports, each with its own company, revenue figure and main
risk: corpus.py), starts `backburner serve` on a fresh SQLite file (or the database you
give), a webhook receiver and an SMTP server on loopback, uploads every PDF through the
Python client, creates one `summarize_documents` job with a callback and an e-mail, waits,
checks the callback's signature, and prints what it took and what the summary kept.

    pip install -e '.[dev]'                      # fpdf2, aiosmtpd and standardwebhooks
    python examples/150-pdfs/demo.py             # 150 PDFs of 14 pages
    python examples/150-pdfs/demo.py --docs 20 --pages 4 --latency 0.05
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from corpus import write_pdfs

from backburner.client import Client
from backburner.jobs.evals.metrics import facts_found
from backburner.jobs.evals.scoring import text_of
from backburner.jobs.sample_corpus import reports

BACKBURNER = str(Path(sys.executable).parent / "backburner")
RECIPIENT = "reader@example.com"


@dataclass
class Arrival:
    at: datetime
    headers: dict[str, str]
    body: bytes


@dataclass
class Sinks:
    """What the local receivers got, with the time each arrived."""

    callbacks: list[Arrival] = field(default_factory=list)
    mails: list[tuple[datetime, EmailMessage]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, *, within: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(
                lambda: bool(self.callbacks and self.mails), timeout=within
            )


@contextlib.contextmanager
def webhook_receiver(sinks: Sinks) -> Iterator[str]:
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with sinks.arrived:
                sinks.callbacks.append(Arrival(datetime.now(UTC), dict(self.headers), body))
                sinks.arrived.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/backburner-done"
    finally:
        server.shutdown()


@contextlib.contextmanager
def smtp_sink(sinks: Sinks) -> Iterator[int]:
    import email
    import email.policy

    from aiosmtpd.controller import Controller

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            with sinks.arrived:
                sinks.mails.append((datetime.now(UTC), message))  # type: ignore[arg-type]
                sinks.arrived.notify_all()
            return "250 Message accepted for delivery"

    port = free_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def service(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [BACKBURNER, "serve", "--port", str(port)], env=env, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"backburner serve exited:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                import httpx

                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"backburner serve did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def seconds(later: datetime, earlier: str | None) -> float | None:
    if earlier is None:
        return None
    return (later - datetime.fromisoformat(earlier)).total_seconds()


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="backburner-150-pdfs-"))
    corpus = reports(args.docs, pages=args.pages)
    started = time.perf_counter()
    paths = write_pdfs(corpus, work / "pdfs")
    made = time.perf_counter() - started
    from pypdf import PdfReader

    pages = sum(len(PdfReader(path).pages) for path in paths)
    size = sum(path.stat().st_size for path in paths)
    log(f"wrote {len(paths)} PDFs ({pages:,} pages, {size / 1e6:.1f} MB) in {made:.1f} s")

    sinks = Sinks()
    with webhook_receiver(sinks) as callback_url, smtp_sink(sinks) as smtp_port:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKBURNER_", "OPENAI_"))}
        port = free_port()
        env |= {
            "BACKBURNER_DATABASE_URL": args.database_url or f"sqlite:///{work}/backburner.db",
            "BACKBURNER_OFFLINE_LATENCY_S": str(args.latency),
            "BACKBURNER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "BACKBURNER_WEBHOOK_ALLOW_HTTP": "true",
            "BACKBURNER_SMTP_HOST": "127.0.0.1",
            "BACKBURNER_SMTP_PORT": str(smtp_port),
            "BACKBURNER_SMTP_STARTTLS": "false",
            "BACKBURNER_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "BACKBURNER_LOG_FORMAT": "json",
        }
        if args.result_inline_bytes:
            env["BACKBURNER_RESULT_INLINE_BYTES"] = str(args.result_inline_bytes)
        subprocess.run([BACKBURNER, "db", "upgrade"], env=env, check=True, capture_output=True)
        made_key = subprocess.run(
            [BACKBURNER, "keys", "create", "--owner", "demo", "--role", "member"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        api_key = made_key.stdout.strip().splitlines()[-1]
        with service(env, port, work / "serve.log") as base, Client(base, api_key) as client:
            upload_started = time.perf_counter()
            per_file: list[float] = []
            ids = []
            for number, path in enumerate(paths, start=1):
                one = time.perf_counter()
                ids.append(client.upload_document(path).document_id)
                per_file.append(time.perf_counter() - one)
                log(f"\ruploaded {number}/{len(paths)} {path.name:<40}", end="")
            uploaded = time.perf_counter() - upload_started
            log("")
            created = client.create_job(
                "summarize_documents",
                {"document_ids": ids, "summary_style": args.style},
                callback_url=callback_url,
                notify={"email": [RECIPIENT]},
            )
            job_started = time.perf_counter()
            job = client.wait(
                created.job_id,
                poll=0.5,
                on_update=lambda j: log(
                    f"\r{j.status} {j.progress:.0%} {j.progress_message or '':<50}", end=""
                ),
            )
            took = time.perf_counter() - job_started
            log("")
            notified = sinks.wait(within=60)
            secret = client.webhook_secret()
        if job.status != "succeeded":
            raise SystemExit(f"the job ended {job.status}: {job.error}")

    result = job.result
    parts = {part["document_id"]: part for part in result["document_summaries"]}
    kept = [
        facts_found(item.facts, text_of(parts.get(doc_id, {})))
        for item, doc_id in zip(corpus, ids, strict=True)
    ]
    named = sum(
        1
        for item, doc_id in zip(corpus, ids, strict=True)
        if parts.get(doc_id, {}).get("filename") == item.filename
    )
    usage = job.usage or {}
    callback = sinks.callbacks[0] if sinks.callbacks else None
    verified = False
    if callback is not None:
        import standardwebhooks

        standardwebhooks.Webhook(secret).verify(callback.body, callback.headers)
        verified = True
    completed_at = job.completed_at.isoformat() if job.completed_at else None
    mail_at, mail = sinks.mails[0] if sinks.mails else (None, None)
    facts = sum(len(found) for found in kept)
    return {
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "database": "PostgreSQL" if args.database_url else "SQLite",
        "documents": len(paths),
        "pages": pages,
        "megabytes": round(size / 1e6, 2),
        "characters": sum(len(item.text) for item in corpus),
        "upload_seconds": round(uploaded, 2),
        "upload_median_seconds": round(statistics.median(per_file), 3),
        "job_seconds": round(took, 1),
        "model_calls": usage.get("model_calls"),
        "responses": usage.get("responses"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cost_usd": usage.get("cost_usd"),
        "facts_kept": sum(map(sum, kept)),
        "facts": facts,
        "fact_recall": round(sum(map(sum, kept)) / facts, 4),
        "documents_named": named,
        "result_bytes": job.result_bytes or len(json.dumps(result).encode()),
        "result_in_object_storage": job.result_url is not None,
        "notified": notified,
        "callback_verified": verified,
        "callback_latency_seconds": seconds(callback.at, completed_at) if callback else None,
        "email_latency_seconds": seconds(mail_at, completed_at) if mail_at else None,
        "email_subject": str(mail["Subject"]) if mail else None,
        "email_links_to_job": bool(mail and f"/jobs/{job.job_id}" in mail.as_string()),
        "latency_setting": args.latency,
    }


def table(figures: dict[str, Any]) -> str:
    f = figures

    def when(value: float | None) -> str:
        return "not received" if value is None else f"{value:.2f} s after the job ended"

    rows = [
        (
            "documents",
            f"{f['documents']} PDFs, {f['pages']:,} pages, {f['megabytes']} MB, "
            f"{f['characters']:,} characters",
        ),
        (
            "upload (client, one file at a time)",
            f"{f['upload_seconds']:.1f} s "
            f"(median {f['upload_median_seconds'] * 1000:.0f} ms a file)",
        ),
        ("job (created → succeeded)", f"{f['job_seconds']:.1f} s"),
        ("model calls", f"{f['model_calls']:,} ({f['responses']:,} responses)"),
        ("tokens", f"{f['input_tokens']:,} in, {f['output_tokens']:,} out"),
        ("cost (price table)", "unknown" if f["cost_usd"] is None else f"${f['cost_usd']:.4f}"),
        ("per-document fact recall", f"{f['facts_kept']}/{f['facts']} = {f['fact_recall']:.1%}"),
        ("documents named in the result", f"{f['documents_named']}/{f['documents']}"),
        (
            "result",
            f"{f['result_bytes'] / 1000:.0f} KB"
            + (", in object storage (result_url)" if f["result_in_object_storage"] else ", inline"),
        ),
        (
            "signed callback",
            when(f["callback_latency_seconds"])
            + (", signature verified" if f["callback_verified"] else ""),
        ),
        (
            "e-mail",
            when(f["email_latency_seconds"])
            + (", links to the job" if f["email_links_to_job"] else ""),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"{f['machine']}; {f['database']}; offline engine, {f['latency_setting']} s per model call",
        f"| {'step':<{width}} | figure |",
        f"| {'-' * width} | --- |",
    ]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


QUIET = False


def log(message: str, end: str = "\n") -> None:
    if not QUIET:
        print(message, end=end, file=sys.stderr, flush=True)


def main() -> None:
    global QUIET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--pages", type=int, default=14)
    parser.add_argument(
        "--style", default="executive", choices=["executive", "detailed", "bullets"]
    )
    parser.add_argument(
        "--latency", type=float, default=0.5, help="seconds each offline model call takes"
    )
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--result-inline-bytes", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="default: a new temporary directory")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    QUIET = args.quiet
    figures = run(args)
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
