"""Job types used only by tests, loaded as a plugin module (`plugins=["tests.jobtypes"]`),
the same way users add theirs."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from pydantic import BaseModel

from backburner.errors import InvalidInput
from backburner.jobs import JobContext, JobRegistry, RetryPolicy
from backburner.providers.base import ModelRequest

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2, jitter=0.0)


class FlakyInput(BaseModel):
    fail_times: int = 1
    marker: str | None = None


class Done(BaseModel):
    ok: bool = True
    attempt: int = 0
    data: dict[str, object] = {}


def _mark(marker: str | None, line: str) -> None:
    if marker:
        with Path(marker).open("a") as handle:
            handle.write(line + "\n")


async def flaky(ctx: JobContext, payload: FlakyInput) -> Done:
    """Memoised first step, then fail with a transient error `fail_times` times."""

    def expensive() -> int:
        _mark(payload.marker, "expensive")
        return 42

    value = await ctx.step("expensive", expensive)
    if ctx.attempt <= payload.fail_times:
        raise ConnectionError(f"flaky failure on attempt {ctx.attempt}")
    return Done(attempt=ctx.attempt, data={"value": value})


class Empty(BaseModel):
    pass


async def broken(ctx: JobContext, payload: Empty) -> Done:
    raise InvalidInput("this job can never succeed")


async def buggy(ctx: JobContext, payload: Empty) -> Done:
    """A bug in the handler's own code."""
    return Done(data={"value": {}["missing"]})


class NeedsFileInput(BaseModel):
    path: str


async def needs_file(ctx: JobContext, payload: NeedsFileInput) -> Done:
    """Fails for good until the file exists: what a person fixes, then retries."""
    if not await asyncio.to_thread(Path(payload.path).exists):
        raise InvalidInput(f"{payload.path} is missing")
    return Done(attempt=ctx.attempt)


class SleepInput(BaseModel):
    seconds: float = 5.0


async def slow(ctx: JobContext, payload: SleepInput) -> Done:
    await asyncio.sleep(payload.seconds)
    return Done()


class StepsInput(BaseModel):
    marker: str
    steps: int = 3
    step_seconds: float = 1.0


async def stepper(ctx: JobContext, payload: StepsInput) -> Done:
    """Steps that leave a trace in a file: 'start N' and 'end N' for each run of step N."""

    async def run_step(number: int) -> int:
        _mark(payload.marker, f"start {number}")
        await asyncio.sleep(payload.step_seconds)
        _mark(payload.marker, f"end {number}")
        return number

    total = 0
    for number in range(1, payload.steps + 1):
        total += await ctx.step(f"step-{number}", run_step, number)
        await ctx.progress(number / payload.steps, f"step {number}")
    return Done(attempt=ctx.attempt, data={"total": total})


class PartsInput(BaseModel):
    parts: int = 4
    break_after: int = 2  # on the first attempt, fail (transiently) after this part


async def parts_then_crash(ctx: JobContext, payload: PartsInput) -> Done:
    """Memoised parts with progress after each; the first attempt breaks midway, so the
    second replays the parts it had done before reaching new ones."""
    for number in range(1, payload.parts + 1):
        await ctx.step(f"part-{number}", lambda n=number: n)
        await ctx.progress(number / payload.parts, f"part {number} of {payload.parts}")
        if ctx.attempt == 1 and number == payload.break_after:
            raise ConnectionError("broke midway on purpose")
    return Done(attempt=ctx.attempt)


class AskInput(BaseModel):
    text: str = "The sky is blue. Grass is green."


async def ask_model(ctx: JobContext, payload: AskInput) -> Done:
    """One model call; its response id is persisted before the wait."""
    snapshot = await ctx.respond("ask", ModelRequest(model=ctx.model, input=payload.text))
    return Done(attempt=ctx.attempt, data={"text": snapshot.output_text})


class FanOutInput(BaseModel):
    calls: int = 8
    parallel: int = 4
    # Call 0 breaks (transiently) this long after the attempt starts, on the first attempt.
    break_after: float = 0.3


async def fan_out(ctx: JobContext, payload: FanOutInput) -> Done:
    """Many model calls under a plain asyncio.gather (as a plugin author may write it),
    one of which breaks on the first attempt while its siblings are out or waiting."""
    limit = asyncio.Semaphore(payload.parallel)

    async def one(index: int) -> str:
        async with limit:
            if index == 0 and ctx.attempt == 1:
                await asyncio.sleep(payload.break_after)
                raise ConnectionError("call 0 broke on purpose")
            request = ModelRequest(model=ctx.model, input=f"Part {index} of the work.")
            return (await ctx.respond(f"call/{index}", request)).output_text

    texts = await asyncio.gather(*(one(i) for i in range(payload.calls)))
    return Done(attempt=ctx.attempt, data={"answers": len(texts)})


class OddInput(BaseModel):
    kind: str


async def odd_result(ctx: JobContext, payload: OddInput) -> Done:
    """A result JSON cannot hold as it is: a lone surrogate, or a float that is no number."""
    value: object = "\ud800" if payload.kind == "surrogate" else float(payload.kind)
    return Done(data={"value": value})


def register(registry: JobRegistry) -> None:
    registry.job_type("test_flaky", retry=FAST_RETRY, expected_duration=0.1)(flaky)
    registry.job_type("test_broken", retry=FAST_RETRY)(broken)
    registry.job_type("test_buggy", retry=FAST_RETRY)(buggy)
    registry.job_type(
        "test_buggy_but_retried", retry=dataclasses.replace(FAST_RETRY, retry_on=(KeyError,))
    )(buggy)
    registry.job_type("test_needs_file", retry=FAST_RETRY)(needs_file)
    registry.job_type("test_slow", retry=FAST_RETRY, timeout=0.5)(slow)
    registry.job_type("test_slow_no_timeout", retry=FAST_RETRY, timeout=60)(slow)
    registry.job_type("test_stepper", retry=FAST_RETRY, timeout=120)(stepper)
    registry.job_type("test_ask_model", retry=FAST_RETRY, timeout=120)(ask_model)
    registry.job_type("test_fan_out", retry=FAST_RETRY, timeout=120)(fan_out)
    registry.job_type("test_parts_then_crash", retry=FAST_RETRY)(parts_then_crash)
    registry.job_type("test_odd_result", retry=FAST_RETRY)(odd_result)
