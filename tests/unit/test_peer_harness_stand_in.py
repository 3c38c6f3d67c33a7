"""bench/peer-harness/native: `docker run` as the public harness calls it becomes a native
launch; anything else it is handed is refused by name, never guessed at."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

STAND_IN = Path(__file__).parents[2] / "bench" / "peer-harness" / "native" / "stand_in.py"


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("NATIVE_HOME", str(tmp_path))
    spec = importlib.util.spec_from_file_location("stand_in", STAND_IN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    image = tmp_path / "images" / "backburner-bench"
    image.mkdir(parents=True)
    (image / "image.json").write_text(
        json.dumps({"argv": ["/venv/bin/python", "main.py"], "cwd": "/adapter", "env": {"A": "1"}})
    )
    return module


def test_a_harness_launch_becomes_the_adapter_with_its_environment(stand_in: ModuleType) -> None:
    argv, cwd, env = stand_in.launch_of(
        [
            "--rm",
            "-i",
            "--network",
            "host",
            "-v",
            "/tmp/run-1:/control",
            "-e",
            "DATABASE_URL=postgres://bench:bench@localhost:15555/backburner_bench",
            "-e",
            "PRODUCER_RATE_CONTROL_FILE=/control/rate",
            "-e",
            "OTHER=/controlled/elsewhere",
            "backburner-bench",
        ]
    )
    assert argv == ["/venv/bin/python", "main.py"]
    assert cwd == "/adapter"
    assert env == {
        "A": "1",
        "DATABASE_URL": "postgres://bench:bench@localhost:15555/backburner_bench",
        "PRODUCER_RATE_CONTROL_FILE": "/tmp/run-1/rate",  # the mount is the host's own path
        "OTHER": "/controlled/elsewhere",  # a prefix of the mount's name, not inside it
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--network", "bridge", "backburner-bench"],
        ["--privileged", "backburner-bench"],
        ["-e"],
        ["--rm", "-i"],
        ["../../etc"],
        ["Backburner-Bench"],
        ["never-built"],
    ],
)
def test_what_the_harness_never_asks_for_is_refused(stand_in: ModuleType, args: list[str]) -> None:
    with pytest.raises(SystemExit):
        stand_in.launch_of(args)


def test_only_the_compose_files_postgres_service_exists(stand_in: ModuleType) -> None:
    with pytest.raises(SystemExit, match="only the postgres service"):
        stand_in.compose(["exec", "-T", "worker", "sh"])
    with pytest.raises(SystemExit, match="not supported"):
        stand_in.compose(["pull"])


SLEEPER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
time.sleep(60)
"""


def _sleeper_image(home: Path) -> None:
    image = home / "images" / "sleeper"
    image.mkdir(parents=True)
    argv = [sys.executable, "-c", SLEEPER]
    (image / "image.json").write_text(json.dumps({"argv": argv, "cwd": str(home), "env": {}}))


def test_an_adapter_that_never_reads_its_stdin_does_not_block_the_harness(
    tmp_path: Path,
) -> None:
    # The harness writes pacing tokens to every adapter's stdin; several adapters never read
    # them. `docker run -i` takes them regardless; so must the stand-in, or the harness
    # blocks on a full pipe (it did, at the end of a fixed-rate run, closing stdin).
    _sleeper_image(tmp_path)
    docker = STAND_IN.parent / "docker"
    env = os.environ | {"NATIVE_HOME": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, str(docker), "run", "--rm", "-i", "sleeper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    assert child.stdout.readline() == b"ready\n"
    written = threading.Thread(target=child.stdin.write, args=(b"ENQUEUE 1\n" * 200_000,))
    written.start()
    written.join(timeout=20)  # 2 MB, far beyond a pipe's 64 KiB
    assert not written.is_alive()
    child.stdin.close()
    child.send_signal(signal.SIGTERM)  # passed on: the adapter's own handler exits 0
    assert child.wait(timeout=20) == 0


def test_the_adapter_dies_with_the_stand_in(tmp_path: Path) -> None:
    _sleeper_image(tmp_path)
    docker = STAND_IN.parent / "docker"
    env = os.environ | {"NATIVE_HOME": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, str(docker), "run", "-i", "sleeper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    adapters = _children_of(child.pid)
    assert len(adapters) == 1
    child.kill()
    child.wait(timeout=20)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{adapters[0]}").exists() and _state(adapters[0]) != "Z":
        assert time.monotonic() < deadline, "the adapter outlived the stand-in"
        time.sleep(0.05)


def _children_of(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(x) for x in found]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"
