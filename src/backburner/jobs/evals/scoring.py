"""Scores for one item and for a whole evaluation run, from the expectations a dataset
item states: each kind of expectation turns on its metric, for any job type.

Per item (each in [0, 1], higher is better): key_fact_recall, rouge_l, length_fit,
fields_exact, tool_calls_exact, sections_present, accuracy (of its labelled records),
rubric (a model's grade, when the run asked for one), and `overall`, their mean. A job
that did not succeed scores 0 on every metric its item asks for.

Per run: the mean of each item metric over the items that ask for it; `completed`, the
share of items whose job succeeded; for labelled records pooled over the run: accuracy,
macro_f1, and calibration (`calibration_error`, `brier`: lower is better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backburner.jobs.evals import metrics
from backburner.jobs.evals.datasets import Expectations

# Lower is better for these; they are left out of `overall`.
LOWER_IS_BETTER = frozenset({"calibration_error", "brier"})


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one item's job."""

    item_id: str
    expected: Expectations
    succeeded: bool
    result: Any = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    grade: float | None = None  # the rubric grader's score, when graded


@dataclass(frozen=True)
class RunScores:
    scores: dict[str, float]
    details: dict[str, Any]


def text_of(value: Any) -> str:
    """Every string in a result, one per line (where facts are looked for)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(text_of(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(text_of(v) for v in value)
    return ""


def summary_text(result: Any) -> str:
    """A summary's prose: its `summary` and `key_points` when it has them, else all text."""
    if isinstance(result, Mapping) and isinstance(result.get("summary"), str):
        points = result.get("key_points")
        lines = [result["summary"], *(points if isinstance(points, list) else [])]
        return "\n".join(str(line) for line in lines)
    return text_of(result)


def labelled_records(result: Any) -> dict[str, tuple[str | None, float | None]]:
    """The records a result classified ({id: (label, confidence)}): the first list in it
    whose items have an `id` and a `label`."""
    lists = result.values() if isinstance(result, Mapping) else [result]
    for candidate in lists:
        if (
            isinstance(candidate, list)
            and candidate
            and all(isinstance(r, Mapping) and "id" in r and "label" in r for r in candidate)
        ):
            return {
                str(r["id"]): (
                    None if r["label"] is None else str(r["label"]),
                    float(r["confidence"])
                    if isinstance(r.get("confidence"), int | float)
                    else None,
                )
                for r in candidate
            }
    return {}


def records_of(outcome: ItemOutcome) -> list[metrics.Labelled]:
    wanted = outcome.expected.labels or {}
    given = labelled_records(outcome.result) if outcome.succeeded else {}
    return [
        metrics.Labelled(label, *given.get(record_id, (None, None)))
        for record_id, label in wanted.items()
    ]


def score_item(outcome: ItemOutcome) -> dict[str, float]:
    expected = outcome.expected
    result = outcome.result if outcome.succeeded else None
    scores: dict[str, float] = {}
    if expected.facts is not None:
        scores["key_fact_recall"] = (
            metrics.key_fact_recall(expected.facts, text_of(result)) if outcome.succeeded else 0.0
        )
    if expected.reference is not None:
        scores["rouge_l"] = metrics.rouge_l(summary_text(result), expected.reference)
    if expected.length is not None:
        scores["length_fit"] = _length_fit(result, expected) if outcome.succeeded else 0.0
    if expected.fields is not None:
        scores["fields_exact"] = (
            metrics.fields_exact(expected.fields, result) if outcome.succeeded else 0.0
        )
    if expected.tool_calls is not None:
        wanted = [call.model_dump() for call in expected.tool_calls]
        scores["tool_calls_exact"] = (
            metrics.tool_calls_exact(wanted, outcome.tool_calls) if outcome.succeeded else 0.0
        )
    if expected.sections is not None:
        sections = result.get("sections") if isinstance(result, Mapping) else None
        scores["sections_present"] = metrics.sections_present(
            expected.sections, sections if isinstance(sections, list) else []
        )
    if expected.labels:
        scores["accuracy"] = metrics.accuracy(records_of(outcome))
    if outcome.grade is not None:
        scores["rubric"] = outcome.grade
    scores["overall"] = sum(scores.values()) / len(scores) if scores else float(outcome.succeeded)
    return {name: round(value, 6) for name, value in scores.items()}


