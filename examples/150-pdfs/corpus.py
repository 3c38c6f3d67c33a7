"""Writes the generated corpus of annual reports (backburner.jobs.sample_corpus) as PDFs.

python examples/150-pdfs/corpus.py --docs 150 --out /tmp/corpus   # needs fpdf2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backburner.jobs.sample_corpus import Report, reports


def write_pdfs(corpus: list[Report], directory: Path) -> list[Path]:
    from fpdf import FPDF  # the dev extra; only writing PDFs needs it

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for item in corpus:
        pdf = FPDF()
        pdf.set_auto_page_break(True, margin=15)
        pdf.add_page()
        pdf.set_font("Helvetica", size=10)
        for paragraph in item.text.split("\n\n"):
            pdf.multi_cell(0, 5, paragraph)
            pdf.ln(2)
        path = directory / item.filename
        pdf.output(str(path))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--pages", type=int, default=14)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    paths = write_pdfs(reports(args.docs, pages=args.pages), args.out)
    print(f"{len(paths)} PDFs in {args.out}")


if __name__ == "__main__":
    main()
