"""The offline engine answers like a model would, deterministically, from the request."""

from __future__ import annotations

import json

from pydantic import BaseModel

from backburner.jobs.types.classify import batch_schema
from backburner.jobs.types.summarize import PartialSummary
from backburner.providers.base import (
    FunctionCallOutput,
    FunctionTool,
    JsonSchemaFormat,
    ModelRequest,
)
from backburner.providers.offline_engine import (
    answer,
    best_label,
    extractive_summary,
    split_sentences,
)

TEXT = (
    "Acme Corp reported record revenue of 4.2 million dollars in the third quarter. "
    "The growth came mainly from the new subscription product. "
    "Costs rose by 12 percent because of hiring. "
    "The board approved a new office in Berlin. "
    "Analysts expect the subscription growth to continue next year."
)


def structured(schema: dict[str, object], text: str = TEXT, **extra: object) -> ModelRequest:
    return ModelRequest(
        model="m", input=text, text_format=JsonSchemaFormat(name="x", json_schema=schema), **extra
    )


def test_same_request_same_answer() -> None:
    request = structured(PartialSummary.model_json_schema())
    assert answer(request) == answer(request)


def test_summary_keeps_sentence_order_and_asked_length() -> None:
    summary = extractive_summary(TEXT, 2)
    sentences = split_sentences(summary)
    assert len(sentences) == 2
    originals = split_sentences(TEXT)
    assert [originals.index(s) for s in sentences] == sorted(originals.index(s) for s in sentences)


def test_instructions_set_sentence_and_point_counts() -> None:
    request = structured(
        PartialSummary.model_json_schema(),
        instructions="Write a summary of 2 sentences and 3 key points.",
    )
    out = PartialSummary.model_validate_json(answer(request).output_text)
    assert len(split_sentences(out.summary)) == 2
    assert len(out.key_points) == 3
    assert all(point in TEXT for point in out.key_points)


def test_pydantic_schema_with_refs_is_filled_and_valid() -> None:
    class Point(BaseModel):
        title: str
        detail: str

    class Report(BaseModel):
        summary: str
        points: list[Point]
        count: int

    out = Report.model_validate_json(answer(structured(Report.model_json_schema())).output_text)
    assert out.summary
    assert out.points
    assert out.count == 4  # the first figure in the text, as an integer


def test_records_map_one_to_one_and_enums_are_scored() -> None:
    leads = [
        {"id": "a", "notes": "Budget approved, wants pricing asap"},
        {"id": "b", "notes": "Student, please unsubscribe me"},
        {"id": "c", "notes": "Interested, evaluating options next quarter"},
    ]
    request = structured(batch_schema(["hot", "warm", "cold"]), json.dumps(leads))
    got = json.loads(answer(request).output_text)["classifications"]
    assert [(c["id"], c["label"]) for c in got] == [("a", "hot"), ("b", "cold"), ("c", "warm")]
    assert all(0 <= c["confidence"] <= 1 and c["reason"] for c in got)


def test_no_signal_means_low_confidence_but_a_stable_pick() -> None:
    label, confidence = best_label(["alpha", "beta", "gamma"], "nothing relevant here")
    assert confidence == 0.33
    assert best_label(["alpha", "beta", "gamma"], "nothing relevant here")[0] == label


TOOL = FunctionTool(
    name="get_user_transactions",
    description="Fetch a user's transactions for a period.",
    parameters={
        "type": "object",
        "properties": {"user_id": {"type": "string"}, "period": {"type": "string"}},
        "required": ["user_id", "period"],
    },
)


def test_a_request_offering_tools_gets_a_call_with_arguments_from_the_text() -> None:
    request = ModelRequest(
        model="m", input="Report for user_id: u_42 period: 2026-10.", tools=[TOOL]
    )
    result = answer(request)
    assert result.output_text == ""
    (call,) = result.function_calls
    assert call.name == "get_user_transactions"
    assert json.loads(call.arguments) == {"user_id": "u_42", "period": "2026-10"}


def test_after_the_tool_output_the_model_answers() -> None:
    output = FunctionCallOutput(call_id="call_1", output=json.dumps({"total": 12.5}))
    request = ModelRequest(model="m", input=[output], tools=[TOOL])
    result = answer(request)
    assert not result.function_calls
    assert "12.5" in result.output_text


def test_output_over_max_tokens_is_incomplete() -> None:
    result = answer(ModelRequest(model="m", input=TEXT, max_output_tokens=5))
    assert result.incomplete_reason == "max_output_tokens"
    assert result.usage.output_tokens == 5


def test_strict_structured_outputs_only_for_schemas_openai_accepts() -> None:
    from pydantic import ConfigDict

    from backburner.jobs.types.classify import batch_schema
    from backburner.jobs.types.report import narrative_schema
    from backburner.providers.base import is_strict_compatible

    class Closed(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        tags: list[str]

    class Open(BaseModel):
        name: str
        note: str = ""

    assert is_strict_compatible(Closed.model_json_schema())
    assert not is_strict_compatible(Open.model_json_schema())
    assert not is_strict_compatible(PartialSummary.model_json_schema())
    assert is_strict_compatible(batch_schema(["a", "b"]))
    assert is_strict_compatible(narrative_schema())
