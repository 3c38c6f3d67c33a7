"""Run the public PostgreSQL job-queue harness with Backburner in it, without Docker.

    python bench/peer-harness/native/run.py ../postgresql-job-queue-benchmarking \\
        run --systems backburner,pgqueuer,procrastinate,pgboss,absurd \\
        --producer-mode depth-target --target-depth 4000 --worker-count 64 \\
        --phase warmup=warmup:60s --phase clean=clean:300s

HARNESS is a checkout of hardbyte/postgresql-job-queue-benchmarking; what follows it is
passed to its `bench.py`. This script

1. registers Backburner's adapter and PgQueuer's (which the harness lacks) in that
   checkout, as bench/peer-harness/README.md describes (the adapter folder with
   `contract.py` beside its main.py, its database in `init-databases.sql`, a builder, a
   launcher and an `ADAPTERS` entry in `bench_harness/adapters.py`); done once, kept;
2. makes the harness's own environment (Python ≥ 3.12 and its `pyproject.toml`'s
   dependencies) under NATIVE_HOME (default ~/.cache/peer-harness-native);
3. runs `bench.py` with the `docker` beside this file first on PATH, so its PostgreSQL and
   its adapters run as processes on this machine (see stand_in.py).

The harness's orchestrator, pacing, sampling and reports run unchanged. What differs from
its Docker set-up: the server is this machine's PostgreSQL (Debian's, not the 18.3 image),
and adapters are not confined to containers (no CPU or memory limits of Docker's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from stand_in import home, python_for

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[2]  # this Backburner checkout

# The adapters kept in this repository, each registered as the harness's guide says.
SYSTEMS = ("backburner", "pgqueuer")

REGISTRATION = """

# --- {system} (registered by backburner's bench/peer-harness/native/run.py) ---
BACKBURNER = Path(os.environ.get("BACKBURNER_CHECKOUT", REPO_ROOT.parent / "backburner"))


def build_{system}(skip: bool) -> None:
    _docker_build(
        "{system}-bench",
        BACKBURNER / "bench" / "peer-harness" / "{system}-bench" / "Dockerfile",
        BACKBURNER,  # the build context is the Backburner checkout (contract.py is shared)
        skip,
    )


def launch_{system}(manifest, overrides):
    return _docker_launch("{system}-bench", manifest, overrides)


ADAPTERS["{system}"] = AdapterEntry(
    bench_dir=SCRIPT_DIR / "{system}-bench",
    builder=build_{system},
    launcher=launch_{system},
)
"""


def register(harness: Path) -> None:
    """Our adapters in the harness checkout (idempotent), each with the contract module
    beside its main.py, as in its image."""
    here = CHECKOUT / "bench" / "peer-harness"
    databases = harness / "init-databases.sql"
    adapters = harness / "bench_harness" / "adapters.py"
    for system in SYSTEMS:
        folder = harness / f"{system}-bench"
        shutil.copytree(here / f"{system}-bench", folder, dirs_exist_ok=True)
        shutil.copy(here / "contract.py", folder / "contract.py")
        if f"{system}_bench" not in databases.read_text():
            with databases.open("a") as sql:
                sql.write(f"\nCREATE DATABASE {system}_bench;\n")
        if f'ADAPTERS["{system}"]' not in adapters.read_text():
            with adapters.open("a") as source:
                source.write(REGISTRATION.format(system=system))


def harness_python(harness: Path) -> Path:
    """A virtualenv with the harness's dependencies, made once."""
    target = home() / "harness-venv"
    python = target / "bin" / "python"
    if python.exists():
        return python
    project = tomllib.loads((harness / "pyproject.toml").read_text())["project"]
    interpreter = python_for(project.get("requires-python", ""))
    subprocess.run([interpreter, "-m", "venv", str(target)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *project.get("dependencies", [])], check=True
    )
    return python


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    harness = Path(argv[0]).resolve()
    if not (harness / "bench_harness" / "adapters.py").exists():
        sys.exit(f"{harness} is not a checkout of postgresql-job-queue-benchmarking")
    register(harness)
    python = harness_python(harness)
    env = os.environ | {
        "PATH": f"{HERE}{os.pathsep}{os.environ.get('PATH', '')}",
        "BACKBURNER_CHECKOUT": str(CHECKOUT),
        "NATIVE_HOME": str(home()),
    }
    return subprocess.run([str(python), "bench.py", *argv[1:]], cwd=harness, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
