"""Splitting long text into chunks a model call can take, without losing any of it."""

from __future__ import annotations

import re

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Chunks of at most `max_chars`, cut at paragraph, then sentence, then word
    boundaries; together they hold every word of `text` in order (never truncated)."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    pieces = [p for p in _split_to_fit(text.strip(), max_chars) if p]
    return _pack(pieces, max_chars, "\n\n")


def _pack(pieces: list[str], max_chars: int, separator: str) -> list[str]:
    """Join consecutive pieces (each at most `max_chars`) greedily into chunks that stay
    within `max_chars`."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}{separator}{piece}" if current else piece
        if len(candidate) <= max_chars:
            current = candidate
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def _split_to_fit(text: str, max_chars: int) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    for pattern in (_PARAGRAPH, _SENTENCE):
        parts = [p.strip() for p in pattern.split(text) if p.strip()]
        if len(parts) > 1:
            return [small for part in parts for small in _split_to_fit(part, max_chars)]
    return _split_words(text, max_chars)


def _split_words(text: str, max_chars: int) -> list[str]:
    # A "word" longer than a chunk is cut hard into chunk-sized parts.
    parts = [
        word[start : start + max_chars]
        for word in text.split()
        for start in range(0, len(word), max_chars)
    ]
    return _pack(parts, max_chars, " ")


def group_by_size(texts: list[str], max_chars: int, separator: str = "\n\n") -> list[list[str]]:
    """Consecutive groups whose joined length stays within `max_chars` (a group holds at
    least one text, and at least two when the inputs are many, so a reduce always shrinks)."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for text in texts:
        extra = len(text) + (len(separator) if current else 0)
        if current and size + extra > max_chars and len(current) >= 2:
            groups.append(current)
            current, size = [], 0
            extra = len(text)
        current.append(text)
        size += extra
    if current:
        groups.append(current)
    return groups
