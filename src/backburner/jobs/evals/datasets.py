"""Golden datasets: JSON Lines files of items, each an input for a job type and what a good
answer contains. The same format serves the built-in types (in `evals/`) and yours.

    {"id": "acme-q3", "input": {"document_ids": ["$doc:0"], "summary_style": "executive"},
     "documents": [{"name": "acme.txt", "text": "..."}],
     "expected": {"facts": ["Acme Corp", "4.2 million"], "reference": "..."},
     "tags": ["long"]}

`$doc:N` in an input stands for the N-th of the item's documents, stored for the run's
owner before the job is created (the same text is one document however many runs use it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backburner.errors import FieldProblem, InvalidRequest

MAX_ITEMS = 500
MAX_DATASET_BYTES = 32 * 1024 * 1024
DOCUMENT_PLACEHOLDER = "$doc:"

Name = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")


class ToolCallExpected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)


class LengthExpected(BaseModel):
    """The summary's length the style asks for."""

    model_config = ConfigDict(extra="forbid")

    sentences: int | None = Field(default=None, ge=0, le=1000)
    points: int | None = Field(default=None, ge=0, le=1000)


class Expectations(BaseModel):
    """What a good answer contains; each kind given turns on its metric (docs/evals.md)."""

    model_config = ConfigDict(extra="forbid")

    # Key facts the answer must state (names, figures, dates, risks): key_fact_recall.
    facts: list[str] | None = Field(default=None, max_length=1000)
    # A reference answer text: rouge_l.
    reference: str | None = Field(default=None, max_length=200_000)
    # Exact values at dotted paths of the result: fields_exact.
    fields: dict[str, Any] | None = Field(default=None, max_length=1000)
    # The right label per record id (the result's records with "id" and "label").
    labels: dict[str, str] | None = Field(default=None, max_length=5000)
    # The tool calls a good run makes: tool_calls_exact.
    tool_calls: list[ToolCallExpected] | None = Field(default=None, max_length=100)
    # Section titles the result's `sections` must have, each with a body.
    sections: list[str] | None = Field(default=None, max_length=100)
    length: LengthExpected | None = None
    # What a model-graded rubric checks (only when a run asks for grading).
    rubric: str | None = Field(default=None, max_length=5000)


class DatasetDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    text: str = Field(min_length=1, max_length=5_000_000)


class DatasetItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Name
    input: dict[str, Any]
    expected: Expectations
    documents: list[DatasetDocument] = Field(default_factory=list, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=20)


Location = tuple[str | int, ...]
FILE: Location = ("dataset",)  # problems of a file name its lines, from 1
SENT: Location = ("body", "dataset_items")  # of items sent in a request, their index


@dataclass(frozen=True)
class Dataset:
    name: str
    sha256: str
    items: list[DatasetItem]
    # Where problems with an item are reported: `where` then the item's position, counted
    # from `first`.
    where: Location = FILE
    first: int = 1

    def position(self, index: int) -> Location:
        return (*self.where, index + self.first)


def _problem(where: Location, error: dict[str, Any]) -> FieldProblem:
    return FieldProblem(
        (*where, *error.get("loc", ())), str(error.get("msg")), str(error.get("type"))
    )


