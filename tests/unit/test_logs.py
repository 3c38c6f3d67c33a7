"""Log lines: JSON for machines, key=value for a terminal (chosen by whether stderr is a
TTY), and the job's fields on every line logged while the job runs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import pty
import subprocess
import sys

from backburner.logs import JobFields, JsonFormatter, job_logging

SNIPPET = """
import logging
from backburner.logs import configure_logging
configure_logging("INFO", "auto")
logging.getLogger("t").info("hello", extra={"job_id": "j1", "attempt": 2})
"""


def test_json_when_piped_and_text_on_a_terminal() -> None:
    piped = subprocess.run(
        [sys.executable, "-c", SNIPPET], capture_output=True, text=True, check=True
    )
    line = json.loads(piped.stderr)
    assert (line["msg"], line["job_id"], line["attempt"], line["level"]) == (
        "hello",
        "j1",
        2,
        "info",
    )
    leader, follower = pty.openpty()
    try:
        subprocess.run([sys.executable, "-c", SNIPPET], stderr=follower, check=True)
        text = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert not text.lstrip().startswith("{")
    assert "INFO    hello  job_id=j1 attempt=2" in text


def capture() -> tuple[logging.Logger, io.StringIO]:
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobFields())
    logger = logging.getLogger(f"test-{id(sink)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, sink


async def test_every_line_inside_a_job_carries_its_fields() -> None:
    logger, sink = capture()

    async def deep_inside() -> None:
        logger.warning("rate limit: waiting", extra={"seconds": 1.5})

    with job_logging(job_id="j-7", type="summarize_documents", attempt=3):
        logger.info("model call submitted", extra={"response_id": "resp_1"})
        await asyncio.create_task(deep_inside())  # a task started inside inherits them
        with job_logging(response_id="resp_2"):
            logger.info("polling")
    logger.info("worker idle")
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    for line in lines[:3]:
        assert (line["job_id"], line["type"], line["attempt"]) == ("j-7", "summarize_documents", 3)
    assert lines[0]["response_id"] == "resp_1"
    assert lines[1]["seconds"] == 1.5
    assert lines[2]["response_id"] == "resp_2"
    assert "job_id" not in lines[3]  # outside the block, nothing leaks


async def test_fields_the_call_gives_win_over_the_context() -> None:
    logger, sink = capture()
    with job_logging(job_id="outer", attempt=1):
        logger.info("other job", extra={"job_id": "inner"})
    assert json.loads(sink.getvalue())["job_id"] == "inner"
