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
import random
import secrets
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
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ResponseCancelled,
    ResponseFailed,
    ResponseIncomplete,
    ResponseLost,
)
from backburner.jobs import pii
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
    failure_is_transient,
    is_strict_compatible,
)
from backburner.providers.pricing import WINDOW_SECONDS
from backburner.store import OUTSTANDING_CALL_STATUSES, Database, Document, Job, ProviderCall
from backburner.store import documents as documents_store
from backburner.store import queue as queue_store
from backburner.store import steps as steps_store
from backburner.worker.retry import is_throttled_or_unavailable, provider_wait
from backburner.worker.spending import CallTerms, Spending
from backburner.worker.tracker import ResponseTracker

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

PROGRESS_MIN_INTERVAL = 0.25
# A response that failed for the provider's own reasons is asked again this many times
# within one attempt before the attempt gives up on it.
TRANSIENT_RESUBMITS = 3
# An answer that does not match its schema is asked again this many times (the repair)
# before the job fails for good.
SCHEMA_REPAIRS = 1
DISCOUNTED_WINDOWS = ("2h", "8h")
# The error code we give a response that stayed queued past its limit (and was cancelled).
STUCK = "stuck_in_queue"


PII_SALT_STEP = "_pii/salt"


class AttemptEnded(asyncio.CancelledError):
    """A task the handler left running (the sibling of a call that failed, under a plain
    `asyncio.gather`) tried to place a model call after its attempt ended. The call is
    not placed; the task ends as cancelled, quietly."""


