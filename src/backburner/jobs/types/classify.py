"""`classify_leads`: label up to 5,000 leads, sent to the model in batches."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backburner.errors import InvalidModelOutput
from backburner.jobs.concurrency import gather_all
from backburner.jobs.context import JobContext
from backburner.jobs.registry import JobRegistry, RetryPolicy
from backburner.providers.base import JsonSchemaFormat, ModelRequest


class Lead(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    name: str = ""
    company: str = ""
    title: str = ""
    notes: str = Field(default="", max_length=20_000)


# What the model needs to label a lead. Other fields a lead carries (e-mail, phone, birth
# date, scores...) are kept with the job but never sent: data minimisation, before masking.
MODEL_FIELDS = {"id", "name", "company", "title", "notes"}


class ClassifyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leads: list[Lead] = Field(min_length=1, max_length=5000)
    labels: list[str] = Field(min_length=2, max_length=50)

    @field_validator("labels")
    @classmethod
    def _labels_distinct(cls, labels: list[str]) -> list[str]:
        cleaned = [label.strip() for label in labels]
        if any(not label for label in cleaned):
            raise ValueError("labels must not be empty")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("labels must be distinct")
        return cleaned

    @model_validator(mode="after")
    def _ids_distinct(self) -> ClassifyInput:
        counts = Counter(lead.id for lead in self.leads)
        repeated = [lead_id for lead_id, n in counts.items() if n > 1]
        if repeated:
            raise ValueError(f"lead ids must be distinct; repeated: {', '.join(repeated[:5])}")
        return self


class LeadClassification(BaseModel):
    id: str
    label: str
    confidence: float = Field(ge=0, le=1)
    reason: str


class BatchAnswer(BaseModel):
    classifications: list[LeadClassification]


class ClassifyOutput(BaseModel):
    classifications: list[LeadClassification]
    label_counts: dict[str, int]


def batch_schema(labels: list[str]) -> dict[str, Any]:
    item = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "label": {"type": "string", "enum": labels},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {"type": "string"},
        },
        "required": ["id", "label", "confidence", "reason"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"classifications": {"type": "array", "items": item}},
        "required": ["classifications"],
        "additionalProperties": False,
    }


def check_batch(answer: BatchAnswer, leads: list[Lead], labels: list[str]) -> None:
    """The model must answer every lead of the batch exactly once, with an allowed label."""
    expected = [lead.id for lead in leads]
    got = [c.id for c in answer.classifications]
    if sorted(got) != sorted(expected):
        raise InvalidModelOutput(
            f"the model answered leads {sorted(set(got))[:5]}... for batch {expected[:5]}..."
        )
    unknown = {c.label for c in answer.classifications} - set(labels)
    if unknown:
        raise InvalidModelOutput(f"the model used labels that were not offered: {unknown}")


async def classify_leads(ctx: JobContext, payload: ClassifyInput) -> ClassifyOutput:
    """Label each lead with one of the given labels, with a confidence and a reason."""
    size = ctx.settings.classify_batch_size
    batches = [payload.leads[i : i + size] for i in range(0, len(payload.leads), size)]
    fmt = JsonSchemaFormat(name="lead_classifications", json_schema=batch_schema(payload.labels))
    limit = asyncio.Semaphore(ctx.settings.max_parallel_model_calls)
    done = 0

    async def classify_batch(index: int, leads: list[Lead]) -> BatchAnswer:
        nonlocal done
        request = ModelRequest(
            model=ctx.model,
            instructions=(
                "Classify each sales lead with exactly one of these labels: "
                f"{', '.join(payload.labels)}. Give a confidence between 0 and 1 and a "
                "one-sentence reason. Answer every lead, by its id."
            ),
            input=json.dumps([lead.model_dump(include=MODEL_FIELDS) for lead in leads]),
            text_format=fmt,
        )
        async with limit:
            answer = await ctx.respond_json(f"batch/{index}", request, BatchAnswer)
        check_batch(answer, leads, payload.labels)
        done += 1
        if done < len(batches):  # the last batch's progress is the job's success
            await ctx.progress(done / len(batches), f"batch {done} of {len(batches)}")
        return answer

    answers = await gather_all(classify_batch(i, b) for i, b in enumerate(batches))
    by_id = {c.id: c for answer in answers for c in answer.classifications}
    ordered = [by_id[lead.id] for lead in payload.leads]
    counts = Counter(c.label for c in ordered)
    return ClassifyOutput(
        classifications=ordered,
        label_counts={label: counts.get(label, 0) for label in payload.labels},
    )


def register(registry: JobRegistry) -> None:
    registry.job_type(
        "classify_leads",
        description="Label 1-5,000 leads with one of the given labels, in batches.",
        expected_duration=20.0,
        timeout=3600.0,
        retry=RetryPolicy(max_attempts=5),
        # A batch of leads a call, 8 calls at a time, ~10 s a call.
        size_of=lambda payload, _characters: float(len(payload.leads)),
        size_unit="leads",
        seconds_per_unit=0.1,
    )(classify_leads)