def _length_fit(result: Any, expected: Expectations) -> float:
    length = expected.length
    assert length is not None
    summary = result.get("summary", "") if isinstance(result, Mapping) else ""
    points = result.get("key_points", []) if isinstance(result, Mapping) else []
    return metrics.length_fit(
        metrics.sentence_count(str(summary)),
        len(points) if isinstance(points, list) else 0,
        length.sentences,
        length.points,
    )


def score_run(
    outcomes: Sequence[ItemOutcome], item_scores: Sequence[dict[str, float]]
) -> RunScores:
    """The run's metrics from its items' outcomes and their scores (in the same order)."""
    scores: dict[str, float] = {}
    names = sorted({name for item in item_scores for name in item})
    for name in names:
        values = [item[name] for item in item_scores if name in item]
        scores[name] = sum(values) / len(values)
    scores["completed"] = sum(o.succeeded for o in outcomes) / len(outcomes) if outcomes else 0.0
    details: dict[str, Any] = {}
    records = [record for outcome in outcomes for record in records_of(outcome)]
    if records:
        labels = sorted(
            {r.expected for r in records} | {r.predicted for r in records if r.predicted}
        )
        scores["accuracy"] = metrics.accuracy(records)
        scores["macro_f1"] = metrics.macro_f1(records, labels)
        scores["calibration_error"] = metrics.expected_calibration_error(records)
        scores["brier"] = metrics.brier_score(records)
        details["labels"] = labels
        details["per_label"] = {
            label: vars(figures) for label, figures in metrics.per_label(records, labels).items()
        }
        details["confusion"] = metrics.confusion(records, labels)
        details["records"] = len(records)
    return RunScores({name: round(value, 6) for name, value in scores.items()}, details)


@dataclass(frozen=True)
class Regression:
    item_id: str
    metric: str
    before: float
    after: float


def regressions(
    before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> list[Regression]:
    """Items (by id, in both runs) whose metrics fell from one run to the next, the
    largest fall first."""
    found = [
        Regression(item_id, name, old, new)
        for item_id, old_scores in before.items()
        if item_id in after
        for name, old in old_scores.items()
        if name in after[item_id]
        and (new := after[item_id][name]) < old - 1e-9
        and name not in LOWER_IS_BETTER
    ]
    return sorted(found, key=lambda r: (r.after - r.before, r.item_id, r.metric))


def deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Each metric both runs have: after minus before."""
    return {name: round(after[name] - before[name], 6) for name in before if name in after}


def cost_per_point(cost_usd: float | None, overall: float | None) -> float | None:
    """Dollars per point of quality (overall times 100): what a run paid for what it got."""
    if cost_usd is None or not overall:
        return None
    return cost_usd / (overall * 100)


@dataclass(frozen=True)
class Standing:
    """The latest scores of one job type and model, and their change since the run of
    that type and model before."""

    job_type: str
    model: str
    scores: dict[str, float]
    change: dict[str, float]


def standings(runs: Sequence[tuple[str, str, dict[str, float] | None]]) -> list[Standing]:
    """From scored runs oldest first, as (job type, model, scores): per type and model, the
    latest scores and their change against the one before."""
    latest: dict[tuple[str, str], dict[str, float]] = {}
    before: dict[tuple[str, str], dict[str, float]] = {}
    for job_type, model, scores in runs:
        if scores is None:
            continue
        key = (job_type, model)
        if key in latest:
            before[key] = latest[key]
        latest[key] = scores
    return [
        Standing(key[0], key[1], scores, deltas(before[key], scores) if key in before else {})
        for key, scores in sorted(latest.items())
    ]
