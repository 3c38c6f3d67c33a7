"""The guide's headline example as users run it (examples/150-pdfs/demo.py), on 20 PDFs:
a real `backburner serve`, the Python client, a webhook receiver and an SMTP server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_150_pdf_example_on_20_pdfs(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    ran = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "150-pdfs" / "demo.py"),
            "--docs",
            "20",
            "--pages",
            "4",
            "--latency",
            "0.05",
            # Small enough that the result goes to object storage, as a big batch's does.
            "--result-inline-bytes",
            "8192",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(figures_file),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "| per-document fact recall" in ran.stdout  # the table the README shows
    figures = json.loads(figures_file.read_text())
    assert figures["documents"] == 20
    assert figures["fact_recall"] >= 0.9
    assert figures["documents_named"] == 20
    assert figures["result_in_object_storage"] is True
    assert figures["callback_verified"] is True
    assert figures["email_links_to_job"] is True
    assert figures["callback_latency_seconds"] < 30
    assert figures["responses"] == figures["model_calls"]  # nothing asked twice
