"""The input guard's checks as plain functions: what is refused, and where it is said to be
(the first bad value in document order, a key before its value)."""

from __future__ import annotations

import json

import pytest

from backburner.api.inputs import MAX_DEPTH, Refused, parsed_json, text_problem


def refusal(document: str) -> tuple[int, str, tuple[str | int, ...]]:
    with pytest.raises(Refused) as refused:
        parsed_json(document.encode("utf-8", "surrogatepass"))
    return refused.value.status, refused.value.detail, refused.value.loc


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("", None),
        ("caf\u00e9 \u4e2d\u6587 \U0001f600", None),
        ("a\x00b", "holds a NUL character"),
        ("\ud800", "holds an unpaired surrogate (not valid Unicode)"),
        ("x\udc00y", "holds an unpaired surrogate (not valid Unicode)"),
        (
            "\ud83d\ude00",
            "holds an unpaired surrogate (not valid Unicode)",
        ),  # a pair, as code points
        ("\u00e9\x00\ud800", "holds a NUL character"),
    ],
)
def test_text_that_cannot_be_stored_is_named(text: str, problem: str | None) -> None:
    assert text_problem(text) == problem


def test_a_clean_document_is_answered_as_parsed() -> None:
    document = {
        "jobs": [{"type": "noop", "payload": {"echo": i, "t": "\u00e9"}} for i in range(50)]
    }
    assert parsed_json(json.dumps(document).encode()) == document


@pytest.mark.parametrize(
    ("document", "loc", "why"),
    [
        ('"\\u0000"', (), "NUL"),
        ('{"a": "\\ud800"}', ("a",), "surrogate"),
        ('{"\\ud800": 1}', ("\ud800",), "surrogate"),
        ('{"ok": 1, "list": [1, "x", {"deep": "\\u0000"}]}', ("list", 2, "deep"), "NUL"),
        # The first in document order: the key before its value, earlier items first.
        ('{"k\\u0000": "\\ud800"}', ("k\x00",), "NUL"),
        ('[["fine", "\\ud800"], "\\u0000"]', (0, 1), "surrogate"),
        ('{"jobs": [{"type": "noop"}, {"type": "no\\u0000op"}]}', ("jobs", 1, "type"), "NUL"),
    ],
)
def test_a_bad_text_is_refused_where_it_is(
    document: str, loc: tuple[str | int, ...], why: str
) -> None:
    status, detail, where = refusal(document)
    assert (status, where) == (422, loc)
    assert why in detail


def test_nesting_is_refused_at_the_first_value_past_the_limit() -> None:
    fine = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parsed_json(fine.encode()) is not None
    too_deep = '{"a": "ok", "b": ' + "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH + "}"
    status, detail, where = refusal(too_deep)
    assert status == 422
    assert "nested more than" in detail
    assert where == ("b", *([0] * (MAX_DEPTH - 1)))
    # A bad text before the depth in document order is what is said.
    both = '{"a": "\\u0000", "b": ' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "}"
    assert refusal(both)[2] == ("a",)


def test_nesting_far_past_the_parser_is_refused_not_crashed() -> None:
    status, detail, _ = refusal("[" * 100_000 + "]" * 100_000)
    assert (status, "nested more than" in detail) == (422, True)
