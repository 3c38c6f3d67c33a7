"""A PostgreSQL server of the test's own, on loopback, that the test may stop and start:
the shared server at 127.0.0.1:5432 serves every other test and must not go down."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.processes import free_port


def _binaries() -> Path:
    """The newest installed server's: versions compared as numbers (as text, 9 is newer
    than 15)."""
    found = sorted(
        (Path(path) for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    assert found, "PostgreSQL's server binaries are missing: `apt-get install postgresql`"
    return found[-1].parent


def _as_postgres(*command: str) -> list[str]:
    """The server refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@dataclass
class PrivateServer:
    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres(str(_binaries() / "pg_ctl"), "-D", str(self.data), *args),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivateServer]:
    # Not under pytest's tmp_path: its parents are root's alone, and the server runs as
    # `postgres` when the tests run as root.
    with tempfile.TemporaryDirectory(prefix="backburner-pg-") as name:
        workdir = Path(name)
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres")
        with _server(workdir) as server:
            yield server


@contextmanager
def _server(workdir: Path) -> Iterator[PrivateServer]:
    data = workdir / "pgdata"
    subprocess.run(
        _as_postgres(
            str(_binaries() / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"
        ),  # initdb makes the directory, owned by whoever runs it
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = PrivateServer(data, free_port(), workdir / "postgres.log")
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            _as_postgres(str(_binaries() / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            check=False,
            capture_output=True,
            timeout=60,
        )


@dataclass
class Bouncer:
    """A PgBouncer the test may stop and start again on the same port."""

    binary: str
    config: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            _as_postgres(self.binary, str(self.config)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    said = self.process.stderr.read() if self.process.stderr else b""
                    raise AssertionError(f"PgBouncer did not start: {said!r}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def restartable_pgbouncer(target_port: int = 5432) -> Iterator[Bouncer]:
    """PgBouncer in transaction pooling mode on a free port, in front of the PostgreSQL
    at 127.0.0.1:`target_port`."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    assert Path(binary).exists(), "PgBouncer is missing: `apt-get install pgbouncer`"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="backburner-pgbouncer-") as name:
        workdir = Path(name)
        (workdir / "users.txt").write_text('"postgres" ""\n')
        (workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={target_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {workdir}/users.txt\n"
            "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n"
        )
        if os.geteuid() == 0:
            for path in (workdir, *workdir.iterdir()):
                shutil.chown(path, "postgres")
        bouncer = Bouncer(binary, workdir / "pgbouncer.ini", port)
        bouncer.start()
        try:
            yield bouncer
        finally:
            bouncer.stop()


@contextmanager
def pgbouncer(target_port: int = 5432) -> Iterator[int]:
    """PgBouncer in transaction pooling mode on a free port; yields its port."""
    with restartable_pgbouncer(target_port) as bouncer:
        yield bouncer.port
