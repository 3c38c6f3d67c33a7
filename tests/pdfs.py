"""Hostile PDFs, built byte by byte: each is small on the wire and costly to read."""

from __future__ import annotations

import io
import zlib


def pdf_with_content(stream: bytes, *, pages: int = 1) -> bytes:
    """A valid PDF whose `pages` pages all draw the same (compressed) content stream."""
    data = zlib.compress(stream, 9)
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages))
    font = b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(data), data),
    ]
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R /Resources "
    objects += [page + font + b" >>"] * pages
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def text_pdf(text: str, *, pages: int = 1) -> bytes:
    return pdf_with_content(b"BT /F1 12 Tf 72 700 Td (%s) Tj ET" % text.encode(), pages=pages)


def slow_pdf() -> bytes:
    """About 11 KB that keeps pypdf busy for seconds: 400,000 text operators, compressed."""
    return pdf_with_content(b"BT /F1 1 Tf " + b"(a) Tj 1 0 Td " * 400_000 + b" ET")


def bomb_pdf() -> bytes:
    """About 200 KB that expands to 200 MB."""
    return pdf_with_content(b" " * 200_000_000)


def scanned_pdf(pages: list[str | None]) -> bytes:
    """A PDF as a scanner makes it: each page an image of its text, no text layer (a page
    given as None is typeset, with a text layer). Rendered by PDFium from a typeset page."""
    import pypdfium2
    from fpdf import FPDF

    out = FPDF()
    for text in pages:
        out.add_page()
        if text is None:
            out.set_font("helvetica", size=12)
            out.multi_cell(0, 6, "This page was typeset and has a text layer of its own.")
            continue
        typeset = FPDF()
        typeset.add_page()
        typeset.set_font("helvetica", size=16)
        typeset.multi_cell(0, 9, text)
        page = pypdfium2.PdfDocument(bytes(typeset.output()))[0]
        out.image(page.render(scale=200 / 72, grayscale=True).to_pil(), x=0, y=0, w=210)
    return bytes(out.output())
