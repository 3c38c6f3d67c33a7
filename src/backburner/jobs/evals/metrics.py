"""Quality metrics: pure functions from what a job returned and what a good answer holds
to numbers in [0, 1] (higher is better), except where a docstring says otherwise."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

_NOT_WORD = re.compile(r"[^\w.]+")
_THOUSANDS = re.compile(r"(?<=\d)[,\u202f\u00a0'](?=\d{3}\b)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def normalised_words(text: str) -> list[str]:
    """Words for matching: Unicode-folded, case-folded, thousands separators dropped
    (`4,200` is `4200`), punctuation gone except a decimal point inside a number."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _THOUSANDS.sub("", folded)
    words = _NOT_WORD.sub(" ", folded).split()
    return [word.strip(".") for word in words if word.strip(".")]


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    width = len(needle)
    return width > 0 and any(
        list(haystack[start : start + width]) == list(needle)
        for start in range(len(haystack) - width + 1)
    )


def facts_found(facts: Iterable[str], text: str) -> list[bool]:
    """For each reference fact, whether its words appear together, in order, in the text."""
    words = normalised_words(text)
    return [_contains(words, normalised_words(fact)) for fact in facts]


def key_fact_recall(facts: Sequence[str], text: str) -> float:
    """Share of the reference facts found in the text (1.0 when there are none)."""
    if not facts:
        return 1.0
    found = facts_found(facts, text)
    return sum(found) / len(found)


@cache
def _rouge() -> RougeScorer:
    # Imported on the first score: rouge_score brings nltk (~0.3-0.5 s to import), which
    # every worker, API process and CLI call paid at start-up before any evaluation ran.
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure of the candidate against the reference (the `rouge-score`
    package, Porter-stemmed); 0.0 when either is empty."""
    if not candidate.strip() or not reference.strip():
        return 0.0
    return float(_rouge().score(reference, candidate)["rougeL"].fmeasure)


def sentence_count(text: str) -> int:
    stripped = text.strip()
    return len(_SENTENCE_END.split(stripped)) if stripped else 0


def closeness(actual: int, asked: int) -> float:
    """1.0 when `actual` is what was asked, falling linearly to 0 at twice or none of it."""
    if asked <= 0:
        return 1.0 if actual == 0 else 0.0
    return max(0.0, 1.0 - abs(actual - asked) / asked)


def length_fit(
    sentences: int, points: int, asked_sentences: int | None, asked_points: int | None
) -> float:
    """How well a summary's length keeps to the style asked: the mean closeness of its
    sentence and key-point counts to the asked ones (those asked only)."""
    parts = [
        closeness(actual, asked)
        for actual, asked in ((sentences, asked_sentences), (points, asked_points))
        if asked is not None
    ]
    return sum(parts) / len(parts) if parts else 1.0


def same_value(expected: Any, actual: Any) -> bool:
    """Equality for figures: numbers equal to the cent (0.1 + 0.2 is 0.3), other values
    exactly."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=0, abs_tol=0.005)
    return bool(expected == actual)


def value_at(document: Any, path: str) -> tuple[bool, Any]:
    """The value at a dotted path (`largest_expense.id`, `by_category.0.amount`)."""
    current = document
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def fields_exact(expected: Mapping[str, Any], result: Any) -> float:
    """Share of the expected fields (dotted paths) whose values the result matches."""
    if not expected:
        return 1.0
    hits = 0
    for path, wanted in expected.items():
        present, actual = value_at(result, path)
        hits += present and same_value(wanted, actual)
    return hits / len(expected)


def _canonical_call(call: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    arguments = call.get("arguments") or {}
    return str(call.get("name")), tuple(sorted((k, repr(v)) for k, v in arguments.items()))


def tool_calls_exact(
    expected: Sequence[Mapping[str, Any]], observed: Sequence[Mapping[str, Any]]
) -> float:
    """1.0 when the run made exactly the expected tool calls (names and arguments; order
    free, repeats counted), else 0.0."""
    return float(Counter(map(_canonical_call, expected)) == Counter(map(_canonical_call, observed)))


def sections_present(titles: Sequence[str], sections: Sequence[Mapping[str, Any]]) -> float:
    """Share of the expected section titles the result has, each with a non-empty body."""
    if not titles:
        return 1.0
    have = {
        str(section.get("title", "")).casefold()
        for section in sections
        if str(section.get("body", "")).strip()
    }
    return sum(title.casefold() in have for title in titles) / len(titles)


# --- Classification ----------------------------------------------------------------------


@dataclass(frozen=True)
class Labelled:
    """One classified record: the right label, the label given (None: none given) and the
    confidence reported with it."""

    expected: str
    predicted: str | None
    confidence: float | None = None

    @property
    def correct(self) -> bool:
        return self.predicted == self.expected


def accuracy(records: Sequence[Labelled]) -> float:
    return sum(r.correct for r in records) / len(records) if records else 0.0


@dataclass(frozen=True)
class LabelFigures:
    precision: float
    recall: float
    f1: float
    support: int


def per_label(records: Sequence[Labelled], labels: Iterable[str]) -> dict[str, LabelFigures]:
    """Precision, recall and F1 per label (0.0 where undefined, as scikit-learn's
    `zero_division=0`), with the number of records whose right label it is."""
    figures: dict[str, LabelFigures] = {}
    for label in labels:
        true_pos = sum(r.expected == label and r.predicted == label for r in records)
        predicted = sum(r.predicted == label for r in records)
        support = sum(r.expected == label for r in records)
        precision = true_pos / predicted if predicted else 0.0
        recall = true_pos / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        figures[label] = LabelFigures(precision, recall, f1, support)
    return figures


def macro_f1(records: Sequence[Labelled], labels: Iterable[str]) -> float:
    """The unweighted mean F1 over the labels that are some record's right label."""
    figures = [f for f in per_label(records, labels).values() if f.support]
    return sum(f.f1 for f in figures) / len(figures) if figures else 0.0


def confusion(records: Sequence[Labelled], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Counts by right label (rows) and label given (columns; "none" when none given)."""
    columns = [*labels, "none"]
    matrix = {row: dict.fromkeys(columns, 0) for row in labels}
    for r in records:
        row = matrix.setdefault(r.expected, dict.fromkeys(columns, 0))
        column = r.predicted if r.predicted in matrix[r.expected] else "none"
        row[column] += 1
    return matrix


def expected_calibration_error(records: Sequence[Labelled], bins: int = 10) -> float:
    """How far reported confidence is from accuracy (lower is better): records binned by
    confidence, each bin's |accuracy - mean confidence| weighted by its share."""
    rated = [r for r in records if r.confidence is not None]
    if not rated:
        return 0.0
    binned: dict[int, list[Labelled]] = {}
    for r in rated:
        confidence = min(max(float(r.confidence or 0.0), 0.0), 1.0)
        binned.setdefault(min(int(confidence * bins), bins - 1), []).append(r)
    error = 0.0
    for members in binned.values():
        mean_confidence = sum(float(r.confidence or 0.0) for r in members) / len(members)
        error += len(members) / len(rated) * abs(accuracy(members) - mean_confidence)
    return error


def brier_score(records: Sequence[Labelled]) -> float:
    """Mean squared gap between the confidence of the label given and whether it was right
    (lower is better; records without a confidence are left out)."""
    rated = [r for r in records if r.confidence is not None]
    if not rated:
        return 0.0
    return sum((float(r.confidence or 0.0) - r.correct) ** 2 for r in rated) / len(rated)
