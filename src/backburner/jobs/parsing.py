"""Reading the text of a PDF in a pool of worker processes, within limits; pages with no
text layer (scans) are read by OCR with Tesseract, in the same processes.

A PDF is a program for a complicated interpreter: an 11 KB file can keep pypdf busy for
minutes, and a 200 KB one can ask for hundreds of megabytes. Parsing on the event loop
froze the API, the dashboard, the embedded worker and the dispatcher while one file was
read. So every PDF is read in a separate process that has an address-space limit, a cap on
pages and on decompressed bytes per stream; a parse that runs past its wall-clock limit has
its process killed and replaced. The event loop only waits.

The pool is written here rather than taken from `concurrent.futures.ProcessPoolExecutor`
because that pool cannot kill the one process whose task ran too long: a timed-out task
keeps its process busy until it ends by itself, and `terminate`-ing the whole pool would
fail every other upload in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

from backburner.errors import FieldProblem, InvalidRequest

MIB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """What one PDF may cost. Each limit, when reached, refuses the file with a 422."""

    seconds: float = 30.0  # the text layer; with OCR, each page read by OCR
    memory_bytes: int = 1024 * MIB
    pages: int = 5_000
    decompressed_bytes: int = 64 * MIB
    ocr_languages: str = "eng"
    ocr_max_pages: int = 200  # 0: no OCR
    ocr_program: str = "tesseract"  # a name on PATH, or a path


class DocumentRefused(InvalidRequest):
    """A document that cannot be read within the limits, or at all."""

    def __init__(self, message: str) -> None:
        super().__init__(message, errors=[FieldProblem(("body", "file"), message)])


# "exhausted": refused for memory; the process that ran out is replaced, not reused.
Outcome = tuple[Literal["text", "refused", "exhausted"], str]

# A page with less text than this has no text layer worth the name: a scanned page.
MIN_PAGE_TEXT = 16
# Pages are rendered for OCR at 300 dpi (what Tesseract reads best), at most this many
# pixels a side (a poster-sized page would otherwise need gigabytes).
OCR_DPI = 300
OCR_MAX_SIDE = 6000
TESSERACT_PACKAGE = "tesseract-ocr"


# --- in the worker process ---------------------------------------------------------

# A line that starts a list item: a bullet, or "1." / "a)" and a space.
_LIST_ITEM = re.compile(r"(?:[-*\u2022\u25aa\u25e6]|\d{1,3}[.)]|[a-z][.)])\s")
# A line shorter than this share of the page's full line width ends its paragraph (or is a
# heading of its own).
SHORT_LINE = 0.7


def reflow(text: str) -> str:
    """A PDF's text as paragraphs: a PDF breaks lines (and pages) where its layout wrapped
    them, so a sentence arrives cut in two, and a line that starts with a figure looks
    like a new list item. Lines are joined into paragraphs (a blank line, a short line, a
    list item or a heading ends one), paragraphs separated by a blank line."""
    lines = [line.strip() for line in text.splitlines()]
    widths = sorted(len(line) for line in lines if line)
    if not widths:
        return ""
    full = widths[(len(widths) * 9) // 10]  # the usual full line (90th percentile)
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if current and (not line or _LIST_ITEM.match(line)):
            paragraphs.append(current)
            current = ""
        if not line:
            continue
        if not current:
            current = line
        elif current.endswith("-") and line[:1].islower():
            current += line  # a word wrapped at its hyphen: long-\nstanding
        else:
            current += " " + line
        if len(line) < SHORT_LINE * full:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return "\n\n".join(paragraphs)


def read_pdf(
    data: bytes, limits: ParseLimits, progress: Callable[[], None] = lambda: None
) -> Outcome:
    """The text of a PDF, or why it is refused (runs in a worker process). Pages with no
    text layer are read with Tesseract; `progress` is called after each, so the service
    gives each page its own time limit."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return "refused", "the PDF is encrypted; upload an unprotected copy"
        pages = len(reader.pages)
        if pages > limits.pages:
            return "refused", f"the PDF has {pages} pages; at most {limits.pages} are read"
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except LimitReachedError:
        return "refused", (
            "the PDF is too complex to read: a stream expands past "
            f"{limits.decompressed_bytes // MIB} MiB or holds too many operations"
        )
    except MemoryError:
        return "exhausted", f"the PDF needs more than {limits.memory_bytes // MIB} MiB to read"
    except RecursionError:
        return "refused", "the PDF nests its objects too deeply to read"
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        return "refused", f"the PDF could not be read: {type(error).__name__}"
    scanned = [number for number, text in enumerate(texts) if len(text) < MIN_PAGE_TEXT]
    if scanned and limits.ocr_max_pages > 0:
        # A scan must be read by OCR; a text PDF with a few image-only pages gains their
        # words when Tesseract is there, and is read without them when it is not.
        read = read_scanned(data, scanned, limits, progress, required=len(scanned) == pages)
        if isinstance(read, tuple):
            return read
        for number, text in read.items():
            texts[number] = text
    # Reflowed as one text: a sentence that runs on over a page break stays one.
    return "text", reflow("\n".join(texts))


