"""Chunking never loses text and never exceeds its limit."""

from __future__ import annotations

import pytest

from backburner.jobs.chunking import chunk_text, group_by_size

PARAGRAPHS = "\n\n".join(
    " ".join(f"Sentence {p}.{s} has several words in it." for s in range(12)) for p in range(9)
)


@pytest.mark.parametrize("limit", [40, 200, 1000, 10_000])
def test_chunks_fit_and_keep_every_word_in_order(limit: int) -> None:
    chunks = chunk_text(PARAGRAPHS, limit)
    assert all(len(chunk) <= limit for chunk in chunks)
    assert " ".join(chunks).split() == PARAGRAPHS.split()


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("Hello there.", 100) == ["Hello there."]


def test_a_word_longer_than_a_chunk_is_cut_not_dropped() -> None:
    word = "x" * 25
    chunks = chunk_text(f"start {word} end", 10)
    assert all(len(c) <= 10 for c in chunks)
    assert "".join(chunks).replace(" ", "") == f"start{word}end"


def test_paragraph_boundaries_are_preferred() -> None:
    text = "A" * 50 + "\n\n" + "B" * 50
    assert chunk_text(text, 60) == ["A" * 50, "B" * 50]


def test_grouping_shrinks_and_keeps_order() -> None:
    texts = [f"t{i}" * 10 for i in range(10)]
    groups = group_by_size(texts, 50)
    assert [t for g in groups for t in g] == texts
    assert len(groups) < len(texts)
    # Even when every text is over the limit, groups hold two, so a reduce always shrinks.
    assert all(len(g) >= 2 for g in group_by_size(["x" * 100] * 4, 50))


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        chunk_text("abc", 0)
