"""The two ways users start Backburner and the CLI they drive it with, as real processes."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.processes import (
    BACKBURNER,
    child_env,
    free_port,
    run_cli,
    started,
    wait_until_serving,
)

pytestmark = pytest.mark.slow


def test_serve_prints_the_admin_link_and_the_cli_drives_jobs(tmp_path: Path) -> None:
    # The embedded default's first start, on a brand-new file; the CLI then speaks HTTP, so
    # one database is enough here (`serve` on PostgreSQL: test_wait_survives_a_restart...).
    db_url = f"sqlite:///{tmp_path}/fresh.db"
    port = free_port()
    env = child_env(db_url)
    log = tmp_path / "serve.log"
    with started("serve", "--port", str(port), env=env, log=log) as server:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, server, log)
        output = log.read_text()
        assert "BACKBURNER_PUBLIC_URL is not set" in output  # links would name this address
        match = re.search(r"Sign in:\s+(\S+)\?token=(bb_\S+)", output)
        assert match, output
        assert match.group(1) == base + "/"
        created = run_cli("keys", "create", "--owner", "carol", "--role", "member", env=env)
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("bb_")
        client_env = {**env, "BACKBURNER_URL": base, "BACKBURNER_API_KEY": key}

        doc = tmp_path / "notes.txt"
        doc.write_text(
            "Revenue grew by a third. The team shipped two products. "
            "Support tickets fell. Hiring slowed in autumn."
        )
        waited = run_cli(
            "submit",
            "summarize_documents",
            "--file",
            str(doc),
            "--payload",
            '{"summary_style": "bullets"}',
            "--wait",
            env=client_env,
        )
        result = json.loads(waited.stdout)
        assert result["documents"] == 1
        assert "Revenue grew by a third." in result["key_points"]

        payload_file = tmp_path / "report.json"
        payload_file.write_text('{"user_id": "u_9", "period": "2026-Q3"}')
        report = run_cli(
            "submit",
            "generate_report",
            "--payload",
            f"@{payload_file}",
            "--wait",
            env=client_env,
        )
        assert json.loads(report.stdout)["period"] == "2026-Q3"
        not_json = run_cli("submit", "noop", "--payload", "{nope", env=client_env, check=False)
        assert not_json.returncode == 2
        assert "not valid JSON" in not_json.stderr

        many = tmp_path / "many.jsonl"
        many.write_text('{"echo": 1}\n{"echo": 2}\n\n{"echo": 3}\n')
        ids = run_cli("submit", "noop", "--from-jsonl", str(many), env=client_env).stdout.split()
        assert len(ids) == 3
        assert status_of(ids[2], client_env, until="succeeded") == "succeeded"
        mixed = tmp_path / "mixed.jsonl"
        mixed.write_text('{"type": "noop"}\n{"type": "generate_report", "payload": {}}\n')
        refused = run_cli("submit", "--from-jsonl", str(mixed), env=client_env, check=False)
        assert refused.returncode != 0
        assert "jobs.1.payload" in refused.stderr  # the bad item, by index and field
        broken = tmp_path / "broken.jsonl"
        broken.write_text('{"echo": 1}\n{oops\n')
        bad_line = run_cli(
            "submit", "noop", "--from-jsonl", str(broken), env=client_env, check=False
        )
        assert bad_line.returncode == 2
        assert "line 2" in bad_line.stderr

        job_id = run_cli(
            "submit", "test_slow_no_timeout", "--payload", '{"seconds": 30}', env=client_env
        ).stdout.strip()
        assert status_of(job_id, client_env, until="running") == "running"
        listing = run_cli("jobs", "ls", env=client_env).stdout
        assert job_id in listing
        assert "summarize_documents" in listing
        assert "cancel requested" in run_cli("cancel", job_id, env=client_env).stdout
        assert status_of(job_id, client_env, until="canceled") == "canceled"
        assert run_cli("retry", job_id, env=client_env).stdout.strip() == f"{job_id} pending"
        assert status_of(job_id, client_env, until="running") == "running"
        run_cli("cancel", job_id, env=client_env)

        bad = run_cli("submit", "no_such_type", env=client_env, check=False)
        assert bad.returncode != 0
        assert "unknown job type" in bad.stderr
        wrong_key = run_cli(
            "status", job_id, env={**client_env, "BACKBURNER_API_KEY": "bb_x"}, check=False
        )
        assert wrong_key.returncode != 0
        assert "401" in wrong_key.stderr


def status_of(job_id: str, env: dict[str, str], *, until: str, within: float = 15) -> str:
    """The job's status from `backburner status`, once it is `until` (or the deadline)."""
    deadline = time.monotonic() + within
    while True:
        status = str(json.loads(run_cli("status", job_id, env=env).stdout)["status"])
        if status == until or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_db_upgrade_and_key_management(tmp_path: Path) -> None:
    env = child_env(f"sqlite:///{tmp_path}/keys.db")
    from backburner.store.migrate import head_revision

    assert f"revision {head_revision()}" in run_cli("db", "upgrade", env=env).stdout
    created = run_cli(
        "keys", "create", "--owner", "dave", "--role", "admin", "--name", "ops", env=env
    )
    assert created.stdout.strip().splitlines()[-1].startswith("bb_")
    listing = run_cli("keys", "list", env=env).stdout
    key_id = listing.split()[0]
    assert "dave" in listing
    assert "active" in listing
    run_cli("keys", "revoke", key_id, env=env)
    assert "revoked" in run_cli("keys", "list", env=env).stdout
    again = run_cli("keys", "revoke", key_id, env=env, check=False)
    assert again.returncode != 0
    bad_role = run_cli("keys", "create", "--owner", "x", "--role", "root", env=env, check=False)
    assert bad_role.returncode == 2
    empty = json.loads(run_cli("queue", "stats", "--json", env=env).stdout)
    assert empty == {"types": {}, "total": {"ready": 0, "oldest_ready_seconds": 0.0}}
    assert run_cli("queue", "stats", env=env).stdout.startswith("type\tready")


