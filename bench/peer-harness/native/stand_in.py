"""`docker`, for the public PostgreSQL job-queue harness on a machine without Docker.

hardbyte/postgresql-job-queue-benchmarking starts its PostgreSQL with `docker compose`
and runs each adapter with `docker build` / `docker run -i --network host`. Put this
folder first on PATH (`run.py` beside it does): its `docker` script calls `main` here,
and those calls run natively instead:

- `docker compose up|stop|start|down|exec postgres …`: a PostgreSQL cluster of its own
  (the newest server in /usr/lib/postgresql), on 127.0.0.1:15555 like the compose file's,
  user `bench`, configured with the harness's `postgres.conf`, its databases made by the
  harness's `init-databases.sql`;
- `docker build -f ADAPTER/Dockerfile -t TAG .`: the adapter's own dependencies installed
  outside any container (a virtualenv from its `pyproject.toml`, `npm ci` from its
  `package-lock.json`, or a Backburner checkout installed with pip);
- `docker run -i … -e K=V … TAG`: the adapter as a child process with that environment; as
  with `docker run -i`, our stdin is always read (the harness writes pacing tokens to it,
  which some adapters never read), the harness's signals are passed on, and the adapter
  dies with the stand-in.

Only what the harness calls is understood; anything else is refused by name. Standard
library only: it runs before any environment of the harness's exists.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
from pathlib import Path


def home() -> Path:
    """Where clusters and adapter environments are kept (NATIVE_HOME)."""
    return Path(os.environ.get("NATIVE_HOME", Path.home() / ".cache" / "peer-harness-native"))


PG_PORT = 15555
PG_USER = "bench"


# --- PostgreSQL, for `docker compose` ------------------------------------------------------


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if not found:
        sys.exit("no PostgreSQL server in /usr/lib/postgresql: apt-get install postgresql")
    return Path(found[-1]).parent


def _version_key(path: str) -> int:
    return int(Path(path).parent.parent.name)


def as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its server tools as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def pg_dir() -> Path:
    return home() / "postgres"


def pg_data() -> Path:
    return pg_dir() / "data"


def pg_ctl(*args: str, check: bool = True, quiet: bool = False) -> int:
    command = as_postgres(str(pg_bin() / "pg_ctl"), "-D", str(pg_data()), *args)
    output = subprocess.DEVNULL if quiet else None
    return subprocess.run(command, check=check, stdout=output).returncode


def pg_init(harness: Path) -> None:
    """A fresh cluster set up as the compose file's container is."""
    shutil.rmtree(pg_dir(), ignore_errors=True)
    pg_dir().mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(pg_dir(), "postgres")
        reachable = subprocess.run(as_postgres("test", "-w", str(pg_dir())), check=False)
        if reachable.returncode != 0:  # root's home is closed to others (mode 700), say
            sys.exit(
                f"the postgres user cannot write to {pg_dir()} (a directory above it is "
                "closed to it): set NATIVE_HOME to one it can reach, e.g. "
                "NATIVE_HOME=/tmp/peer-harness-native"
            )
    initdb = str(pg_bin() / "initdb")
    subprocess.run(
        as_postgres(initdb, "-D", str(pg_data()), "-U", PG_USER, "-A", "trust"),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.copy(harness / "postgres.conf", pg_data() / "harness.conf")
    if os.geteuid() == 0:
        shutil.chown(pg_data() / "harness.conf", "postgres")
    with (pg_data() / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# peer-harness native stand-in: the harness's settings, then where to listen\n"
            "include 'harness.conf'\n"
            "listen_addresses = '127.0.0.1'\n"  # loopback only, whatever the file says
            f"port = {PG_PORT}\n"
            f"unix_socket_directories = '{pg_dir()}'\n"
        )


def pg_start() -> None:
    pg_ctl("-l", str(pg_dir() / "server.log"), "-w", "-t", "60", "start")


def pg_running() -> bool:
    if not (pg_data() / "postmaster.pid").exists():
        return False
    return pg_ctl("status", check=False, quiet=True) == 0


def psql_file(path: Path) -> None:
    subprocess.run(
        [
            str(pg_bin() / "psql"),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(PG_PORT),
            "-U",
            PG_USER,
            "-d",
            "postgres",
            "-f",
            str(path),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def compose(args: list[str]) -> int:
    harness = Path.cwd()  # the harness runs compose from its own root
    verb, rest = args[0], args[1:]
    if verb == "up":
        if not pg_data().exists():
            pg_init(harness)
            pg_start()
            psql_file(harness / "init-databases.sql")
        elif not pg_running():
            pg_start()
        return 0
    if verb == "exec":
        command = [a for a in rest if a != "-T"]
        if command[:1] != ["postgres"]:
            sys.exit(f"docker compose exec {command[:1]}: only the postgres service exists")
        env = os.environ | {"PGHOST": "127.0.0.1", "PGPORT": str(PG_PORT), "PGUSER": PG_USER}
        return subprocess.run(_pg_tool(command[1:]), env=env).returncode
    if verb == "stop":
        return pg_ctl("-m", "fast", "-w", "stop", check=False) if pg_running() else 0
    if verb == "start":
        pg_start()
        return 0
    if verb == "down":
        if pg_running():
            pg_ctl("-m", "immediate", "-w", "stop", check=False)
        if "-v" in rest:
            shutil.rmtree(pg_dir(), ignore_errors=True)
        return 0
    if verb == "version":
        print("Docker Compose version native-stand-in")
        return 0
    sys.exit(f"docker compose {verb}: not supported by the native stand-in")


def _pg_tool(command: list[str]) -> list[str]:
    """`pg_isready`, `psql`, … from the cluster's own server version."""
    if command and (pg_bin() / command[0]).exists():
        return [str(pg_bin() / command[0]), *command[1:]]
    return command


# --- Adapters, for `docker build` and `docker run` ----------------------------------------


def image_dir(tag: str) -> Path:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", tag):
        raise SystemExit(f"not an image name here: {tag!r}")
    return home() / "images" / tag


def python_for(requires: str) -> str:
    """An interpreter new enough for `requires-python` (">=3.12" style): NATIVE_PYTHON, or
    the newest python3.X on PATH or under pyenv."""
    if os.environ.get("NATIVE_PYTHON"):
        return os.environ["NATIVE_PYTHON"]
    wanted = tuple(int(x) for x in re.findall(r"\d+", requires)[:2]) or (3, 11)
    candidates = [shutil.which(f"python3.{minor}") for minor in range(20, 10, -1)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))[::-1]
    for candidate in filter(None, candidates):
        found = subprocess.run(
            [candidate, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if found.returncode == 0 and tuple(map(int, found.stdout.split())) >= wanted:
            return candidate
    sys.exit(f"no Python {requires} found: set NATIVE_PYTHON")


def venv(target: Path, python: str, requirements: list[str]) -> Path:
    subprocess.run([python, "-m", "venv", "--clear", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *requirements], check=True)
    return target / "bin" / "python"


def build(args: list[str]) -> int:
    dockerfile = Path(args[args.index("-f") + 1]).resolve()
    tag = args[args.index("-t") + 1]
    context = Path(args[-1]).resolve()
    adapter = dockerfile.parent
    target = image_dir(tag)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    recipe = dockerfile.read_text()
    if (adapter / "pyproject.toml").exists():
        project = tomllib.loads((adapter / "pyproject.toml").read_text())["project"]
        requirements = list(project.get("dependencies", []))
        env: dict[str, str] = {}
        # The Absurd image downloads absurd.sql from GitHub; absurdctl of the same release
        # carries that schema inside it.
        absurd = re.search(r"ARG ABSURD_VERSION=(\S+)", recipe)
        absurd_release = absurd.group(1) if absurd and "absurd.sql" in recipe else None
        if absurd_release:
            requirements.append(f"absurdctl=={absurd_release}")
        python = venv(target / "venv", python_for(project.get("requires-python", "")), requirements)
        if absurd_release:
            schema = target / "absurd.sql"
            subprocess.run(
                [
                    str(python),
                    "-c",
                    "import absurdctl, pathlib, sys;"
                    "pathlib.Path(sys.argv[1]).write_text(absurdctl.BUNDLED_SCHEMA_SQL)",
                    str(schema),
                ],
                check=True,
            )
            env["ABSURD_SQL_PATH"] = str(schema)
        image = {"argv": [str(python), "main.py"], "cwd": str(adapter), "env": env}
    elif (context / "src" / "backburner").is_dir():
        # Backburner's own adapter: the checkout, installed as its Dockerfile does.
        python = venv(target / "venv", python_for(">=3.11"), [str(context), "hdrhistogram>=0.10"])
        image = {"argv": [str(python), str(adapter / "main.py")], "cwd": str(adapter), "env": {}}
    elif (adapter / "package-lock.json").exists():
        app = target / "app"
        shutil.copytree(adapter, app)
        subprocess.run(["npm", "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=app, check=True)
        image = {"argv": ["node", "main.js"], "cwd": str(app), "env": {}}
    else:
        sys.exit(f"docker build {tag}: no native recipe for {adapter.name}")
    (target / "image.json").write_text(json.dumps(image, indent=2))
    print(f"[native] {tag}: {' '.join(image['argv'])}", file=sys.stderr)
    return 0


def _on_host(value: str, host: str, container: str) -> str:
    inside = value == container or value.startswith(container.rstrip("/") + "/")
    return host + value[len(container) :] if inside else value


def launch_of(args: list[str]) -> tuple[list[str], str, dict[str, str]]:
    """What `docker run ARGS` starts here: argv, working directory and the environment
    added to ours. Refuses what the harness never asks for (other networks, privileges)."""
    env: dict[str, str] = {}
    mounts: list[tuple[str, str]] = []
    rest = list(args)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in ("--rm", "-i"):
            continue
        if flag == "--network" and rest and rest[0] == "host":
            rest.pop(0)
        elif flag == "-e" and rest:
            key, _, value = rest.pop(0).partition("=")
            env[key] = value
        elif flag == "-v" and rest:
            host, _, container = rest.pop(0).partition(":")
            mounts.append((host, container.split(":")[0]))
        else:
            raise SystemExit(f"docker run {flag}: not supported by the native stand-in")
    if not rest:
        raise SystemExit("docker run: no image named")
    tag, extra = rest[0], rest[1:]
    made = image_dir(tag) / "image.json"
    if not made.exists():
        raise SystemExit(f"docker run {tag}: not built (docker build -t {tag} first)")
    image = json.loads(made.read_text())
    for host, container in mounts:  # a mounted path is the host's own here
        env = {k: _on_host(v, host, container) for k, v in env.items()}
    return [*image["argv"], *extra], image["cwd"], image["env"] | env


def run(args: list[str]) -> int:
    """The adapter as a child, as `docker run -i` runs a container: what comes on our stdin
    is taken at once and handed on as the adapter reads it (an adapter that never reads its
    stdin must not block the harness writing to ours), signals are passed on, and the
    adapter dies with us."""
    argv, cwd, env = launch_of(args)
    child = subprocess.Popen(
        argv, cwd=cwd, env=os.environ | env, stdin=subprocess.PIPE, preexec_fn=_die_with_parent
    )
    for passed_on in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(passed_on, lambda number, _frame: child.send_signal(number))
    relay: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_take_stdin, args=(relay,), daemon=True).start()
    threading.Thread(target=_hand_on, args=(relay, child), daemon=True).start()
    code = child.wait()
    return 128 - code if code < 0 else code


def _die_with_parent() -> None:
    """In the child: SIGKILL when the stand-in dies (the harness's SIGKILL ends both)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def _take_stdin(relay: queue.SimpleQueue[bytes | None]) -> None:
    # os.read, not sys.stdin.buffer: a daemon thread still inside the buffered reader when
    # the interpreter exits (the adapter ended before we read all that was sent) makes
    # CPython abort at shutdown (exit -6, "could not acquire lock ... daemon threads").
    while chunk := os.read(sys.stdin.fileno(), 1 << 16):
        relay.put(chunk)
    relay.put(None)


def _hand_on(relay: queue.SimpleQueue[bytes | None], child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    try:
        while (chunk := relay.get()) is not None:
            child.stdin.write(chunk)
            child.stdin.flush()
        child.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the adapter is gone or closed its stdin


def main(argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        server = subprocess.run(
            [str(pg_bin() / "postgres"), "--version"], capture_output=True, text=True
        ).stdout.strip()
        print(f"native stand-in for docker (bench/peer-harness/native); {server}")
        return 0
    commands = {"compose": compose, "build": build, "run": run}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    sys.exit(f"docker {' '.join(argv[:2])}: not supported by the native stand-in")
