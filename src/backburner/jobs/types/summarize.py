"""`summarize_documents`: summarise up to 200 documents so that what each one said is kept.

Map: each chunk of each document gives a short summary and its key facts (names, figures,
dates, risks). Per document: a document of several chunks has its parts combined into one
summary with its facts. Reduce: the documents' summaries, each under its file name, are
combined (in rounds, when they do not fit one request) into the overall summary and key
points, whose length grows with the number of documents within the style's limits.

The result keeps a part per document (file name, summary, key facts), so no fact has to
survive being squeezed into a handful of overall points.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from backburner.errors import InvalidInput
from backburner.jobs.chunking import chunk_text, group_by_size
from backburner.jobs.concurrency import gather_all
from backburner.jobs.context import JobContext
from backburner.jobs.registry import JobRegistry, RetryPolicy
from backburner.providers.base import ModelRequest
from backburner.store.models import Document


class SummaryStyle(StrEnum):
    EXECUTIVE = "executive"
    DETAILED = "detailed"
    BULLETS = "bullets"


# Sentences and key points each style asks for of one document's summary, and the most its
# overall summary grows to as documents are added (evaluations check a summary keeps them).
STYLE_LENGTHS = {
    SummaryStyle.EXECUTIVE: (3, 5),
    SummaryStyle.DETAILED: (8, 8),
    SummaryStyle.BULLETS: (2, 10),
}
STYLE_LIMITS = {
    SummaryStyle.EXECUTIVE: (6, 15),
    SummaryStyle.DETAILED: (16, 30),
    SummaryStyle.BULLETS: (4, 40),
}
_STYLE_WORDS = {
    SummaryStyle.EXECUTIVE: "an executive summary",
    SummaryStyle.DETAILED: "a detailed summary",
    SummaryStyle.BULLETS: "a summary",
}
# Each document's own part: a short summary and its facts.
DOCUMENT_SENTENCES = 2
DOCUMENT_FACTS = 6


def overall_length(style: SummaryStyle, documents: int) -> tuple[int, int]:
    """Sentences and key points of the overall summary: the style's own for one document,
    one more point per further document and one more sentence per four, up to the style's
    limits."""
    sentences, points = STYLE_LENGTHS[style]
    most_sentences, most_points = STYLE_LIMITS[style]
    extra = max(0, documents - 1)
    return min(most_sentences, sentences + extra // 4), min(most_points, points + extra)


def style_instruction(style: SummaryStyle, documents: int = 1) -> str:
    sentences, points = overall_length(style, documents)
    return f"Write {_STYLE_WORDS[style]} of {sentences} sentences and {points} key points."


# One document's length (the quick path's summaries use it too).
STYLE_INSTRUCTIONS = {style: style_instruction(style) for style in SummaryStyle}

FACTS_INSTRUCTION = (
    f"Write a summary of {DOCUMENT_SENTENCES} sentences and list up to {DOCUMENT_FACTS} key "
    "facts: the names of people and organisations, figures with their units, dates, and "
    "risks, each fact a short sentence as the text states it."
)


class SummarizeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[str] = Field(min_length=1, max_length=200)
    summary_style: SummaryStyle = SummaryStyle.EXECUTIVE


class PartialSummary(BaseModel):
    summary: str
    key_points: list[str]


class FactSummary(BaseModel):
    """A chunk's or a document's summary and key facts (answers memoised before facts were
    asked for had `key_points`: read as the facts)."""

    summary: str
    key_facts: list[str] = Field(validation_alias=AliasChoices("key_facts", "key_points"))


class DocumentSummary(BaseModel):
    document_id: str
    filename: str
    summary: str
    key_facts: list[str]


class SummarizeOutput(BaseModel):
    summary: str
    key_points: list[str]
    # What each document said, in the order the documents were given.
    document_summaries: list[DocumentSummary] = Field(default_factory=list)
    documents: int
    chunks: int
    characters: int


def _request(ctx: JobContext, instruction: str, text: str, what: str) -> ModelRequest:
    return ModelRequest(
        model=ctx.model,
        instructions=(
            f"You summarise {what} for a busy reader. {instruction} "
            "Use only facts stated in the text."
        ),
        input=text,
    )


def render_facts(part: FactSummary) -> str:
    facts = "\n".join(f"- {fact}" for fact in part.key_facts)
    return f"{part.summary}\n{facts}"


def render_document(summary: DocumentSummary) -> str:
    """A document's part as the reduce step reads it: under its file name, so points can
    name their source."""
    facts = "\n".join(f"- {fact}" for fact in summary.key_facts)
    return f"From {summary.filename}:\n\n{summary.summary}\n{facts}"


def unique(items: list[str], most: int) -> list[str]:
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))[:most]


async def summarize_documents(ctx: JobContext, payload: SummarizeInput) -> SummarizeOutput:
    """Summarise documents: long ones are chunked, each chunk summarised with its facts,
    each document given its own part, then all combined."""
    documents = await ctx.documents(payload.document_ids)
    max_chars = ctx.settings.summarize_chunk_chars
    chunked = [(doc, chunk_text(doc.text, max_chars)) for doc in documents]
    total = sum(len(chunks) for _, chunks in chunked)
    if not total:
        raise InvalidInput("the documents contain no text to summarise")
    limit = asyncio.Semaphore(ctx.settings.max_parallel_model_calls)
    done = 0

    async def ask(key: str, instruction: str, text: str, what: str) -> FactSummary:
        async with limit:
            return await ctx.respond_json(key, _request(ctx, instruction, text, what), FactSummary)

    async def summarise_chunk(doc: Document, index: int, text: str) -> FactSummary:
        nonlocal done
        part = await ask(f"map/{doc.id}/{index}", FACTS_INSTRUCTION, text, "one part of a document")
        done += 1
        await ctx.progress(0.7 * done / total, f"read part {done} of {total}")
        return part

    async def summarise_document(doc: Document, chunks: list[str]) -> DocumentSummary:
        parts = await gather_all(summarise_chunk(doc, i, c) for i, c in enumerate(chunks))
        level = 0
        while len(parts) > 1:  # a long document: its parts combined, facts kept
            level += 1
            groups = group_by_size([render_facts(p) for p in parts], max_chars)
            parts = await gather_all(
                ask(
                    f"document/{doc.id}/{level}/{i}",
                    FACTS_INSTRUCTION,
                    "\n\n".join(group),
                    "summaries of the parts of one document",
                )
                for i, group in enumerate(groups)
            )
        return DocumentSummary(
            document_id=doc.id,
            filename=doc.filename,
            summary=parts[0].summary,
            key_facts=unique(parts[0].key_facts, DOCUMENT_FACTS * 2),
        )

    per_document = await gather_all(summarise_document(doc, chunks) for doc, chunks in chunked)
    await ctx.progress(0.8, f"summarised {len(per_document)} documents")
    overall = style_instruction(payload.summary_style, len(per_document))
    _, points = overall_length(payload.summary_style, len(per_document))
    texts = [render_document(summary) for summary in per_document]
    level = 0
    final: PartialSummary | None = None
    while final is None or len(texts) > 1:
        level += 1
        groups = group_by_size(texts, max_chars)

        async def combine(index: int, group: list[str], level: int = level) -> PartialSummary:
            async with limit:
                return await ctx.respond_json(
                    f"reduce/{level}/{index}",
                    _request(
                        ctx,
                        f"{overall} Name the document each point comes from.",
                        "\n\n".join(group),
                        "the summaries of several documents",
                    ),
                    PartialSummary,
                )

        combined = await gather_all(combine(i, g) for i, g in enumerate(groups))
        final = combined[0]
        texts = [f"{p.summary}\n" + "\n".join(f"- {k}" for k in p.key_points) for p in combined]
        await ctx.progress(0.9, f"combined summaries (round {level})")
    return SummarizeOutput(
        summary=final.summary,
        key_points=unique(final.key_points, points),
        document_summaries=per_document,
        documents=len(documents),
        chunks=total,
        characters=sum(len(doc.text) for doc in documents),
    )


def register(registry: JobRegistry) -> None:
    registry.job_type(
        "summarize_documents",
        description=(
            "Summarise 1-200 documents: each document's summary and key facts, and an "
            "overall summary and key points."
        ),
        expected_duration=30.0,
        timeout=3600.0,
        retry=RetryPolicy(max_attempts=5),
        referenced_documents=lambda payload: list(payload.document_ids),
        sequential_model_calls=3,  # map, then per document, then reduce
        # A model reads about 12,000 characters a call, 8 calls at a time, ~10 s a call.
        size_of=lambda payload, characters: float(
            sum(characters.get(doc_id, 0) for doc_id in payload.document_ids)
        ),
        size_unit="characters",
        seconds_per_unit=0.0001,
    )(summarize_documents)
