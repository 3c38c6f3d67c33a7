"""What starting a process imports: heavy packages only a rare path needs are imported on
first use, not by every worker, API process and CLI call."""

from __future__ import annotations

import subprocess
import sys

from backburner.jobs.evals.metrics import rouge_l


def test_starting_the_service_does_not_import_the_scorers_or_the_openai_sdk() -> None:
    """The evaluation scorers are for evaluation runs; the OpenAI SDK (~0.35 s of an API
    process's start) for calls to OpenAI and OpenAI's webhooks, loaded on first use."""
    probe = (
        "import sys, backburner.runtime, backburner.cli, backburner.api.app\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'nltk', 'rouge_score', 'openai'}))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert shown.stdout.strip() == "[]"


def test_the_scorer_is_there_once_asked_for() -> None:
    assert rouge_l("the cats sat on the mat", "the cat sat on the mat") > 0.8
