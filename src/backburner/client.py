"""A small typed client for Backburner's HTTP API.

from backburner.client import Client

with Client("http://127.0.0.1:8000", api_key="bb_...") as bb:
    job = bb.create_job("classify_leads", {"leads": [...], "labels": ["hot", "cold"]})
    done = bb.wait(job.job_id)
    print(done.status, done.result)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
T = TypeVar("T")
# Answers of a service that is restarting or behind a proxy that lost it: wait, then ask again.
RECONNECT_STATUSES = frozenset({502, 503, 504})


class ApiError(Exception):
    """The API answered with an error (a problem+json body)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.detail = str(problem.get("detail") or problem)
        super().__init__(f"{status}: {self.detail}")


class JobCreated(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    status: str
    estimated_completion_seconds: float | None = None
    created_at: datetime


class BatchEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    status: str
    created: bool
    created_at: datetime


class BatchCreated(BaseModel):
    model_config = ConfigDict(extra="allow")

    jobs: list[BatchEntry]
    estimated_completion_seconds: float | None = None


class Job(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    type: str
    status: str
    substate: str | None = None
    progress: float = 0.0
    progress_message: str | None = None
    result: Any = None
    # A result too big to travel in the job: `get_result` (and `wait`) fetch it from here.
    result_url: str | None = None
    result_bytes: int | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    estimated_completion_seconds: float | None = None
    # Model calls, responses, tokens and cost so far (`GET /api/jobs/{id}` has them).
    usage: dict[str, Any] | None = None

    @property
    def is_done(self) -> bool:
        return self.status in TERMINAL


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None


class Document(BaseModel):
    model_config = ConfigDict(extra="allow")

    document_id: str
    filename: str
    content_type: str
    size_bytes: int
    char_count: int


class EvalRun(BaseModel):
    """An evaluation run; `item_results`, `regressions` and the rest when read one by one."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    model: str
    status: str
    items: int
    created_at: datetime
    scores: dict[str, float] | None = None
    cost_usd: float | None = None

    @property
    def is_scored(self) -> bool:
        return self.status == "scored"


class DocumentPage(BaseModel):
    items: list[Document]
    next_cursor: str | None


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._raw(method, path, **kwargs)
        return None if response.status_code == 204 else response.json()

    def _raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise ApiError(response.status_code, problem)
        return response

    # --- Jobs --------------------------------------------------------------------------------

    def create_job(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        callback_url: str | None = None,
        priority: int = 0,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        notify: dict[str, Any] | None = None,
    ) -> JobCreated:
        """Queue a job. `notify` names who else hears of its end:
        `{"email": ["a@example.com"], "slack": True, "teams": False}`."""
        body: dict[str, Any] = {"type": type, "payload": payload, "priority": priority}
        if notify:
            body["notify"] = notify
        if callback_url:
            body["callback_url"] = callback_url
        if run_at:
            body["run_at"] = run_at.isoformat()
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        return JobCreated.model_validate(self._request("POST", "/api/jobs", json=body))

    def create_jobs(
        self, jobs: Iterable[dict[str, Any]], *, batch_size: int = 1000
    ) -> list[BatchEntry]:
        """Queue many jobs (each `{"type": …, "payload": …, "idempotency_key": …}`), up to
        `batch_size` per request, each request all or none. Give every job an idempotency
        key to make a failed call safe to repeat: the batches that went in are answered
        with the same jobs."""
        entries: list[BatchEntry] = []
        chunk: list[dict[str, Any]] = []
        for job in jobs:
            chunk.append(job)
            if len(chunk) == batch_size:
                entries += self._create_batch(chunk)
                chunk = []
        if chunk:
            entries += self._create_batch(chunk)
        return entries

    def _create_batch(self, jobs: list[dict[str, Any]]) -> list[BatchEntry]:
        answer = self._request("POST", "/api/jobs/batch", json={"jobs": jobs})
        return BatchCreated.model_validate(answer).jobs

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self._request("GET", f"/api/jobs/{job_id}"))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        params = {
            k: v
            for k, v in {"status": status, "type": type, "limit": limit, "cursor": cursor}.items()
            if v is not None
        }
        return JobPage.model_validate(self._request("GET", "/api/jobs", params=params))

    def iter_jobs(self, *, status: str | None = None, type: str | None = None) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            page = self.list_jobs(status=status, type=type, limit=200, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel_job(self, job_id: str) -> Job:
        return Job.model_validate(self._request("POST", f"/api/jobs/{job_id}/cancel"))

    def retry_job(self, job_id: str) -> Job:
        return Job.model_validate(self._request("POST", f"/api/jobs/{job_id}/retry"))

    def job_events(self, job_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        body = self._request("GET", f"/api/jobs/{job_id}/events", params={"after": after})
        items: list[dict[str, Any]] = body["items"]
        return items

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll: float = 0.5,
        on_update: Callable[[Job], None] | None = None,
        reconnect_for: float = 600.0,
        on_reconnect: Callable[[Exception], None] | None = None,
    ) -> Job:
        """Poll until the job ends (or `timeout` seconds pass: TimeoutError). While the
        service cannot be reached, or answers 502-504 (a restart, a deploy), keep asking
        with backoff for up to `reconnect_for` seconds: the job goes on without us. A
        result kept in object storage (`result_url`) is fetched into `result`."""
        done = self._poll(
            lambda: self.get_job(job_id),
            lambda job: job.is_done,
            f"job {job_id}",
            timeout=timeout,
            poll=poll,
            on_update=on_update,
            reconnect_for=reconnect_for,
            on_reconnect=on_reconnect,
        )
        if done.result is None and done.result_url is not None:
            done.result = self.get_result(job_id)
        return done

    def get_result(self, job_id: str) -> Any:
        """A succeeded job's result, wherever it is kept (in the job or as an object)."""
        return self._request("GET", f"/api/jobs/{job_id}/result")

    def _poll(
        self,
        fetch: Callable[[], T],
        done: Callable[[T], bool],
        what: str,
        *,
        timeout: float | None,
        poll: float,
        on_update: Callable[[T], None] | None,
        reconnect_for: float,
        on_reconnect: Callable[[Exception], None] | None,
    ) -> T:
        deadline = None if timeout is None else time.monotonic() + timeout
        lost_since: float | None = None
        backoff = poll
        while True:
            try:
                current = fetch()
            except (httpx.TransportError, ApiError) as error:
                if isinstance(error, ApiError) and error.status not in RECONNECT_STATUSES:
                    raise
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    if on_reconnect is not None:
                        on_reconnect(error)
                if now - lost_since > reconnect_for:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            lost_since, backoff = None, poll
            if on_update is not None:
                on_update(current)
            if done(current):
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{what} not done after {timeout}s")
            time.sleep(poll)

    def webhook_secret(self) -> str:
        """The secret your webhooks are signed with (Standard Webhooks), to verify them."""
        secret: str = self._request("GET", "/api/webhooks/secret")["secret"]
        return secret

    def rate_job(self, job_id: str, rating: str, comment: str | None = None) -> dict[str, Any]:
        """Thumbs "up" or "down" on a job's result, with an optional comment."""
        body = {"rating": rating, "comment": comment}
        answer: dict[str, Any] = self._request("POST", f"/api/jobs/{job_id}/feedback", json=body)
        return answer

    # --- Evaluations and schedules (admins) ---------------------------------------------------

    def start_eval(
        self,
        type: str,
        *,
        items: list[dict[str, Any]] | None = None,
        dataset_name: str | None = None,
        model: str | None = None,
        window: str | None = None,
        label: str | None = None,
        rubric: bool = False,
    ) -> EvalRun:
        """Run a job type over its built-in golden dataset, or over `items` (docs/evals.md)."""
        body: dict[str, Any] = {"type": type, "rubric": rubric}
        optional = {
            "dataset_items": items,
            "dataset_name": dataset_name,
            "model": model,
            "window": window,
            "label": label,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return EvalRun.model_validate(self._request("POST", "/api/evals", json=body))

    def get_eval(self, run_id: str) -> EvalRun:
        return EvalRun.model_validate(self._request("GET", f"/api/evals/{run_id}"))

    def eval_detail(self, run_id: str) -> dict[str, Any]:
        """A run with its items' scores, and its deltas and regressions against the run of
        its type before it."""
        answer: dict[str, Any] = self._request("GET", f"/api/evals/{run_id}")
        return answer

    def list_evals(self, *, type: str | None = None, limit: int = 50) -> list[EvalRun]:
        params: dict[str, Any] = {"limit": limit}
        if type is not None:
            params["type"] = type
        body = self._request("GET", "/api/evals", params=params)
        return [EvalRun.model_validate(item) for item in body["items"]]

    def compare_evals(self, run_a: str, run_b: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._request(
            "GET", "/api/evals/compare", params={"a": run_a, "b": run_b}
        )
        return answer

    def wait_eval(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        poll: float = 1.0,
        on_update: Callable[[EvalRun], None] | None = None,
        reconnect_for: float = 600.0,
    ) -> EvalRun:
        """Poll until the run is scored (or `timeout` seconds pass: TimeoutError); through
        a restart of the service as `wait` does."""
        return self._poll(
            lambda: self.get_eval(run_id),
            lambda run: run.is_scored,
            f"evaluation run {run_id}",
            timeout=timeout,
            poll=poll,
            on_update=on_update,
            reconnect_for=reconnect_for,
            on_reconnect=None,
        )

    def create_schedule(self, **fields: Any) -> dict[str, Any]:
        """`name`, `cron`, `type`, and `payload` (a job per slot) or `eval` (a run)."""
        answer: dict[str, Any] = self._request("POST", "/api/schedules", json=fields)
        return answer

    def list_schedules(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._request("GET", "/api/schedules")["items"]
        return items

    def set_schedule_enabled(self, schedule_id: str, enabled: bool) -> dict[str, Any]:
        answer: dict[str, Any] = self._request(
            "PATCH", f"/api/schedules/{schedule_id}", json={"enabled": enabled}
        )
        return answer

    def delete_schedule(self, schedule_id: str) -> None:
        self._request("DELETE", f"/api/schedules/{schedule_id}")

    # --- Documents and types -----------------------------------------------------------------

    def upload_document(self, path: str | Path) -> Document:
        file = Path(path)
        with file.open("rb") as handle:
            body = self._request("POST", "/api/documents", files={"file": (file.name, handle)})
        return Document.model_validate(body)

    def list_documents(self, *, limit: int = 50, cursor: str | None = None) -> DocumentPage:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return DocumentPage.model_validate(self._request("GET", "/api/documents", params=params))

    def iter_documents(self) -> Iterator[Document]:
        cursor: str | None = None
        while True:
            page = self.list_documents(limit=200, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def document_content(self, document_id: str) -> bytes:
        """The file as it was uploaded."""
        return self._raw("GET", f"/api/documents/{document_id}/content").content

    def delete_document(self, document_id: str) -> None:
        self._request("DELETE", f"/api/documents/{document_id}")

    def job_types(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._request("GET", "/api/job-types")["items"]
        return items
