"""`summarize_documents`: summarise up to 200 documents, map (per chunk) then reduce."""

from __future__ import annotations

import asyncio
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from backburner.errors import InvalidInput
from backburner.jobs.chunking import chunk_text, group_by_size
from backburner.jobs.concurrency import gather_all
from backburner.jobs.context import JobContext
from backburner.jobs.registry import JobRegistry, RetryPolicy
from backburner.providers.base import ModelRequest


class SummaryStyle(StrEnum):
    EXECUTIVE = "executive"
    DETAILED = "detailed"
    BULLETS = "bullets"


# Sentences and key points each style asks for (evaluations check a summary keeps to them).
STYLE_LENGTHS = {
    SummaryStyle.EXECUTIVE: (3, 5),
    SummaryStyle.DETAILED: (8, 8),
    SummaryStyle.BULLETS: (2, 10),
}
_STYLE_WORDS = {
    SummaryStyle.EXECUTIVE: "an executive summary",
    SummaryStyle.DETAILED: "a detailed summary",
    SummaryStyle.BULLETS: "a summary",
}
STYLE_INSTRUCTIONS = {
    style: f"Write {_STYLE_WORDS[style]} of {sentences} sentences and {points} key points."
    for style, (sentences, points) in STYLE_LENGTHS.items()
}


class SummarizeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[str] = Field(min_length=1, max_length=200)
    summary_style: SummaryStyle = SummaryStyle.EXECUTIVE


class PartialSummary(BaseModel):
    summary: str
    key_points: list[str]


class SummarizeOutput(BaseModel):
    summary: str
    key_points: list[str]
    documents: int
    chunks: int
    characters: int


def _request(ctx: JobContext, style: SummaryStyle, text: str, what: str) -> ModelRequest:
    return ModelRequest(
        model=ctx.model,
        instructions=(
            f"You summarise {what} for a busy reader. {STYLE_INSTRUCTIONS[style]} "
            "Use only facts stated in the text."
        ),
        input=text,
    )


async def summarize_documents(ctx: JobContext, payload: SummarizeInput) -> SummarizeOutput:
    """Summarise documents: long ones are chunked, each chunk summarised, then combined."""
    documents = await ctx.documents(payload.document_ids)
    max_chars = ctx.settings.summarize_chunk_chars
    chunks = [
        (doc.id, index, chunk)
        for doc in documents
        for index, chunk in enumerate(chunk_text(doc.text, max_chars))
    ]
    if not chunks:
        raise InvalidInput("the documents contain no text to summarise")
    limit = asyncio.Semaphore(ctx.settings.max_parallel_model_calls)
    done = 0

    async def summarise_chunk(doc_id: str, index: int, text: str) -> PartialSummary:
        nonlocal done
        async with limit:
            part = await ctx.respond_json(
                f"map/{doc_id}/{index}",
                _request(ctx, payload.summary_style, text, "one part of a document"),
                PartialSummary,
            )
        done += 1
        await ctx.progress(0.8 * done / len(chunks), f"summarised part {done} of {len(chunks)}")
        return part

    partials = await gather_all(summarise_chunk(*chunk) for chunk in chunks)
    level = 0
    while len(partials) > 1:
        level += 1
        groups = group_by_size([render(p) for p in partials], max_chars)

        async def combine(index: int, texts: list[str], level: int = level) -> PartialSummary:
            async with limit:
                return await ctx.respond_json(
                    f"reduce/{level}/{index}",
                    _request(
                        ctx,
                        payload.summary_style,
                        "\n\n".join(texts),
                        "several partial summaries of the same documents",
                    ),
                    PartialSummary,
                )

        partials = await gather_all(combine(i, g) for i, g in enumerate(groups))
        await ctx.progress(0.9, f"combined summaries (round {level})")
    final = partials[0]
    return SummarizeOutput(
        summary=final.summary,
        key_points=final.key_points,
        documents=len(documents),
        chunks=len(chunks),
        characters=sum(len(doc.text) for doc in documents),
    )


def render(part: PartialSummary) -> str:
    points = "\n".join(f"- {point}" for point in part.key_points)
    return f"{part.summary}\n{points}"


def register(registry: JobRegistry) -> None:
    registry.job_type(
        "summarize_documents",
        description="Summarise 1-200 documents (map per chunk, then reduce).",
        expected_duration=30.0,
        timeout=3600.0,
        retry=RetryPolicy(max_attempts=5),
        referenced_documents=lambda payload: list(payload.document_ids),
        sequential_model_calls=2,  # map, then reduce
    )(summarize_documents)
