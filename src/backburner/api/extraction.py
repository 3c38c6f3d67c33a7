"""Getting text out of uploaded files: .txt, .md and .pdf (via pypdf)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePath

from starlette.datastructures import UploadFile

from backburner.errors import (
    FieldProblem,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)

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


def extract_text(content_type: str, data: bytes) -> str:
    text = _pdf_text(data) if content_type == "application/pdf" else _decode(data)
    text = text.replace("\x00", "").strip()
    if not text:
        raise _invalid("the document has no text to read (a scanned PDF needs OCR first)")
    return text


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:4096]:
        raise _invalid("the file looks binary, not like text")
    return data.decode("cp1252", errors="replace")


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise _invalid("the PDF is encrypted; upload an unprotected copy")
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        raise _invalid(f"the PDF could not be read: {error}") from None


@dataclass(frozen=True)
class Intake:
    """An uploaded document, read and understood, not yet stored."""

    filename: str
    content_type: str
    size_bytes: int
    text: str


async def read_capped(upload: UploadFile, limit: int) -> bytes:
    data = bytearray()
    while chunk := await upload.read(READ_CHUNK):
        data.extend(chunk)
        if len(data) > limit:
            raise PayloadTooLarge(f"documents may be at most {limit} bytes")
    return bytes(data)


async def take_in(upload: UploadFile, limit: int) -> Intake:
    """Read an upload (at most `limit` bytes), tell what it is and extract its text; the
    API's upload and the dashboard's form both store documents this way."""
    data = await read_capped(upload, limit)
    filename = (upload.filename or "document.txt")[:300]
    content_type = content_type_for(filename, data)
    return Intake(filename, content_type, len(data), extract_text(content_type, data))
