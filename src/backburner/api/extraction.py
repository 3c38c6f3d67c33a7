"""Getting text out of uploaded files: .txt, .md and .pdf (read in worker processes by
`backburner.jobs.parsing`, never on the event loop)."""

from __future__ import annotations

import contextlib
import unicodedata
from dataclasses import dataclass
from pathlib import PurePath

from starlette.datastructures import UploadFile

from backburner.api.state import Services
from backburner.errors import (
    FieldProblem,
    InvalidRequest,
    PayloadTooLarge,
    StorageUnavailable,
    UnsupportedMediaType,
)
from backburner.jobs.parsing import DocumentParser
from backburner.storage import document_key
from backburner.store import Document, new_id
from backburner.store import documents as documents_store
from backburner.store import objects as objects_store
from backburner.store.audit import Actor

READ_CHUNK = 1024 * 1024

TEXT_SUFFIXES = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown"}
PDF_SUFFIX = ".pdf"


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, errors=[FieldProblem(("body", "file"), message)])


def content_type_for(filename: str, data: bytes) -> str:
    """What the file is, by its content first (a PDF is a PDF whatever its name)."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    suffix = PurePath(filename).suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return TEXT_SUFFIXES[suffix]
    if suffix == PDF_SUFFIX:
        raise _invalid("the file is named .pdf but is not a PDF")
    raise UnsupportedMediaType(
        f"{filename!r}: only .txt, .md and .pdf documents are accepted",
        errors=[FieldProblem(("body", "file"), "use a .txt, .md or .pdf file")],
    )


async def extract_text(content_type: str, data: bytes, parser: DocumentParser) -> str:
    if content_type == "application/pdf":
        text = await parser.pdf_text(data)
    else:
        text = _decode(data)
    text = text.replace("\x00", "").strip()
    if not text:
        raise _invalid(
            "the document has no text to read (none in its text layer, none found by OCR)"
        )
    return text


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:4096]:
        raise _invalid("the file looks binary, not like text")
    return data.decode("cp1252", errors="replace")


MAX_FILENAME = 255


def checked_filename(name: str) -> str:
    """A filename fit to store and show: no control characters, lone surrogates, or more
    than 255 characters (a longer one would be cut, and its type with it)."""
    if len(name) > MAX_FILENAME:
        raise _invalid(f"the file name is longer than {MAX_FILENAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise _invalid("the file name holds control characters or invalid text")
    return name


@dataclass(frozen=True)
class Intake:
    """An uploaded document, read and understood, not yet stored."""

    filename: str
    content_type: str
    size_bytes: int
    text: str
    data: bytes  # the file as uploaded: kept as an object


async def read_capped(upload: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while chunk := await upload.read(READ_CHUNK):
        data.extend(chunk)
        if len(data) > limit:
            raise PayloadTooLarge(f"documents may be at most {limit} bytes")
    return bytes(data)


async def take_in(upload: UploadFile, limit: int, parser: DocumentParser) -> Intake:
    """Read an upload (at most `limit` bytes), tell what it is and extract its text; the
    API's upload and the dashboard's form both store documents this way."""
    filename = checked_filename(upload.filename or "document.txt")
    data = await read_capped(upload, limit)
    content_type = content_type_for(filename, data)
    text = await extract_text(content_type, data, parser)
    return Intake(filename, content_type, len(data), text, data)


async def store_upload(
    svc: Services, upload: UploadFile, *, owner: str, actor: Actor
) -> tuple[Document, bool]:
    """Read, check and store one uploaded file for `owner` (RequestError naming what is
    wrong with it): the document, and False when the owner had its text already."""
    intake = await take_in(upload, svc.settings.max_document_bytes, svc.parser)
    return await keep(svc, intake, owner=owner, actor=actor)


async def keep(svc: Services, intake: Intake, *, owner: str, actor: Actor) -> tuple[Document, bool]:
    """Store a read upload: its original as an object, then its row naming it (see
    store.objects for why a crash in between leaves nothing behind). The same file
    uploaded again is the document the owner has already, and no second object."""
    document_id = key = None
    checksum = documents_store.content_checksum(intake.data)
    if await documents_store.same_content(svc.db, owner, checksum) is None:
        document_id = new_id()
        key = document_key(document_id)
        await objects_store.expect(svc.db, key, svc.clock())
        await svc.objects.put(key, intake.data)
    document, created = await documents_store.take_document(
        svc.db,
        owner=owner,
        filename=intake.filename,
        content_type=intake.content_type,
        size_bytes=intake.size_bytes,
        text=intake.text,
        now=svc.clock(),
        actor=actor,
        document_id=document_id,
        original_key=key,
        checksum=checksum,
    )
    if key is not None and not created:  # the same text arrived meanwhile: ours is not needed
        with contextlib.suppress(StorageUnavailable):
            await svc.objects.delete([key])
    return document, created
