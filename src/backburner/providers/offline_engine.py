"""A deterministic, CPU-only stand-in for a language model. No downloads, no network.

It answers the same requests a real model gets, from the request's own text:
- plain text: an extractive summary (sentences ranked by word frequency);
- a JSON Schema (structured output): the schema filled from the text — strings from the
  summary, arrays from the top-ranked sentences or from the records given in the input,
  enums by scoring each allowed value against the text, numbers from figures found in it;
- tools offered and no tool output yet: a call to the tool that fits best, with arguments
  read from the text.

Every function here is pure: same request, same answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from backburner.providers.base import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    ModelRequest,
    Usage,
)

STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "also",
        "may",
        "might",
        "must",
        "shall",
        "us",
    ]
)

# Cue words for labels people commonly classify leads and texts with, so the offline engine
# gives sensible answers for them; any other label is scored by its own words.
LABEL_CUES: dict[str, tuple[str, ...]] = {
    "hot": (
        "budget",
        "approved",
        "ready",
        "buy",
        "purchase",
        "urgent",
        "asap",
        "signed",
        "contract",
        "demo",
        "pricing",
        "quote",
        "decision",
        "immediately",
        "trial",
    ),
    "warm": (
        "interested",
        "considering",
        "evaluating",
        "maybe",
        "follow",
        "later",
        "next",
        "quarter",
        "exploring",
        "curious",
        "webinar",
        "downloaded",
    ),
    "cold": (
        "unsubscribe",
        "never",
        "unresponsive",
        "bounced",
        "no",
        "not",
        "student",
        "competitor",
        "spam",
        "uninterested",
        "declined",
        "closed",
    ),
    "positive": ("great", "good", "love", "excellent", "happy", "thanks", "amazing"),
    "negative": ("bad", "poor", "hate", "terrible", "angry", "refund", "broken", "complaint"),
    "neutral": ("okay", "fine", "question", "information", "inquiry"),
}

SUMMARY_WORDS = (
    "summary",
    "description",
    "overview",
    "abstract",
    "body",
    "text",
    "content",
    "narrative",
    "analysis",
    "commentary",
)
REASON_WORDS = ("reason", "rationale", "explanation", "justification")
TITLE_WORDS = ("title", "headline", "heading", "subject")
SCORE_WORDS = ("confidence", "score", "probability", "certainty")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*[-*•\d])")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_SENTENCE_COUNT = re.compile(r"(\d+)\s+sentences?", re.IGNORECASE)
_ITEM_COUNT = re.compile(
    r"(\d+)\s+(?:key points|points|bullets|items|key facts|facts)", re.IGNORECASE
)


# --- Text ------------------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """The text's sentences, each once (repeats add nothing to a summary). A heading is
    not a sentence to quote: a line ending in a colon ("From minutes.pdf:"), or a short
    line of its own with no closing punctuation that is not a list item ("Orion Dynamics
    annual report")."""
    cleaned = (
        " ".join(part.split())
        for raw in _SENTENCE_END.split(text)
        if (part := raw.strip(" \t\n-*•"))
        and _WORD.search(part.lower())
        and not part.endswith(":")
        and not _is_title(raw)
    )
    return list(dict.fromkeys(cleaned))


_CLOSING = tuple(".!?\"')]…")
HEADING_WORDS = 8  # a line this short, unpunctuated, on its own: a heading


def _is_title(raw: str) -> bool:
    line = raw.strip()
    return (
        "\n" not in line
        and not line.startswith(("-", "*", "•"))
        and not line.endswith(_CLOSING)
        and not line[:1].isdigit()
        and len(line.split()) <= HEADING_WORDS
    )


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


def stem(word: str) -> str:
    """A crude stem (first five letters) so "pricing" meets "price"-like words."""
    return word[:5]


_FIGURE = re.compile(r"\d")
_NAME = re.compile(r"(?<=[\s(])[A-Z][a-z]+")


def fact_weight(sentence: str) -> float:
    """A sentence stating facts ranks higher: one with figures (amounts, dates,
    percentages) and one naming people or organisations (capitalised words past its
    first) each gain as much as its most frequent words can give it."""
    return 0.5 * bool(_FIGURE.search(sentence)) + 0.5 * bool(_NAME.search(sentence))


def rank_sentences(sentences: list[str]) -> list[int]:
    """Indices of sentences, best first: frequent content words, facts (figures and
    names), a nudge for early ones."""
    freq = Counter(stem(w) for s in sentences for w in content_words(s))
    if not freq:
        return list(range(len(sentences)))
    top = max(freq.values())

    def score(index: int) -> float:
        words = [stem(w) for w in content_words(sentences[index])]
        if not words:
            return 0.0
        facts = fact_weight(sentences[index])
        # Summed in sorted order: a set's order changes with the hash seed, and so would the
        # float sum and which sentence wins a near tie.
        weight = sum(freq[w] / top for w in sorted(set(words))) / math.sqrt(len(words))
        return weight + facts + (0.15 if index == 0 else 0.0)

    return sorted(range(len(sentences)), key=lambda i: (-score(i), i))


def top_sentences(text: str, count: int) -> list[str]:
    sentences = split_sentences(text)
    return [sentences[i] for i in rank_sentences(sentences)[:count]]


def extractive_summary(text: str, sentence_count: int) -> str:
    """The `sentence_count` best sentences, in the order the text gives them."""
    sentences = split_sentences(text)
    chosen = sorted(rank_sentences(sentences)[:sentence_count])
    return " ".join(sentences[i] for i in chosen)


def figures(text: str) -> list[float]:
    found = []
    for match in _NUMBER.findall(text):
        try:
            found.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return found


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by its inputs: deterministic tie-breaking."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def score_label(label: str, text: str) -> float:
    """How strongly `text` speaks for `label`: its words and cue words found in the text."""
    # All words of the text count here: "not" and "no" are strong cues for some labels.
    words = {stem(w) for w in _WORD.findall(text.lower())}
    label_words = content_words(label.replace("_", " ").replace("-", " "))
    cues = [c for w in label_words for c in LABEL_CUES.get(w, ())]
    hits = sum(1.0 for w in label_words if stem(w) in words)
    hits += sum(0.6 for c in cues if stem(c) in words)
    return hits


def best_label(labels: list[Any], text: str) -> tuple[Any, float]:
    """The label the text fits best, and a confidence in [0, 1]."""
    scores = [(score_label(str(label), text), label) for label in labels]
    total = sum(s for s, _ in scores)
    if total == 0:
        # No signal at all: pick deterministically and say we are unsure.
        pick = labels[int(stable_fraction(text, *map(str, labels)) * len(labels))]
        return pick, round(1 / len(labels), 2)
    top_score, top_label = max(scores, key=lambda pair: pair[0])
    return top_label, round(min(0.99, 0.5 + 0.5 * top_score / total), 2)


# --- What a request says -----------------------------------------------------------------


def request_text(request: ModelRequest) -> str:
    """The text the model is asked about: input messages and tool outputs, as prose."""
    parts = []
    for item in request.input_items():
        if isinstance(item, FunctionCallOutput):
            parts.append(json_as_prose(item.output))
        else:
            parts.append(item.content)
    return "\n\n".join(parts)


def json_as_prose(raw: str) -> str:
    """Tool output is usually JSON; turn records into sentences a summariser can rank."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return "\n".join(_prose_lines(value))


def _prose_lines(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
        lines = []
        if scalars:
            body = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in scalars.items())
            lines.append(f"{prefix}{body}.".strip().capitalize())
        for k, v in value.items():
            if isinstance(v, dict | list):
                lines.extend(_prose_lines(v, f"{k.replace('_', ' ')}: "))
        return lines
    if isinstance(value, list):
        return [line for item in value for line in _prose_lines(item, prefix)]
    return [f"{prefix}{value}."]


def find_records(request: ModelRequest) -> list[dict[str, Any]]:
    """JSON objects listed in the input (e.g. a batch of leads), one per item to answer."""
    for item in request.input_items():
        text = item.output if isinstance(item, FunctionCallOutput) else item.content
        for candidate in _json_candidates(text):
            if (
                isinstance(candidate, list)
                and candidate
                and all(isinstance(x, dict) for x in candidate)
            ):
                return candidate
    return []


def _json_candidates(text: str) -> list[Any]:
    candidates = []
    start = text.find("[")
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
            candidates.append(value)
            break
        except json.JSONDecodeError:
            start = text.find("[", start + 1)
    return candidates


def named_value(text: str, name: str) -> str | None:
    """A value written as `name: value` or `name=value` in the text."""
    pattern = re.compile(rf"\b{re.escape(name)}\b\s*[:=]\s*\"?([^\s\",;]+)", re.IGNORECASE)
    match = pattern.search(text)
    # A value at the end of a sentence carries its full stop; it is not part of the value.
    return match.group(1).rstrip(".:)") or None if match else None


def has_tool_output(request: ModelRequest) -> bool:
    return any(isinstance(item, FunctionCallOutput) for item in request.input_items())


def wanted_count(instructions: str | None, pattern: re.Pattern[str], default: int) -> int:
    match = pattern.search(instructions or "")
    return max(1, int(match.group(1))) if match else default


# --- Filling a JSON Schema ------------------------------------------------------------------


@dataclass
class SchemaFiller:
    """Fills a JSON Schema from a text; records (JSON objects in the input) map one-to-one
    onto the first array of objects, each filled from its own record's text."""

    text: str
    instructions: str | None
    defs: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    def fill(
        self,
        schema: dict[str, Any],
        name: str = "",
        record: dict[str, Any] | None = None,
        scores: dict[str, float] | None = None,
    ) -> Any:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            value, confidence = best_label(schema["enum"], self._text_for(record))
            if scores is not None:
                scores["last"] = confidence
            return value
        kind = schema.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind == "object":
            return self._fill_object(schema, record)
        if kind == "array":
            return self._fill_array(schema, name, record)
        if kind in ("number", "integer"):
            return self._fill_number(schema, name, record, scores, integer=kind == "integer")
        if kind == "boolean":
            words = set(content_words(self._text_for(record)))
            return any(w in words for w in content_words(name.replace("_", " ")))
        if kind == "null":
            return None
        return self._fill_string(schema, name, record, scores)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.defs[schema["$ref"].rsplit("/", 1)[-1]]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [s for s in schema[key] if self._resolve(s).get("type") != "null"]
                return self._resolve(options[0] if options else schema[key][0])
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self._resolve(schema["allOf"][0])
        return schema

    def _text_for(self, record: dict[str, Any] | None) -> str:
        if record is None:
            return self.text
        return " ".join(str(v) for v in record.values() if not isinstance(v, dict | list))

    def _fill_object(self, schema: dict[str, Any], record: dict[str, Any] | None) -> Any:
        scores: dict[str, float] = {}
        properties: dict[str, Any] = schema.get("properties", {})
        # Enums first, so a confidence field can report how sure the choice was.
        order = sorted(properties, key=lambda p: 0 if "enum" in self._resolve(properties[p]) else 1)
        filled = {p: self.fill(properties[p], p, record, scores) for p in order}
        return {p: filled[p] for p in properties}

    def _fill_array(
        self, schema: dict[str, Any], name: str, record: dict[str, Any] | None
    ) -> list[Any]:
        items = self._resolve(schema.get("items", {"type": "string"}))
        if items.get("type") == "object" and self.records and record is None:
            return [self.fill(items, name, rec) for rec in self.records]
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", 50))  # as many as asked, as a model gives
        count = min(high, max(low, wanted_count(self.instructions, _ITEM_COUNT, 5)))
        sentences = top_sentences(self._text_for(record), count)
        if items.get("type") == "object":
            return [self.fill(items, name, {"text": s}) for s in sentences]
        return [self.fill(items, name, {"text": s}) if "enum" in items else s for s in sentences]

    def _fill_number(
        self,
        schema: dict[str, Any],
        name: str,
        record: dict[str, Any] | None,
        scores: dict[str, float] | None,
        *,
        integer: bool,
    ) -> float | int:
        value: float
        if record is not None and isinstance(record.get(name), int | float):
            value = float(record[name])
        elif any(word in name.lower() for word in SCORE_WORDS):
            value = (scores or {}).get("last", 0.5)
        else:
            found = figures(self._text_for(record))
            value = found[0] if found else float(schema.get("minimum", 0))
        if "minimum" in schema:
            value = max(value, float(schema["minimum"]))
        if "maximum" in schema:
            value = min(value, float(schema["maximum"]))
        return round(value) if integer else value

    def _fill_string(
        self,
        schema: dict[str, Any],
        name: str,
        record: dict[str, Any] | None,
        scores: dict[str, float] | None,
    ) -> str:
        lowered = name.lower()
        text = self._text_for(record)
        if record is not None and name in record and not isinstance(record[name], dict | list):
            value = str(record[name])
        elif any(word in lowered for word in REASON_WORDS):
            value = self._reason(text)
        elif any(word in lowered for word in TITLE_WORDS):
            first = top_sentences(text, 1)
            value = first[0][:80] if first else name
        elif any(word in lowered for word in SUMMARY_WORDS) or record is None:
            count = wanted_count(self.instructions, _SENTENCE_COUNT, 3)
            value = extractive_summary(text, count) or text[:200]
        else:
            value = named_value(text, name) or (top_sentences(text, 1) or [text[:120]])[0]
        if "maxLength" in schema:
            value = value[: int(schema["maxLength"])]
        return value

    def _reason(self, text: str) -> str:
        words = sorted(set(content_words(text)), key=lambda w: (-len(w), w))[:4]
        if not words:
            return "Little information to go on."
        return "Based on: " + ", ".join(words) + "."


def fill_schema(schema: dict[str, Any], request: ModelRequest, text: str) -> Any:
    filler = SchemaFiller(
        text=text,
        instructions=request.instructions,
        defs=schema.get("$defs", {}),
        records=find_records(request),
    )
    return filler.fill(schema)


# --- Tools -------------------------------------------------------------------------------------


def choose_tool(tools: list[FunctionTool], text: str) -> FunctionTool:
    words = {stem(w) for w in content_words(text)}

    def fit(tool: FunctionTool) -> float:
        own = content_words(f"{tool.name.replace('_', ' ')} {tool.description}")
        return sum(1 for w in own if stem(w) in words)

    return max(tools, key=lambda t: (fit(t), -tools.index(t)))


def tool_arguments(tool: FunctionTool, text: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    properties: dict[str, Any] = tool.parameters.get("properties", {})
    for name, prop in properties.items():
        if "enum" in prop:
            arguments[name] = best_label(prop["enum"], text)[0]
            continue
        raw = named_value(text, name)
        if raw is None:
            if "default" in prop:
                arguments[name] = prop["default"]
            continue
        kind = prop.get("type")
        if kind == "integer" and raw.lstrip("-").isdigit():
            arguments[name] = int(raw)
        elif kind == "number":
            found = figures(raw)
            arguments[name] = found[0] if found else raw
        else:
            arguments[name] = raw
    return arguments


# --- The answer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineAnswer:
    output_text: str
    function_calls: list[FunctionCall]
    usage: Usage
    incomplete_reason: str | None = None


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def answer(request: ModelRequest) -> EngineAnswer:
    """What the engine says to `request`."""
    text = request_text(request)
    input_tokens = estimate_tokens((request.instructions or "") + text)
    if request.tools and not has_tool_output(request):
        tool = choose_tool(request.tools, (request.instructions or "") + "\n" + text)
        arguments = json.dumps(tool_arguments(tool, (request.instructions or "") + "\n" + text))
        call_id = (
            "call_" + hashlib.sha256(f"{tool.name}{arguments}{text}".encode()).hexdigest()[:24]
        )
        call = FunctionCall(call_id=call_id, name=tool.name, arguments=arguments)
        return EngineAnswer(
            "", [call], Usage(input_tokens=input_tokens, output_tokens=estimate_tokens(arguments))
        )
    if request.text_format is not None:
        output = json.dumps(fill_schema(request.text_format.json_schema, request, text))
    else:
        count = wanted_count(request.instructions, _SENTENCE_COUNT, 3)
        output = extractive_summary(text, count)
    output_tokens = estimate_tokens(output)
    limit = request.max_output_tokens
    if limit is not None and output_tokens > limit:
        return EngineAnswer(
            output[: limit * 4],
            [],
            Usage(input_tokens=input_tokens, output_tokens=limit),
            incomplete_reason="max_output_tokens",
        )
    return EngineAnswer(output, [], Usage(input_tokens=input_tokens, output_tokens=output_tokens))
