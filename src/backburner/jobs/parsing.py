"""Reading the text of a PDF in a pool of worker processes, within limits.

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
import resource
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

from backburner.errors import FieldProblem, InvalidRequest

MIB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """What one PDF may cost. Each limit, when reached, refuses the file with a 422."""

    seconds: float = 30.0
    memory_bytes: int = 1024 * MIB
    pages: int = 5_000
    decompressed_bytes: int = 64 * MIB


class DocumentRefused(InvalidRequest):
    """A document that cannot be read within the limits, or at all."""

    def __init__(self, message: str) -> None:
        super().__init__(message, errors=[FieldProblem(("body", "file"), message)])


# "exhausted": refused for memory; the process that ran out is replaced, not reused.
Outcome = tuple[Literal["text", "refused", "exhausted"], str]


# --- in the worker process ---------------------------------------------------------


def read_pdf(data: bytes, limits: ParseLimits) -> Outcome:
    """The text of a PDF, or why it is refused (runs in a worker process)."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return "refused", "the PDF is encrypted; upload an unprotected copy"
        pages = len(reader.pages)
        if pages > limits.pages:
            return "refused", f"the PDF has {pages} pages; at most {limits.pages} are read"
        return "text", "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
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


def serve(connection: Connection, limits: ParseLimits) -> None:
    """A worker process: read PDFs sent over `connection` until it is closed."""
    _confine(limits)
    while True:
        try:
            data = connection.recv_bytes()
        except (EOFError, OSError):
            return
        outcome = read_pdf(data, limits)
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
        """Blocking: the outcome, or None when the process ran out of time."""
        try:
            self.connection.send_bytes(data)
            if not self.connection.poll(seconds):
                return None
            outcome: Outcome = self.connection.recv()
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
        self._context.set_forkserver_preload(["pypdf", __name__])
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