def test_owner_limits_are_set_listed_and_cleared(tmp_path: Path) -> None:
    env = child_env(f"sqlite:///{tmp_path}/owners.db")
    run_cli("db", "upgrade", env=env)
    set_both = run_cli("owners", "set", "erin", "--max-running", "3", "--budget-usd", "25", env=env)
    assert "erin: max running 3, monthly budget $25" in set_both.stdout
    # Options left out keep their value; 'none' hands the limit back to the default.
    partial = run_cli("owners", "set", "erin", "--max-running", "none", env=env)
    assert "erin: max running default, monthly budget $25" in partial.stdout
    listing = run_cli("owners", "ls", env=env).stdout
    assert "erin" in listing
    assert "$25" in listing
    assert "defaults: max running default, budget default" in listing
    for bad in (["--max-running", "0"], ["--budget-usd", "lots"], ["--max-running", "-2"]):
        refused = run_cli("owners", "set", "erin", *bad, env=env, check=False)
        assert refused.returncode == 2, refused.stdout
    run_cli("owners", "set", "erin", "--budget-usd", "none", env=env)
    assert "erin" not in run_cli("owners", "ls", env=env).stdout


def test_evaluations_schedules_and_ratings_from_the_command_line(tmp_path: Path) -> None:
    # The CLI speaks HTTP: one database is enough here (the API's own tests run on both).
    db_url = f"sqlite:///{tmp_path}/quality.db"
    port = free_port()
    env = child_env(db_url, eval_check_seconds="0.2", schedule_check_seconds="0.2")
    log = tmp_path / "serve.log"
    with started("serve", "--port", str(port), env=env, log=log) as server:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, server, log)
        admin = run_cli("keys", "create", "--owner", "ops", "--role", "admin", env=env)
        client_env = {
            **env,
            "BACKBURNER_URL": base,
            "BACKBURNER_API_KEY": admin.stdout.strip().splitlines()[-1],
        }
        dataset = tmp_path / "echoes.jsonl"
        dataset.write_text(
            '{"id": "one", "input": {"echo": 1}, "expected": {"fields": {"echo": 1}}}\n'
            "\n"
            '{"id": "two", "input": {"echo": 2}, "expected": {"fields": {"echo": 3}}}\n'
        )
        ran = run_cli(
            "eval", "run", "noop", "--dataset", str(dataset), "--label", "first", env=client_env
        )
        first = re.search(r"(ev_\S+)\s+noop", ran.stdout)
        assert first, ran.stdout
        assert re.search(r"fields_exact\s+0\.5000", ran.stdout), ran.stdout
        assert re.search(r"overall\s+0\.5000", ran.stdout)
        second = run_cli(
            "eval",
            "run",
            "noop",
            "--dataset",
            str(dataset),
            "--model",
            "gpt-4.1-nano",
            "--no-wait",
            env=client_env,
        ).stdout.strip()
        assert second.startswith("ev_")
        deadline = time.monotonic() + 30
        while "scored" not in run_cli("eval", "ls", env=client_env).stdout.splitlines()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        shown = run_cli("eval", "show", second, env=client_env).stdout
        assert f"against {first.group(1)}" in shown
        compared = run_cli("eval", "compare", first.group(1), second, env=client_env).stdout
        assert re.search(r"overall\s+0\.5000\s+0\.5000\s+\+0\.0000", compared), compared
        assert "(gpt-4.1-nano): cost" in compared
        as_json = json.loads(
            run_cli("eval", "compare", first.group(1), second, "--json", env=client_env).stdout
        )
        assert as_json["regressions"] == []
        broken = tmp_path / "broken.jsonl"
        broken.write_text('{"id": "x", "input": {}, "expected": {}}\n{oops\n')
        refused = run_cli(
            "eval", "run", "noop", "--dataset", str(broken), env=client_env, check=False
        )
        assert refused.returncode == 2
        assert "line 2" in refused.stderr
        misfit = tmp_path / "misfit.jsonl"
        misfit.write_text('{"id": "x", "input": {"surprise": 1}, "expected": {}}\n')
        refused = run_cli(
            "eval", "run", "noop", "--dataset", str(misfit), env=client_env, check=False
        )
        assert refused.returncode == 1
        assert "dataset_items.0.input.surprise" in refused.stderr

        added = json.loads(
            run_cli(
                "schedules",
                "add",
                "nightly-leads",
                "--cron",
                "0 3 * * *",
                "--type",
                "classify_leads",
                "--eval",
                "--model",
                "gpt-4.1-nano",
                env=client_env,
            ).stdout
        )
        assert added["eval"] == {"model": "gpt-4.1-nano", "rubric": False}
        assert "nightly-leads" in run_cli("schedules", "ls", env=client_env).stdout
        run_cli("schedules", "pause", added["id"], env=client_env)
        assert "paused" in run_cli("schedules", "ls", env=client_env).stdout
        run_cli("schedules", "rm", added["id"], env=client_env)
        assert run_cli("schedules", "ls", env=client_env).stdout.strip() == ""
        bad_cron = run_cli(
            "schedules",
            "add",
            "x",
            "--cron",
            "61 * * * *",
            "--type",
            "noop",
            env=client_env,
            check=False,
        )
        assert bad_cron.returncode == 1
        assert "cron" in bad_cron.stderr

        job_id = run_cli("submit", "noop", env=client_env).stdout.strip()
        assert status_of(job_id, client_env, until="succeeded") == "succeeded"
        assert (
            "rated up" in run_cli("rate", job_id, "up", "--comment", "fine", env=client_env).stdout
        )
        assert run_cli("rate", job_id, "sideways", env=client_env, check=False).returncode == 2


