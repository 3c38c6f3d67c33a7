"""`serve --workers N`: several API processes share one port (PostgreSQL, API only)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import child_env, free_port, run_cli, started, wait_until_serving

pytestmark = pytest.mark.slow


def api_processes(parent: int) -> list[int]:
    """The processes uvicorn started for `parent` (multiprocessing's spawned children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_several_api_processes_serve_one_port(postgres_url: str, tmp_path: Path) -> None:
    env = child_env(postgres_url)
    made = run_cli("keys", "create", "--owner", "multi", "--role", "member", env=env)
    key = made.stdout.strip().splitlines()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with started(
        "serve", "--no-worker", "--workers", "2", "--port", str(port), env=env, log=log
    ) as server:
        wait_until_serving(base, server, log)
        assert len(api_processes(server.pid)) == 2, log.read_text()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            ids = [
                client.post("/api/jobs", json={"type": "noop", "payload": {}}).json()["job_id"]
                for _ in range(20)
            ]
            assert len(set(ids)) == 20
            assert all(client.get(f"/api/jobs/{i}").json()["status"] == "pending" for i in ids)
        # SIGTERM stops the API processes with it (a SIGKILL would leave them running).
        children = api_processes(server.pid)
        server.terminate()
        server.wait(timeout=30)
        deadline = time.monotonic() + 15
        while [pid for pid in children if Path(f"/proc/{pid}").exists()]:
            assert time.monotonic() < deadline, "API processes outlived serve"
            time.sleep(0.1)

    with_worker = run_cli("serve", "--workers", "2", env=env, check=False)
    assert with_worker.returncode == 2
    assert "--no-worker" in with_worker.stderr
    on_sqlite = run_cli(
        "serve",
        "--no-worker",
        "--workers",
        "2",
        env=child_env(f"sqlite:///{tmp_path}/one.db"),
        check=False,
    )
    assert on_sqlite.returncode == 2
    assert "needs PostgreSQL" in on_sqlite.stderr
