"""bench/peer-harness/native: `docker run` as the public harness calls it becomes a native
launch; anything else it is handed is refused by name, never guessed at."""

from __future__ import annotations

import importlib.util
import json
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