def test_submit_goes_on_past_a_bad_file_and_documents_are_listed_and_removed(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path}/uploads.db"  # the CLI speaks HTTP: one database will do
    port = free_port()
    env = child_env(db_url)
    log = tmp_path / "serve.log"
    with started("serve", "--port", str(port), env=env, log=log) as server:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, server, log)
        created = run_cli("keys", "create", "--owner", "dana", "--role", "member", env=env)
        client_env = {
            **env,
            "BACKBURNER_URL": base,
            "BACKBURNER_API_KEY": created.stdout.strip().splitlines()[-1],
        }
        good = [tmp_path / f"note-{n}.txt" for n in range(2)]
        for n, path in enumerate(good):
            path.write_text(f"Note {n}. The plant reopened on Monday after {n + 2} weeks.")
        bad = tmp_path / "scan.pdf"
        bad.write_bytes(b"%PDF-1.4 not really a PDF")
        files = [str(good[0]), str(bad), str(good[1])]
        args = [arg for path in files for arg in ("--file", path)]
        submitted = run_cli(
            "submit",
            "summarize_documents",
            *args,
            "--callback-url",
            "https://hooks.example.com/done",
            "--notify-email",
            "dana@example.com",
            env=client_env,
        )
        assert "[2/3] refused scan.pdf: 4" in submitted.stderr  # named, with its reason
        assert "going on with 2 of 3 files" in submitted.stderr
        job_id = submitted.stdout.strip()
        assert status_of(job_id, client_env, until="succeeded") == "succeeded"
        job = json.loads(run_cli("status", job_id, env=client_env).stdout)
        assert job["result"]["documents"] == 2  # made from the good ones
        assert job["callback_url"] == "https://hooks.example.com/done"
        assert json.loads(run_cli("result", job_id, env=client_env).stdout) == job["result"]
        listed = run_cli("documents", "ls", env=client_env).stdout.splitlines()
        assert [line.split("\t")[1] for line in listed] == ["note-1.txt", "note-0.txt"]
        original = tmp_path / "original.txt"
        run_cli("documents", "get", listed[0].split("\t")[0], "-o", str(original), env=client_env)
        assert original.read_bytes() == good[1].read_bytes()

        # --strict stops at the bad file and removes what it had uploaded.
        third = tmp_path / "note-2.txt"
        third.write_text("A third note, new text.")
        strict = run_cli(
            "submit",
            "summarize_documents",
            "--file",
            str(third),
            "--file",
            str(bad),
            "--strict",
            env=client_env,
            check=False,
        )
        assert strict.returncode == 1
        assert "refused scan.pdf" in strict.stderr
        assert len(run_cli("documents", "ls", env=client_env).stdout.splitlines()) == 2
        only_bad = run_cli(
            "submit", "summarize_documents", "--file", str(bad), env=client_env, check=False
        )
        assert only_bad.returncode == 1
        assert "no file could be uploaded" in only_bad.stderr
        removed = run_cli("documents", "rm", listed[0].split("\t")[0], env=client_env).stdout
        assert removed.startswith("deleted ")
        assert len(run_cli("documents", "ls", env=client_env).stdout.splitlines()) == 1
        missing = run_cli("documents", "rm", "nope", env=client_env, check=False)
        assert missing.returncode == 1
        assert "404" in missing.stderr


