"""The log of a real `backburner serve` process running jobs: one JSON object per line,
every line about a job carrying job_id, type and attempt (and response_id for a model
call), and no API key anywhere in it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import child_env, free_port, run_cli, started, wait_until_serving

pytestmark = pytest.mark.slow


def test_every_line_about_a_job_names_it(tmp_path: Path) -> None:
    env = child_env(f"sqlite:///{tmp_path}/logs.db", log_format="auto")
    port = free_port()
    log = tmp_path / "serve.log"
    with started("serve", "--port", str(port), env=env, log=log) as server:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, server, log)
        key = run_cli("keys", "create", "--owner", "dana", env=env).stdout.split()[-1]
        headers = {"Authorization": f"Bearer {key}"}
        ids = [
            httpx.post(f"{base}/api/jobs", json=job, headers=headers).json()["job_id"]
            for job in (
                {"type": "test_ask_model"},
                {"type": "test_flaky", "payload": {"fail_times": 1}},
            )
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = {
                httpx.get(f"{base}/api/jobs/{i}", headers=headers).json()["status"] for i in ids
            }
            if states == {"succeeded"}:
                break
            time.sleep(0.1)
        assert states == {"succeeded"}
    text = log.read_text()
    assert key not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    about_jobs = [line for line in lines if line.get("job_id") in ids]
    assert about_jobs, text
    for line in about_jobs:
        assert {"type", "attempt"} <= line.keys(), line
    submitted = [line for line in about_jobs if line["msg"] == "model call submitted"]
    assert submitted
    assert all(line["response_id"].startswith("resp_") for line in submitted)
    assert all(line["type"] == "test_ask_model" for line in submitted)
    failed = [line for line in about_jobs if line["msg"] == "job attempt failed"]
    assert [(line["type"], line["attempt"]) for line in failed] == [("test_flaky", 1)]
    # Nothing but JSON, apart from the first start's indented banner with the admin link.
    others = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
    # (and the warning that BACKBURNER_PUBLIC_URL is unset).
    assert len(others) <= 6, others
    assert all(line.startswith("  ") for line in others), others