class SlotHolder:
    """A job's claim on one of the worker's execution slots, given back while the job only
    waits on the model, so a waiting job holds no slot."""

    def __init__(self, release: Callable[[], None], acquire: Callable[[], Awaitable[None]]):
        self._release = release
        self._acquire = acquire
        self.held = True
        self._waits = 0

    def give_back(self) -> None:
        """Done with the slot for good (the attempt has its outcome)."""
        if self.held:
            self.held = False
            self._release()

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
        # An evaluation run may ask for another model than the type's configured one.
        self._model = job.model or settings.model_for(job.type)
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
        # Calls completed in this attempt, so asking again replays them.
        self._finished: dict[str, ResponseSnapshot] = {}
        self._loaded = False
        self._open = True
        # Keys this attempt called: enough to find a tool loop's final round.
        self._keys_called: set[str] = set()
        self._last_progress: tuple[float, str | None, float] | None = None
        # Progress shown never goes back: an attempt after a crash replays its memoised
        # steps ("part 1 of 1066" again) and stays quiet until it passes what was shown
        # before it; within an attempt, a lower figure than the last is not shown either.
        self._shown_before = job.progress
        self._progress_floor = 0.0
        # Personal data is masked before it leaves (see backburner.jobs.pii).
        self._pii_kinds = pii.kinds_from(settings.pii_mask.get(job.type))
        self._vault: pii.Vault | None = None
        self._vault_lock = asyncio.Lock()

    async def _ensure_loaded(self) -> None:
        """Read what earlier attempts finished, once, on first need: a handler that never
        uses steps or model calls costs no query for them."""
        if not self._loaded:
            self._steps = await steps_store.load_steps(self._db, self.job_id)
            self._calls = await steps_store.load_calls(self._db, self.job_id)
            self._loaded = True

    @property
    def model(self) -> str:
        return self._model

    @property
    def settings(self) -> Settings:
        return self._settings

    def _provider_wait(self, failures: int, hint: float | None) -> float:
        return provider_wait(
            failures, hint, random.random(), self._settings.provider_retry_max_seconds
        )

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
        for asked in range(1 + SCHEMA_REPAIRS):
            snapshot = await self.respond(key, request, tools=tools)
            try:
                return output_model.model_validate_json(snapshot.output_text)
            except ValidationError as error:
                # Forget the answer so it is asked again (now, or by a later attempt)
                # instead of replayed; the tokens it cost stay counted.
                await self._reject_answer(key, error)
                problem = error.errors()[0]["msg"]
                log.warning(
                    "model output does not match its schema",
                    extra={"key": key, "asked": asked + 1, "problem": problem},
                )
        raise InvalidModelOutput(
            f"model output for {key!r} does not match {output_model.__name__} after "
            f"{1 + SCHEMA_REPAIRS} answers: {problem}"
        )

    async def _reject_answer(self, key: str, error: ValidationError) -> None:
        final_key = self._final_key(key)
        self._calls.pop(final_key, None)
        self._finished.pop(final_key, None)
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

        async def run() -> dict[str, Any]:
            output = tools[call.name](**arguments)
            if inspect.isawaitable(output):
                output = await output
            return steps_store.tool_call_record(call.name, arguments, to_jsonable_python(output))

        recorded: dict[str, Any] = await self.step(step_key, run)
        output = steps_store.tool_output(recorded)
        return FunctionCallOutput(call_id=call.call_id, output=json.dumps(output))

    async def _call(self, key: str, request: ModelRequest) -> ResponseSnapshot:
        """The ended response of the call `key`: replayed if an earlier attempt (or this
        one) finished it, waited on if it is out, placed otherwise. A response that
        fails for the provider's own reasons is asked again at once (a new response for
        the same call; the failed one's tokens stay counted)."""
        await self._ensure_loaded()
        self._keys_called.add(key)
        finished = self._finished.get(key)
        if finished is not None:
            return finished
        vault = await self._pii_vault()
        # The provider gets (and the store keeps) the masked request and answer; the
        # handler sees its own values.
        request = pii.mask_request(vault, request)
        known = self._calls.get(key)
        if known is not None and known.status == "completed":
            stored = ResponseSnapshot.from_stored(
                known.response_id, "completed", known.output or {}
            )
            return pii.unmask_snapshot(vault, stored)
        snapshot: ResponseSnapshot | None = None
        replaces: str | None = None
        if known is not None:
            terms = CallTerms(known.model, known.completion_window, known.service_tier)
            replaces = known.response_id
            if known.status in OUTSTANDING_CALL_STATUSES:
                try:
                    snapshot = await self._wait(
                        known.response_id, known.submitted_at, known.completion_window
                    )
                except ResponseLost:
                    log.warning(
                        "response lost; submitting again",
                        extra={"response_id": known.response_id, "key": key},
                    )
        resubmits = 0
        while True:
            if snapshot is None:
                snapshot, terms = await self._submit(key, request, replaces=replaces)
                submitted_at = self._clock()  # its time in the queue starts now
                if not snapshot.is_terminal:
                    snapshot = await self._wait(snapshot.id, submitted_at, terms.completion_window)
            await self._record_end(key, snapshot, terms)
            if not (worth_asking_again(snapshot) and resubmits < TRANSIENT_RESUBMITS):
                break
            resubmits += 1
            log.warning(
                "response failed on the provider's side; asking again",
                extra={"key": key, "response_id": snapshot.id, "code": snapshot.error_code},
            )
            await self._pause(self._provider_wait(resubmits, None))
            replaces, snapshot = snapshot.id, None
        completed = pii.unmask_snapshot(vault, ensure_completed(snapshot))
        self._finished[key] = completed
        return completed

    async def _pii_vault(self) -> pii.Vault:
        """The job's vault. Its tokens are keyed by a random salt kept as a step of the
        job (never sent), so they are the same in every attempt and process."""
        async with self._vault_lock:
            if self._vault is None:
                salt = ""
                if self._pii_kinds:
                    salt = await self.step(PII_SALT_STEP, lambda: secrets.token_hex(16))
                self._vault = pii.Vault(salt.encode(), self._pii_kinds)
            return self._vault

    def close(self) -> None:
        """The attempt has ended: tasks its handler left running place no new model call
        (one already placed keeps running at the provider, its id persisted, and the
        next attempt picks it up)."""
        self._open = False

    def _ensure_open(self, key: str) -> None:
        if not self._open:
            raise AttemptEnded(
                f"attempt {self.attempt} of job {self.job_id} has ended; {key!r} is not placed"
            )

    async def _submit(
        self, key: str, request: ModelRequest, *, replaces: str | None = None
    ) -> tuple[ResponseSnapshot, CallTerms]:
        """Place the call: within the owner's budget and the shared rate limit, in the
        cheapest completion window the deadline allows; persist its id before returning.
        A throttled or unavailable provider (429, 5xx, timeouts) is waited out here, with
        backoff that honours its hints, for as long as the attempt's time allows."""
        failures = 0
        error: ProviderError
        while True:
            self._ensure_open(key)
            await self._spending.check_budget(self.owner)
            placed = self._spending.placed(request, self._deadline_at, self._sequential_calls)
            tagged = placed.model_copy(
                update={
                    "metadata": {
                        **request.metadata,
                        "backburner_job_id": self.job_id,
                        "backburner_key": key[:64],
                    },
                    # Calls of one job in a discounted window are grouped for the
                    # provider's queue priority (OpenAI's background guide).
                    "continuation_id": self.job_id
                    if placed.completion_window in DISCOUNTED_WINDOWS
                    else None,
                }
            )
            estimate = self._spending.estimate(tagged)
            await self._spending.take_rate_budget(tagged, estimate, self._pause)
            self._ensure_open(key)  # the wait for budget may have outlived the attempt
            try:
                snapshot = await self._provider.submit(tagged)
                break
            except RateLimited as limited:
                await self._spending.throttled(request.model, limited.retry_after)
                hint, error = limited.retry_after, limited
            except ProviderUnavailable as unavailable:
                hint, error = None, unavailable
            failures += 1
            delay = self._provider_wait(failures, hint)
            log.warning(
                "provider busy; waiting inside the attempt",
                extra={
                    "key": key,
                    "error_kind": error.kind,
                    "error": str(error),
                    "seconds": round(delay, 3),
                    "failures": failures,
                },
            )
            await self._pause(delay)
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
            replaces=replaces,
        )
        self._keys_called.add(key)
        log.info(
            "model call submitted",
            extra={
                "response_id": snapshot.id,
                "key": key,
                "completion_window": terms.completion_window,
            },
        )
        return snapshot, terms

    async def _wait(
        self, response_id: str, submitted_at: datetime, window: str | None
    ) -> ResponseSnapshot:
        """The response once it ended, waited for without a slot. One still `queued` long
        past when it should have started is stuck at the provider: it is cancelled, and the
        snapshot says so (`STUCK`), to be asked again."""
        limit = queued_limit(window, self._settings.response_queued_limit_seconds)
        patience = limit - (self._clock() - submitted_at).total_seconds()
        async with self._slot.released():
            while True:
                try:
                    async with asyncio.timeout(max(0.0, patience)) as waiting:
                        return await self._tracker.wait(response_id)
                except TimeoutError:
                    if not waiting.expired():
                        raise
                try:
                    now = await self._provider.retrieve(response_id)
                except ProviderError as error:
                    if not is_throttled_or_unavailable(error):
                        raise
                    patience = self._settings.poll_max_seconds  # look again shortly
                    continue
                if now.is_terminal:
                    return now
                if now.status != "queued":  # it has started: wait however long it takes
                    return await self._tracker.wait(response_id)
                break
        log.warning(
            "response still queued long after it should have started; asking again",
            extra={"response_id": response_id, "seconds": round(limit)},
        )
        with contextlib.suppress(ProviderError):
            now = await self._provider.cancel(response_id)
        return now.model_copy(
            update={
                "status": "cancelled",
                "error_code": STUCK,
                "error_message": f"still queued after {limit:g}s; cancelled and asked again",
            }
        )

    async def _pause(self, seconds: float) -> None:
        """Wait without holding a worker slot (a job waiting on the provider holds none)."""
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
        if fraction < self._progress_floor or (
            self._shown_before and fraction <= self._shown_before
        ):
            return
        self._progress_floor = fraction
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


