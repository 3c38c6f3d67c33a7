"""Does a big batch of uploads stay out of memory? Starts `backburner serve --no-worker`
(SQLite) on loopback and uploads files one request each, as the new-job page and the CLI
do, then reads the server's peak resident memory (VmHWM) from /proc: it should grow with
the largest file, not with the batch.

    python bench/uploads.py                       # 30 files of 20 MB (600 MB in all)
    python bench/uploads.py --files 150 --mb 20   # the issue's batch: 3 GB on disk

Loopback only; bounded by --files and --mb.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import asyncio
import subprocess
import tempfile
import time

import httpx
from bench_support import BACKBURNER, clean_env, describe, free_port, process, wait_http


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_key(env: dict[str, str]) -> str:
    subprocess.run([BACKBURNER, "db", "upgrade"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [BACKBURNER, "keys", "create", "--owner", "bench", "--role", "member"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return created.stdout.strip().splitlines()[-1]


async def run(files: int, megabytes: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        env = clean_env() | {
            "BACKBURNER_DATABASE_URL": f"sqlite:///{workdir}/uploads.db",
            "BACKBURNER_MAX_DOCUMENT_BYTES": str((megabytes + 1) * 1024 * 1024),
            "BACKBURNER_LOG_LEVEL": "WARNING",
        }
        key = await asyncio.to_thread(make_key, env)
        port = free_port()
        with process("serve", "--no-worker", "--port", str(port), env=env) as server:
            base = f"http://127.0.0.1:{port}"
            await wait_http(f"{base}/readyz")
            idle = rss_mb(server.pid)
            line = "Quarterly figures were reviewed and the plant kept its schedule. "
            async with httpx.AsyncClient(
                base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=300
            ) as client:
                began = time.perf_counter()
                peaks = []
                for n in range(files):
                    body = (
                        f"Report {n}. " + line * (megabytes * 1024 * 1024 // len(line))
                    ).encode()
                    answer = await client.post(
                        "/api/documents", files={"file": (f"report-{n}.txt", body, "text/plain")}
                    )
                    answer.raise_for_status()
                    del body
                    peaks.append(peak_rss_mb(server.pid))
                took = time.perf_counter() - began
            peak = peak_rss_mb(server.pid)
    print(describe())
    print(f"{files} files of {megabytes} MB ({files * megabytes:,} MB), one request each")
    print(f"server resident memory: idle {idle:.0f} MB, peak {peak:.0f} MB")
    print(
        f"peak after the first file {peaks[0]:.0f} MB, after half {peaks[len(peaks) // 2]:.0f} MB"
    )
    print(f"{took:.1f} s, {files * megabytes / took:.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--mb", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.files, args.mb))


if __name__ == "__main__":
    main()
