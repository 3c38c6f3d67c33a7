"""The context a handler runs with: memoised steps, background model calls, progress.

Durability contract: a step's result and a model call's response id are in the database
before the handler moves on, so a re-run after a crash returns finished steps from the
store and waits again on submitted responses instead of paying for them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from backburner.config import Settings
from backburner.errors import (
    InvalidInput,
    InvalidModelOutput,
    LeaseLost,
    PermanentError,
    RateLimited,
    ResponseCancelled,
    ResponseFailed,
    ResponseIncomplete,
    ResponseLost,
)
from backburner.jobs.context import ToolFunction
from backburner.providers.base import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    JsonSchemaFormat,
    ModelRequest,
    Provider,
    ResponseSnapshot,
    Usage,
    is_strict_compatible,
)
from backburner.store import OUTSTANDING_CALL_STATUSES, Database, Document, Job, ProviderCall
from backburner.store import documents as documents_store
from backburner.store import queue as queue_store
from backburner.store import steps as steps_store
from backburner.worker.spending import CallTerms, Spending
from backburner.worker.tracker import ResponseTracker

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

PROGRESS_MIN_INTERVAL = 0.25


class SlotHolder:
    """A job's claim on one of the worker's execution slots, given back while the job only
    waits on the model, so a waiting job holds no slot."""

    def __init__(self, release: Callable[[], None], acquire: Callable[[], Awaitable[None]]):
        self._release = release
        self._acquire = acquire
        self.held = True
        self._waits = 0

    @contextlib.asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        self._waits += 1
        if self._waits == 1 and self.held:
            self.held = False
            self._release()
        try:
            yield
        finally:
            self._waits -= 1
            if self._waits == 0 and not self.held:
                await self._acquire()
                self.held = True


class RunningJob:
    """One attempt of one job; implements `backburner.jobs.JobContext`."""

    def __init__(
        self,
        job: Job,
        *,
        db: Database,
        provider: Provider,
        tracker: ResponseTracker,
        settings: Settings,
        worker_id: str,
        slot: SlotHolder,
        clock: Callable[[], datetime],
        spending: Spending,
        sequential_calls: int = 1,
    ) -> None:
        self.job_id = job.id
        self.owner = job.owner
        self.type = job.type
        self.attempt = job.attempts
        self._deadline_at = job.deadline_at
        self._spending = spending
        self._sequential_calls = sequential_calls
        # Tokens estimated for the calls this attempt placed, to correct the rate budget.
        self._estimates: dict[str, int] = {}
        self._db = db
        self._provider = provider
        self._tracker = tracker
        self._settings = settings
        self._worker_id = worker_id
        self._slot = slot
        self._clock = clock
        self._steps: dict[str, Any] = {}
        self._calls: dict[str, ProviderCall] = {}
        self._loaded = False
        # Keys this attempt called: enough to find a tool loop's final round.
        self._keys_called: set[str] = set()
        self._last_progress: tuple[float, str | None, float] | None = None

    async def _ensure_loaded(self) -> None:
        """Read what earlier attempts finished, once, on first need: a handler that never
        uses steps or model calls costs no query for them."""
        if not self._loaded:
            self._steps = await steps_store.load_steps(self._db, self.job_id)
            self._calls = await steps_store.load_calls(self._db, self.job_id)
            self._loaded = True

    @property
    def model(self) -> str:
        return self._settings.model_for(self.type)

    @property
    def settings(self) -> Settings:
        return self._settings

    # --- Steps ---------------------------------------------------------------------------

    async def step(self, key: str, fn: Callable[..., Awaitable[T] | T], *args: Any) -> T:
        await self._ensure_loaded()
        if key in self._steps:
            return cast(T, self._steps[key])
        value = fn(*args)
        if inspect.isawaitable(value):
            value = await value
        stored = await steps_store.save_step(
            self._db, self.job_id, key, to_jsonable_python(value), now=self._clock()
        )
        self._steps[key] = stored
        return cast(T, stored)

    # --- Model calls -----------------------------------------------------------------------

    async def respond(
        self,
        key: str,
        request: ModelRequest,
        *,
        tools: dict[str, ToolFunction] | None = None,
        max_tool_rounds: int = 5,
    ) -> ResponseSnapshot:
        snapshot = await self._call(key, request)
        rounds = 0
        while snapshot.function_calls:
            rounds += 1
            if not tools:
                raise InvalidModelOutput("the model asked for a tool, but none was offered")
            if rounds > max_tool_rounds:
                raise PermanentError(f"the model kept calling tools past {max_tool_rounds} rounds")
            outputs = [
                await self._run_tool(f"{key}/tool/{rounds}/{call.call_id}", call, request, tools)
                for call in snapshot.function_calls
            ]
            follow_up = request.model_copy(
                update={"input": outputs, "previous_response_id": snapshot.id}
            )
            snapshot = await self._call(f"{key}/round/{rounds}", follow_up)
        return snapshot

    async def respond_json(
        self,
        key: str,
        request: ModelRequest,
        output_model: type[M],
        *,
        tools: dict[str, ToolFunction] | None = None,
    ) -> M:
        if request.text_format is None:
            schema = output_model.model_json_schema()
            request = request.model_copy(
                update={
                    "text_format": JsonSchemaFormat(
                        name=output_model.__name__,
                        json_schema=schema,
                        strict=is_strict_compatible(schema),
                    )
                }
            )
        snapshot = await self.respond(key, request, tools=tools)
        try:
            return output_model.model_validate_json(snapshot.output_text)
        except ValidationError as error:
            # Forget the answer so the next attempt asks again instead of replaying it.
            final_key = self._final_key(key)
            self._calls.pop(final_key, None)
            await steps_store.record_finished(
                self._db,
                job_id=self.job_id,
                key=final_key,
                status="failed",
                output=None,
                error_message=f"output rejected: {error.error_count()} schema errors",
                usage={},
                attempt=self.attempt,
                now=self._clock(),
                owner=self.owner,
            )
            raise InvalidModelOutput(
                f"model output for {key!r} does not match {output_model.__name__}: "
                f"{error.errors()[0]['msg']}"
            ) from error

    def _final_key(self, key: str) -> str:
        rounds = [k for k in {*self._calls, *self._keys_called} if k.startswith(f"{key}/round/")]
        return max(rounds, key=lambda k: int(k.rsplit("/", 1)[1]), default=key)

    async def _run_tool(
        self,
        step_key: str,
        call: FunctionCall,
        request: ModelRequest,
        tools: dict[str, ToolFunction],
    ) -> FunctionCallOutput:
        declared = {tool.name: tool for tool in request.tools}
        problem = tool_call_problem(call, declared, tools)
        if problem is not None:
            # Tell the model what was wrong, as the API expects, rather than failing the job.
            return FunctionCallOutput(call_id=call.call_id, output=json.dumps({"error": problem}))
        arguments = call.parsed_arguments()
        result = await self.step(step_key, lambda: tools[call.name](**arguments))
        return FunctionCallOutput(call_id=call.call_id, output=json.dumps(result))

    async def _call(self, key: str, request: ModelRequest) -> ResponseSnapshot:
        await self._ensure_loaded()
        self._keys_called.add(key)
        known = self._calls.get(key)
        if known is not None and known.status == "completed":
            return ResponseSnapshot.from_stored(known.response_id, "completed", known.output or {})
        snapshot: ResponseSnapshot | None = None
        if known is not None and known.status in OUTSTANDING_CALL_STATUSES:
            terms = CallTerms(known.model, known.completion_window, known.service_tier)
            try:
                snapshot = await self._wait(known.response_id)
            except ResponseLost:
                log.warning(
                    "response lost; submitting again",
                    extra={"job_id": self.job_id, "response_id": known.response_id, "key": key},
                )
        if snapshot is None:
            snapshot, terms = await self._submit(key, request)
            if not snapshot.is_terminal:
                snapshot = await self._wait(snapshot.id)
        await self._record_end(key, snapshot, terms)
        return ensure_completed(snapshot)

    async def _submit(self, key: str, request: ModelRequest) -> tuple[ResponseSnapshot, CallTerms]:
        """Place the call: within the owner's budget and the shared rate limit, in the
        cheapest completion window the deadline allows; persist its id before returning."""
        await self._spending.check_budget(self.owner)
        placed = self._spending.placed(request, self._deadline_at, self._sequential_calls)
        tagged = placed.model_copy(
            update={
                "metadata": {
                    **request.metadata,
                    "backburner_job_id": self.job_id,
                    "backburner_key": key[:64],
                }
            }
        )
        estimate = self._spending.estimate(tagged)
        await self._spending.take_rate_budget(tagged, estimate, self._wait_for_budget)
        try:
            snapshot = await self._provider.submit(tagged)
        except RateLimited as limited:
            await self._spending.throttled(request.model, limited.retry_after)
            raise
        self._estimates[key] = estimate
        terms = CallTerms(request.model, placed.completion_window, placed.service_tier)
        await steps_store.record_submitted(
            self._db,
            job_id=self.job_id,
            key=key,
            provider=self._provider.name,
            model=request.model,
            response_id=snapshot.id,
            status=snapshot.status,
            attempt=self.attempt,
            now=self._clock(),
            completion_window=terms.completion_window,
            service_tier=terms.service_tier,
        )
        self._keys_called.add(key)
        log.info(
            "model call submitted",
            extra={
                "job_id": self.job_id,
                "response_id": snapshot.id,
                "key": key,
                "completion_window": terms.completion_window,
            },
        )
        return snapshot, terms

    async def _wait(self, response_id: str) -> ResponseSnapshot:
        async with self._slot.released():
            return await self._tracker.wait(response_id)

    async def _wait_for_budget(self, seconds: float) -> None:
        async with self._slot.released():
            await asyncio.sleep(seconds)

    async def _record_end(self, key: str, snapshot: ResponseSnapshot, terms: CallTerms) -> None:
        usage = (snapshot.usage or Usage()).as_counts()
        message = snapshot.error_message or snapshot.incomplete_reason
        estimate = self._estimates.pop(key, None)
        if estimate is not None:
            await self._spending.settle(terms.model, estimate, snapshot.usage)
        await steps_store.record_finished(
            self._db,
            job_id=self.job_id,
            key=key,
            status=snapshot.status,
            output=snapshot.stored_output() if snapshot.status == "completed" else None,
            error_message=message,
            usage=usage,
            attempt=self.attempt,
            now=self._clock(),
            owner=self.owner,
            cost=self._spending.cost(terms, snapshot.usage),
        )

    # --- Progress and data --------------------------------------------------------------------

    async def progress(self, fraction: float, message: str | None = None) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        if self._last_progress is not None:
            last_fraction, last_message, at = self._last_progress
            unchanged = (last_fraction, last_message) == (fraction, message)
            if unchanged or (now - at < PROGRESS_MIN_INTERVAL and fraction < 1.0):
                return
        self._last_progress = (fraction, message, now)
        held = await queue_store.set_progress(
            self._db,
            job_id=self.job_id,
            worker_id=self._worker_id,
            fraction=fraction,
            message=message,
            attempt=self.attempt,
            now=self._clock(),
        )
        if not held:
            raise LeaseLost(f"job {self.job_id} is no longer held by this worker")

    async def documents(self, ids: Sequence[str]) -> list[Document]:
        found = await documents_store.get_documents(self._db, ids, owner=self.owner)
        missing = [doc_id for doc_id in ids if doc_id not in found]
        if missing:
            raise InvalidInput(f"documents not found: {', '.join(missing[:10])}")
        return [found[doc_id] for doc_id in ids]


def ensure_completed(snapshot: ResponseSnapshot) -> ResponseSnapshot:
    """The snapshot if the response completed; otherwise the error its status means."""
    if snapshot.status == "completed":
        return snapshot
    detail = snapshot.error_message or snapshot.incomplete_reason or "no detail given"
    if snapshot.status == "incomplete":
        raise ResponseIncomplete(f"response {snapshot.id} is incomplete: {detail}")
    if snapshot.status == "cancelled":
        raise ResponseCancelled(f"response {snapshot.id} was cancelled")
    raise ResponseFailed(f"response {snapshot.id} failed: {detail}")


def tool_call_problem(
    call: FunctionCall, declared: dict[str, FunctionTool], tools: dict[str, ToolFunction]
) -> str | None:
    """What is wrong with a function call the model made, or None if we can run it."""
    if call.name not in tools or call.name not in declared:
        return f"unknown tool {call.name!r}"
    try:
        arguments = call.parsed_arguments()
    except json.JSONDecodeError:
        return "arguments are not valid JSON"
    if not isinstance(arguments, dict):
        return "arguments must be a JSON object"
    schema = declared[call.name].parameters
    missing = [name for name in schema.get("required", []) if name not in arguments]
    if missing:
        return f"missing arguments: {', '.join(missing)}"
    if schema.get("additionalProperties") is False:
        extra = sorted(set(arguments) - set(schema.get("properties", {})))
        if extra:
            return f"unexpected arguments: {', '.join(extra)}"
    return None
