"""`noop`: does nothing (or sleeps), for benchmarks, smoke tests and demos."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backburner.jobs.context import JobContext
from backburner.jobs.registry import JobRegistry, RetryPolicy


class NoopInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep_seconds: float = Field(default=0.0, ge=0, le=86_400)
    echo: Any = None


class NoopOutput(BaseModel):
    echo: Any = None
    slept_seconds: float


async def noop(ctx: JobContext, payload: NoopInput) -> NoopOutput:
    """Return `echo`, after sleeping `sleep_seconds` (reporting progress each second)."""
    remaining = payload.sleep_seconds
    while remaining > 0:
        pause = min(1.0, remaining)
        await asyncio.sleep(pause)
        remaining -= pause
        if payload.sleep_seconds >= 2:
            done = payload.sleep_seconds - remaining
            await ctx.progress(
                done / payload.sleep_seconds, f"slept {done:.0f}s of {payload.sleep_seconds:.0f}s"
            )
    return NoopOutput(echo=payload.echo, slept_seconds=payload.sleep_seconds)


def register(registry: JobRegistry) -> None:
    registry.job_type(
        "noop",
        description="Does nothing, or sleeps; for benchmarks and smoke tests.",
        expected_duration=0.1,
        timeout=86_400 + 60,
        retry=RetryPolicy(max_attempts=3),
    )(noop)
