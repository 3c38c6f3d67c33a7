"""Running the real `backburner` command as a child process, on loopback."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import REPO, TEST_KEYS

BACKBURNER = str(Path(sys.executable).parent / "backburner")


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port
    from bind(0) can be taken by an outgoing connection (to the database, say) between
    this call and the server's own bind, and the server then fails to start."""
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randint(max(1024, floor - 12000), floor - 1)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def child_env(db_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKBURNER_", "OPENAI_"))}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "BACKBURNER_DATABASE_URL": db_url,
            "BACKBURNER_PLUGINS": "tests.jobtypes",
            "BACKBURNER_LOG_FORMAT": "json",
            "BACKBURNER_OFFLINE_LATENCY_S": "0.1",
            "BACKBURNER_POLL_INITIAL_SECONDS": "0.05",
            "BACKBURNER_POLL_MAX_SECONDS": "0.2",
            "BACKBURNER_LEASE_SECONDS": "2",
            "BACKBURNER_HEARTBEAT_SECONDS": "0.5",
            "BACKBURNER_REAP_INTERVAL_SECONDS": "0.5",
            "BACKBURNER_IDLE_POLL_SECONDS": "0.2",
            "BACKBURNER_API_REQUESTS_PER_MINUTE": "0",
            "BACKBURNER_AUTH_FAILURES_PER_MINUTE": "0",
            "BACKBURNER_ENCRYPTION_KEYS": TEST_KEYS,
        }
    )
    if not db_url.startswith("sqlite"):
        # Objects of their own, not the checkout's ./backburner-objects (with SQLite they
        # sit beside the database file).
        env["BACKBURNER_STORAGE_URL"] = tempfile.mkdtemp(prefix="bb-objects-")
    env.update({f"BACKBURNER_{k.upper()}": v for k, v in settings.items()})
    return env


def run_cli(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [BACKBURNER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"backburner {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


@contextmanager
def started(*args: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """A long-running `backburner` child; killed at the end whatever happened."""
    with log.open("w") as sink:
        process = subprocess.Popen(
            [BACKBURNER, *args], env=env, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=REPO
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def wait_until_serving(
    base_url: str, process: subprocess.Popen[str], log: Path, within: float = 30
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready within {within}s:\n{log.read_text()}")
