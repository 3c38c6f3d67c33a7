"""`grade_output`: a model grades another job's output against a rubric (evaluation runs
with `rubric` on make one per item; its tokens are counted as any job's)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backburner.jobs.context import JobContext
from backburner.jobs.registry import JobRegistry, RetryPolicy
from backburner.providers.base import JsonSchemaFormat, ModelRequest

MAX_GRADED_CHARS = 60_000


class GradeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rubric: str = Field(min_length=1, max_length=5000)
    output: Any
    reference: str | None = Field(default=None, max_length=200_000)


class GradeOutput(BaseModel):
    score: float = Field(ge=0, le=1)
    reason: str


def grade_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {"type": "string"},
        },
        "required": ["score", "reason"],
        "additionalProperties": False,
    }


async def grade_output(ctx: JobContext, payload: GradeInput) -> GradeOutput:
    """Score an output from 0 to 1 on how well it meets the rubric."""
    shown = json.dumps(payload.output, ensure_ascii=False)[:MAX_GRADED_CHARS]
    reference = f"\n\nA reference answer:\n{payload.reference}" if payload.reference else ""
    request = ModelRequest(
        model=ctx.model,
        instructions=(
            "You grade the output of an automated job. Give a score between 0 and 1 for how "
            f"well it meets this rubric, and a one-sentence reason. Rubric: {payload.rubric}"
        ),
        input=f"The output to grade:\n{shown}{reference}",
        text_format=JsonSchemaFormat(name="grade", json_schema=grade_schema()),
    )
    return await ctx.respond_json("grade", request, GradeOutput)


def register(registry: JobRegistry) -> None:
    registry.job_type(
        "grade_output",
        description="A model grades an output against a rubric (evaluation runs use it).",
        expected_duration=10.0,
        timeout=900.0,
        retry=RetryPolicy(max_attempts=3),
    )(grade_output)