def queued_limit(window: str | None, base: float) -> float:
    """Seconds a response may stay `queued` before it counts as stuck: `base` in the
    `soonest` window; a discounted window may queue it for its whole length first."""
    window_length = next((s for name, s in WINDOW_SECONDS.items() if name == window), 0.0)
    return base + window_length


def worth_asking_again(snapshot: ResponseSnapshot) -> bool:
    """A response that failed for the provider's own reasons, or stuck in its queue."""
    return failure_is_transient(snapshot) or snapshot.error_code == STUCK


def ensure_completed(snapshot: ResponseSnapshot) -> ResponseSnapshot:
    """The snapshot if the response completed; otherwise the error its status means."""
    if snapshot.status == "completed":
        return snapshot
    detail = snapshot.error_message or snapshot.incomplete_reason or "no detail given"
    if snapshot.status == "incomplete":
        raise ResponseIncomplete(f"response {snapshot.id} is incomplete: {detail}")
    if snapshot.error_code == STUCK:  # the provider's trouble: a later attempt may do
        raise ProviderUnavailable(f"response {snapshot.id} {detail}")
    if snapshot.status == "cancelled":
        raise ResponseCancelled(f"response {snapshot.id} was cancelled")
    raise ResponseFailed(
        f"response {snapshot.id} failed: {detail}",
        code=snapshot.error_code,
        transient=failure_is_transient(snapshot),
    )


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
