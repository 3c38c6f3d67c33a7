"""Reading PDFs: pages per second, in the event loop's process (as before) and in the
pool of limited worker processes the API now uses, side by side in one run.

Each document is a generated report of ordinary text pages (fpdf2). The "in process" row
is pypdf called directly, one file after another, as the API did before it moved parsing
off the event loop; the pool rows send the same files to `DocumentParser`, one at a time
and with as many in flight as the pool has processes.

    python bench/parsing.py                   # 40 documents of 25 pages
    python bench/parsing.py --documents 10    # a quick look
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
import io
import statistics
import time

from bench_support import describe, percentile
from fpdf import FPDF
from pypdf import PdfReader

from backburner.jobs.parsing import DocumentParser, ParseLimits

PARAGRAPH = (
    "Revenue for the quarter was {n} million, up from the year before. The board noted "
    "that supply costs rose and that the northern plant ran below capacity for six weeks. "
)


def report(pages: int, seed: int) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for page in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 5, PARAGRAPH.format(n=seed * 100 + page) * 12)
    return bytes(pdf.output())


def in_process(data: bytes) -> str:
    return "\n\n".join((p.extract_text() or "") for p in PdfReader(io.BytesIO(data)).pages)


def row(name: str, seconds: list[float], pages: int, wall: float) -> str:
    return (
        f"{name:<24} {pages / wall:>9.0f} {statistics.median(seconds) * 1000:>10.1f} "
        f"{percentile(seconds, 0.95) * 1000:>9.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--pages", type=int, default=25)
    args = parser.parse_args()
    files = [report(args.pages, seed) for seed in range(args.documents)]
    pages = args.documents * args.pages
    print(describe())
    print(f"{args.documents} PDFs of {args.pages} pages ({sum(map(len, files)) // 1024} KB)\n")
    print(f"{'reader':<24} {'pages/s':>9} {'p50 ms':>10} {'p95 ms':>9}")

    seconds = []
    wall = time.perf_counter()
    for data in files:
        started = time.perf_counter()
        in_process(data)
        seconds.append(time.perf_counter() - started)
    print(row("in process (before)", seconds, pages, time.perf_counter() - wall))

    pool = DocumentParser(ParseLimits())
    await pool.pdf_text(files[0])  # the first call starts a process; not counted
    seconds = []
    wall = time.perf_counter()
    for data in files:
        started = time.perf_counter()
        await pool.pdf_text(data)
        seconds.append(time.perf_counter() - started)
    print(row("pool, one at a time", seconds, pages, time.perf_counter() - wall))

    async def timed(data: bytes) -> float:
        started = time.perf_counter()
        await pool.pdf_text(data)
        return time.perf_counter() - started

    wall = time.perf_counter()
    seconds = list(await asyncio.gather(*(timed(data) for data in files)))
    name = f"pool, {pool.processes} in flight*"
    print(row(name, seconds, pages, time.perf_counter() - wall))
    await pool.close()
    print("\n* all files sent at once: p50/p95 include the wait for a free process")


if __name__ == "__main__":
    asyncio.run(main())