def test_wait_survives_a_restart_of_the_service(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path}/restart.db"
    port = free_port()
    env = child_env(db_url)
    base = f"http://127.0.0.1:{port}"
    with started("serve", "--port", str(port), env=env, log=tmp_path / "first.log") as first:
        wait_until_serving(base, first, tmp_path / "first.log")
        created = run_cli("keys", "create", "--owner", "erin", "--role", "member", env=env)
        client_env = {
            **env,
            "BACKBURNER_URL": base,
            "BACKBURNER_API_KEY": created.stdout.strip().splitlines()[-1],
        }
        waiting = subprocess.Popen(
            [BACKBURNER, "submit", "test_slow_no_timeout", "--payload", '{"seconds": 4}', "--wait"],
            env=client_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            running = ""
            deadline = time.monotonic() + 30
            while "test_slow_no_timeout" not in running:  # the CLI is following it now
                assert time.monotonic() < deadline, running
                running = run_cli("jobs", "ls", "--status", "running", env=client_env).stdout
            first.kill()
            first.wait(timeout=10)
            with started(
                "serve", "--port", str(port), env=env, log=tmp_path / "second.log"
            ) as second:
                wait_until_serving(base, second, tmp_path / "second.log")
                out, err = waiting.communicate(timeout=90)
        finally:
            if waiting.poll() is None:
                waiting.kill()
    assert waiting.returncode == 0, err
    assert json.loads(out)["ok"] is True
    assert "Traceback" not in err
