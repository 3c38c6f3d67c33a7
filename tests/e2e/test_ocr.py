"""Scanned PDFs: pages without a text layer are read by OCR (Tesseract, in the same limited
worker processes as every PDF); without Tesseract a scan is refused, naming the package."""

from __future__ import annotations

import pytest

from backburner.config import Settings
from tests.conftest import Keys, serving
from tests.e2e.test_api_documents import upload
from tests.e2e.test_api_jobs import assert_problem
from tests.pdfs import scanned_pdf

FIRST = "Northwind Traders grew revenue by 14 percent to 32 million dollars in 2025."
SECOND = "Chief executive Dana Reyes named supply costs as the main risk for next year."

# OCR happens before anything reaches the database: one dialect is enough.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def words(text: str) -> str:
    return " ".join(text.split())


async def test_a_scanned_pdf_is_read_by_ocr(settings: Settings, keys: Keys) -> None:
    async with serving(settings, keys.alice, embed_worker=False) as api:
        created = await upload(api, "scan.pdf", scanned_pdf([FIRST, SECOND]))
        assert created.status_code == 201, created.text
        text = words(
            (await api.get(f"/api/documents/{created.json()['document_id']}")).json()["text"]
        )
        assert "Northwind Traders grew revenue by 14 percent" in text
        assert "Dana Reyes named supply costs" in text
        # The original is the scan itself, kept as uploaded.
        content = await api.get(created.json()["content_url"])
        assert content.content.startswith(b"%PDF")

        # A typeset page beside a scanned one: both are read.
        mixed = await upload(api, "mixed.pdf", scanned_pdf([None, SECOND]))
        text = words(
            (await api.get(f"/api/documents/{mixed.json()['document_id']}")).json()["text"]
        )
        assert "typeset and has a text layer" in text
        assert "Dana Reyes named supply costs" in text


async def test_without_tesseract_a_scan_is_refused_naming_the_package(
    settings: Settings, keys: Keys
) -> None:
    absent = settings.model_copy(update={"ocr_program": "tesseract-not-installed-here"})
    async with serving(absent, keys.alice, embed_worker=False) as api:
        problem = assert_problem(await upload(api, "scan.pdf", scanned_pdf([FIRST])), 422, "file")
        assert "tesseract-ocr" in problem["detail"]
        # A text PDF with one image-only page is still read (its text layer), without OCR.
        mixed = await upload(api, "mixed.pdf", scanned_pdf([None, SECOND]))
        assert mixed.status_code == 201, mixed.text


async def test_ocr_limits_hold(settings: Settings, keys: Keys) -> None:
    limited = settings.model_copy(update={"ocr_max_pages": 1, "ocr_languages": "eng"})
    async with serving(limited, keys.alice, embed_worker=False) as api:
        problem = assert_problem(
            await upload(api, "long-scan.pdf", scanned_pdf([FIRST, SECOND])), 422, "file"
        )
        assert "at most 1 are read by OCR" in problem["detail"]
    missing_language = settings.model_copy(update={"ocr_languages": "xyz"})
    async with serving(missing_language, keys.alice, embed_worker=False) as api:
        problem = assert_problem(await upload(api, "scan.pdf", scanned_pdf([FIRST])), 422, "file")
        assert "OCR of page 1 failed" in problem["detail"]
    off = settings.model_copy(update={"ocr_max_pages": 0})
    async with serving(off, keys.alice, embed_worker=False) as api:
        problem = assert_problem(await upload(api, "scan.pdf", scanned_pdf([FIRST])), 422, "file")
        assert "no text to read" in problem["detail"]