def read_scanned(
    data: bytes,
    numbers: list[int],
    limits: ParseLimits,
    progress: Callable[[], None],
    *,
    required: bool,
) -> dict[int, str] | Outcome:
    """OCR of these pages (0-based): rendered by PDFium, read by the `tesseract` program
    (run directly: one process per page, its own time limit, one thread)."""
    tesseract = shutil.which(limits.ocr_program)
    if tesseract is None:
        if not required:
            return {}
        return "refused", (
            "the PDF has no text layer (a scanned document); reading it needs OCR, and "
            f"Tesseract is not installed here (Debian package {TESSERACT_PACKAGE})"
        )
    if len(numbers) > limits.ocr_max_pages:
        if required:
            return "refused", (
                f"the scanned PDF has {len(numbers)} pages; at most {limits.ocr_max_pages} "
                "are read by OCR"
            )
        numbers = numbers[: limits.ocr_max_pages]
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as error:
        return "refused", f"the PDF could not be rendered for OCR: {error}"
    found: dict[int, str] = {}
    try:
        for number in numbers:
            page = document[number]
            width, height = page.get_size()
            scale = min(OCR_DPI / 72, OCR_MAX_SIDE / max(width, height, 1))
            image = page.render(scale=scale, grayscale=True).to_pil()
            png = io.BytesIO()
            image.save(png, "PNG")
            page.close()
            try:
                ran = subprocess.run(
                    [tesseract, "stdin", "stdout", "-l", limits.ocr_languages],
                    input=png.getvalue(),
                    capture_output=True,
                    timeout=limits.seconds,
                    env={"PATH": os.environ.get("PATH", ""), "OMP_THREAD_LIMIT": "1"},
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return "refused", f"OCR of page {number + 1} took longer than {limits.seconds:g} s"
            if ran.returncode != 0:
                reason = (ran.stderr.decode(errors="replace").strip().splitlines() or ["?"])[0]
                return "refused", f"OCR of page {number + 1} failed: {reason[:200]}"
            found[number] = ran.stdout.decode(errors="replace").strip()
            progress()
    except pypdfium2.PdfiumError as error:
        return "refused", f"the PDF could not be rendered for OCR: {error}"
    finally:
        document.close()
    return found


def _confine(limits: ParseLimits) -> None:
    """Limits of this worker process: its memory, and pypdf's decompression caps."""
    from pypdf import Configuration, apply_configuration

    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    cap = limits.decompressed_bytes
    apply_configuration(
        Configuration(
            maximum_declared_stream_length=cap,
            array_based_stream_maximum_output_length=cap,
            jbig2_maximum_output_length=cap,
            lzw_maximum_output_length=cap,
            run_length_maximum_output_length=cap,
            zlib_maximum_output_length=cap,
            brotli_maximum_output_length=cap,
            image_maximum_buffer_size=cap,
            stream_decoding_work_maximum_length=4 * cap,
            jbig2dec_binary=None,  # never run an external decoder on an upload
        )
    )


PROGRESS = ("progress", "")


def serve(connection: Connection, limits: ParseLimits) -> None:
    """A worker process: read PDFs sent over `connection` until it is closed."""
    _confine(limits)
    while True:
        try:
            data = connection.recv_bytes()
        except (EOFError, OSError):
            return
        outcome = read_pdf(data, limits, lambda: connection.send(PROGRESS))
        connection.send(outcome)
        if outcome[0] == "exhausted":
            return  # after a MemoryError the process may be in a bad state: replace it


# --- in the service ----------------------------------------------------------------


class _Worker:
    def __init__(self, context: multiprocessing.context.ForkServerContext, limits: ParseLimits):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, limits), daemon=True)
        self.process.start()
        child.close()

    def read(self, data: bytes, seconds: float) -> Outcome | None:
        """Blocking: the outcome, or None when the process ran out of time: `seconds` for
        the text layer, then again for each page read by OCR (each one reports)."""
        try:
            self.connection.send_bytes(data)
            while True:
                if not self.connection.poll(seconds):
                    return None
                message = self.connection.recv()
                if message != PROGRESS:
                    outcome: Outcome = message
                    return outcome
        except (EOFError, OSError):
            return "exhausted", "the PDF's reader stopped while reading it"

    def stop(self) -> None:
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class DocumentParser:
    """A bounded pool of worker processes that read PDFs (see the module's docstring)."""

    def __init__(self, limits: ParseLimits, processes: int | None = None) -> None:
        self.limits = limits
        self.processes = processes or min(4, os.cpu_count() or 1)
        self._context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported pypdf once: a new worker is cheap.
        self._context.set_forkserver_preload(["pypdf", "pypdfium2", __name__])
        self._slots = asyncio.Semaphore(self.processes)
        self._idle: list[_Worker] = []
        self._closed = False

    async def pdf_text(self, data: bytes) -> str:
        """The text of a PDF; `DocumentRefused` says which limit it broke."""
        async with self._slots:
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                worker = await asyncio.to_thread(_Worker, self._context, self.limits)
            try:
                outcome = await asyncio.to_thread(worker.read, data, self.limits.seconds)
            except BaseException:
                # Cancelled while reading (the client went away): the process may still be
                # busy, so it goes; the thread waiting on it returns when it dies.
                await asyncio.to_thread(worker.stop)
                raise
            spent = outcome is None or outcome[0] == "exhausted"
            if spent or self._closed or not worker.process.is_alive():
                await asyncio.to_thread(worker.stop)
            else:
                self._idle.append(worker)
        if outcome is None:
            raise DocumentRefused(f"the PDF took longer than {self.limits.seconds:g} s to read")
        kind, value = outcome
        if kind != "text":
            raise DocumentRefused(value)
        return value

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(worker.stop)
