"""The dashboard's decisions, apart from any page: how a result is drawn, which widget a
schema gets and what a posted form means, chart geometry, how durations read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backburner.errors import FieldProblem
from backburner.jobs.registry import build_registry
from backburner.store.models import new_id
from backburner.store.ops import first_id_at, percentiles, windows
from backburner.ui.charts import grouped_bars, lines, nice_ceiling, stacked_bars
from backburner.ui.formats import duration
from backburner.ui.forms import form_fields, job_options, option_problem, payload_from_form
from backburner.ui.results import result_blocks


def test_a_summary_reads_as_facts_text_and_a_list() -> None:
    blocks = result_blocks(
        {"summary": "Long text. " * 20, "key_points": ["a", "b"], "documents": 2, "chunks": 3}
    )
    assert [b.kind for b in blocks] == ["facts", "text", "list"]
    assert blocks[0].value == [("Documents", "2"), ("Chunks", "3")]
    assert blocks[1].label == "Summary"
    assert blocks[2].label == "Key points"
    assert blocks[2].value == ["a", "b"]


def test_records_become_a_table_that_knows_its_number_columns() -> None:
    [table] = result_blocks(
        {"classifications": [{"id": "a", "label": "hot", "confidence": 0.9}, {"id": "b"}]}
    )
    assert table.kind == "table"
    assert table.columns == ["Id", "Label", "Confidence"]
    assert table.value == [["a", "hot", 0.9], ["b", None, None]]
    assert table.numeric == [False, False, False]  # a missing cell is not a number
    [counts] = result_blocks({"label_counts": {"hot": 2, "cold": 1}})
    assert counts.numeric == [False, True]


def test_title_and_body_records_are_sections_and_deep_values_stay_json() -> None:
    sections, deep = result_blocks(
        {
            "sections": [{"title": "Spending", "body": "Up 3%."}],
            "nested": [{"id": 1, "tags": {"a": [1, 2]}}, "not a record"],
        }
    )
    assert sections.kind == "sections"
    assert sections.value == [("Spending", "Up 3%.")]
    assert deep.kind == "json"
    assert '"tags"' in deep.value


def test_records_with_parts_of_their_own_are_a_section_each_under_their_name() -> None:
    [documents] = result_blocks(
        {
            "document_summaries": [
                {"filename": "acme.pdf", "summary": "Acme grew.", "key_facts": ["Acme", "4 M"]},
                {"summary": "No name.", "key_facts": []},
            ]
        }
    )
    assert (documents.kind, documents.label) == ("group", "Document summaries")
    acme, unnamed = documents.value
    assert (acme.kind, acme.label, unnamed.label) == ("group", "acme.pdf", "#2")
    assert [(b.kind, b.label) for b in acme.value] == [
        ("facts", ""),
        ("list", "Key facts"),
    ]


def test_blocks_follow_the_output_models_order_not_the_databases() -> None:
    stored = {"label_counts": {"hot": 1}, "classifications": [{"id": "a"}], "extra": "x" * 99}
    blocks = result_blocks(stored, ["classifications", "label_counts"])
    assert [b.label for b in blocks] == ["Classifications", "Label counts", "Extra"]


def test_a_result_that_is_not_an_object_still_shows() -> None:
    assert [b.kind for b in result_blocks(["x", "y"])] == ["list"]
    assert result_blocks(None) == []
    assert result_blocks({"empty": [], "none": None}) == []


def schema_fields(name: str) -> dict[str, object]:
    registry = build_registry(entry_points_too=False)
    schema = registry.get(name).input_model.model_json_schema()
    return {f.name: f for f in form_fields(schema)}


def test_each_builtin_type_gets_fitting_widgets() -> None:
    summarize = schema_fields("summarize_documents")
    assert summarize["document_ids"].widget == "documents"  # type: ignore[attr-defined]
    assert summarize["document_ids"].label == "Documents"  # type: ignore[attr-defined]
    style = summarize["summary_style"]
    assert style.widget == "select"  # type: ignore[attr-defined]
    assert style.choices == ("executive", "detailed", "bullets")  # type: ignore[attr-defined]
    assert style.label == "Summary style"  # type: ignore[attr-defined]
    classify = schema_fields("classify_leads")
    assert classify["labels"].widget == "lines"  # type: ignore[attr-defined]
    assert classify["leads"].widget == "json"  # type: ignore[attr-defined]
    report = schema_fields("generate_report")
    assert report["user_id"].attrs["pattern"] == "^[A-Za-z0-9_.-]+$"  # type: ignore[attr-defined]
    assert report["period"].default == "2026-10"  # type: ignore[attr-defined]
    noop = schema_fields("noop")
    assert noop["sleep_seconds"].widget == "number"  # type: ignore[attr-defined]
    assert noop["sleep_seconds"].attrs == {"min": "0", "max": "86400", "step": "any"}  # type: ignore[attr-defined]


def test_a_posted_form_becomes_a_payload_or_says_which_field_is_wrong() -> None:
    schema = {
        "properties": {
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "extra": {"type": "object"},
            "loud": {"type": "boolean"},
            "note": {"type": "string"},
            "document_ids": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["count", "document_ids"],
    }
    fields = form_fields(schema)
    payload, problems = payload_from_form(
        fields,
        {"count": "3", "ratio": "", "tags": "a\n\n b \n", "extra": '{"k": 1}', "loud": "on"},
        {"document_ids": ["d1", "d2"]},
    )
    assert problems == []
    assert payload == {
        "count": 3,
        "tags": ["a", "b"],
        "extra": {"k": 1},
        "loud": True,
        "document_ids": ["d1", "d2"],
    }
    payload, problems = payload_from_form(fields, {"count": "2.5", "extra": "{"}, {})
    assert [p.loc for p in problems] == [("count",), ("extra",)]
    assert problems[0] == FieldProblem(("count",), "must be a whole number")
    assert payload["document_ids"] == []  # required: left for the type to refuse
    _, problems = payload_from_form(fields, {}, {"document_ids": ["d"]})
    assert problems == [FieldProblem(("count",), "is required", "missing")]


def test_stacked_bars_stack_and_scale_to_a_round_ceiling() -> None:
    chart = stacked_bars("Jobs", "jobs", ["a", "b"], {"ok": [3.0, 0.0], "failed": [1.0, 0.0]})
    assert [r.tip for r in chart.rects] == ["a ok: 3 jobs", "a failed: 1 jobs"]
    ok, failed = chart.rects
    assert failed.y + failed.height == pytest.approx(ok.y)  # failed sits on top of ok
    assert chart.ticks[-1][1] == "5"
    assert not chart.empty
    assert stacked_bars("Jobs", "jobs", ["a"], {"ok": [0.0]}).empty


def test_lines_and_groups_place_every_value() -> None:
    chart = lines("Cost", "USD", ["1", "2", "3"], {"cost": [0.0, 0.5, 1.0]})
    assert len(chart.lines[0].points.split()) == 3
    grouped = grouped_bars("Latency", "s", ["p50", "p99"], {"wait": [1.0, 2.0], "run": [3, 0]})
    assert len(grouped.rects) == 3  # a zero draws nothing


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (0.03, 0.05), (1, 1), (7, 10), (120, 200), (2400, 2500)]
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "\u2014"),
        (3.21, "3.2 s"),
        (45, "45 s"),
        (600, "10 min"),
        (7500, "2 h 5 min"),
        (90000, "1 d 1 h"),
        (-5, "0.0 s"),
    ],
)
def test_durations_read_as_people_say_them(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_percentiles_and_windows() -> None:
    found = percentiles([float(n) for n in range(1, 101)])
    assert found is not None
    assert (found.p50, found.count) == (pytest.approx(50.5), 100)
    assert found.p99 == pytest.approx(99.01)
    assert percentiles([]) is None
    hour, day = windows(datetime(2026, 11, 29, 20, 37, 12, tzinfo=UTC))
    assert hour.since == datetime(2026, 11, 29, 19, 40, tzinfo=UTC)
    assert hour.start_of(hour.buckets - 1) == datetime(2026, 11, 29, 20, 35, tzinfo=UTC)
    assert day.start_of(day.buckets - 1) == datetime(2026, 11, 29, 20, 0, tzinfo=UTC)


def test_the_first_id_of_a_moment_bounds_the_ids_made_then() -> None:
    made = new_id()
    now = datetime.now(UTC)
    assert first_id_at(now - timedelta(milliseconds=5)) <= made
    assert made < first_id_at(now + timedelta(milliseconds=5))


def test_job_options_from_the_form() -> None:
    options, problems = job_options(
        {"job.priority": "-3", "job.deadline_hours": "2.5", "job.notify_email": "a@x.io; b@y.io,"}
    )
    assert problems == []
    assert options == {
        "priority": -3,
        "deadline_seconds": 9000.0,
        "notify": {"email": ["a@x.io", "b@y.io"]},
    }
    assert job_options({"job.priority": "", "job.notify_email": " "}) == ({}, [])
    _, problems = job_options({"job.priority": "high", "job.deadline_hours": "soon"})
    assert [p.loc for p in problems] == [("job.priority",), ("job.deadline_hours",)]
    assert option_problem(("notify", "email", 0), "Value error, not an e-mail address") == (
        FieldProblem(("job.notify_email",), "not an e-mail address")
    )