def parse_dataset(name: str, raw: bytes) -> Dataset:
    """A dataset from JSON Lines (blank lines skipped); InvalidRequest naming each bad
    line (1-based) and field."""
    if len(raw) > MAX_DATASET_BYTES:
        raise InvalidRequest(
            f"a dataset may be at most {MAX_DATASET_BYTES} bytes",
            errors=[FieldProblem(FILE, "too large")],
        )
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InvalidRequest("a dataset must be UTF-8 JSON Lines") from None
    numbered: list[tuple[int, Any]] = []
    problems: list[FieldProblem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            numbered.append((number, json.loads(line, parse_constant=_no_constant)))
        except ValueError as error:
            problems.append(FieldProblem((*FILE, number), f"not JSON: {error}"))
    if problems:
        raise InvalidRequest(f"dataset {name!r} is not valid", errors=problems[:50])
    return _validated(name, numbered, FILE, 1)


def parse_items(name: str, raw_items: list[Any]) -> Dataset:
    """A dataset sent in a request as a list of items (problems name their index)."""
    return _validated(name, list(enumerate(raw_items)), SENT, 0)


def _no_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _validated(name: str, numbered: list[tuple[int, Any]], where: Location, first: int) -> Dataset:
    items: list[DatasetItem] = []
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for number, raw_item in numbered:
        at = (*where, number)
        odd = _odd_text(raw_item)
        if odd is not None:
            problems.append(FieldProblem(at, odd))
            continue
        try:
            item = DatasetItem.model_validate(raw_item)
        except ValidationError as error:
            problems.extend(_problem(at, dict(e)) for e in error.errors()[:5])
            continue
        if item.id in seen:
            problems.append(FieldProblem((*at, "id"), "id given twice"))
        seen.add(item.id)
        problems.extend(_placeholder_problems(at, item))
        items.append(item)
    if not numbered:
        problems.append(FieldProblem(where, "the dataset has no items"))
    if len(numbered) > MAX_ITEMS:
        problems.append(FieldProblem(where, f"at most {MAX_ITEMS} items"))
    if problems:
        raise InvalidRequest(f"dataset {name!r} is not valid", errors=problems[:50])
    digest = hashlib.sha256()
    for item in items:
        digest.update(canonical_line(item.model_dump(mode="json", exclude_defaults=True)).encode())
        digest.update(b"\n")
    return Dataset(name, digest.hexdigest(), items, where, first)


def _odd_text(value: Any) -> str | None:
    """Why a value holds text no database can store (NUL, lone surrogates), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "holds a NUL character"
        if any("\ud800" <= char <= "\udfff" for char in value):
            return "holds an unpaired surrogate (not valid Unicode)"
        return None
    if isinstance(value, dict):
        return next((why for k, v in value.items() if (why := _odd_text(k) or _odd_text(v))), None)
    if isinstance(value, list):
        return next((why for v in value if (why := _odd_text(v))), None)
    return None


def _placeholder_problems(at: Location, item: DatasetItem) -> list[FieldProblem]:
    return [
        FieldProblem((*at, "input"), f"{ref} names no document of the item")
        for ref in _placeholders(item.input)
        if not ref[len(DOCUMENT_PLACEHOLDER) :].isdigit()
        or int(ref[len(DOCUMENT_PLACEHOLDER) :]) >= len(item.documents)
    ]


def _placeholders(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.startswith(DOCUMENT_PLACEHOLDER) else []
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in _placeholders(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _placeholders(v)]
    return []


def with_documents(value: Any, document_ids: list[str]) -> Any:
    """The input with each `$doc:N` replaced by the id the N-th document was stored as."""
    if isinstance(value, str) and value.startswith(DOCUMENT_PLACEHOLDER):
        return document_ids[int(value[len(DOCUMENT_PLACEHOLDER) :])]
    if isinstance(value, dict):
        return {k: with_documents(v, document_ids) for k, v in value.items()}
    if isinstance(value, list):
        return [with_documents(v, document_ids) for v in value]
    return value


def builtin_dataset_path(directory: Path, job_type: str) -> Path:
    return directory / f"{job_type}.jsonl"


def load_builtin(directory: Path | None, job_type: str) -> Dataset:
    """The golden dataset shipped for a type (`evals/<type>.jsonl`)."""
    if directory is None or not builtin_dataset_path(directory, job_type).is_file():
        raise InvalidRequest(
            f"no golden dataset for {job_type!r} here; send one (dataset_items or "
            "--dataset FILE) or set BACKBURNER_EVALS_DIR",
            errors=[FieldProblem(SENT, "required: this type has no built-in dataset")],
        )
    path = builtin_dataset_path(directory, job_type)
    return parse_dataset(path.name, path.read_bytes())


def canonical_line(item: dict[str, Any]) -> str:
    """How the shipped datasets are written: one sorted, compact JSON object per line."""
    return json.dumps(item, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
