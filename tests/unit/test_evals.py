"""Quality metrics, scoring and datasets: pure functions, checked against figures worked
out by hand (and scikit-learn's conventions where there is one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backburner.errors import InvalidRequest
from backburner.jobs.evals import metrics
from backburner.jobs.evals.datasets import (
    Expectations,
    load_builtin,
    parse_dataset,
    parse_items,
    with_documents,
)
from backburner.jobs.evals.scoring import (
    ItemOutcome,
    cost_per_point,
    regressions,
    score_item,
    score_run,
    standings,
)
from backburner.worker.schedules import check_cron, firing, next_slot
from tests.unit.test_notify_decisions import NOW

ROOT = Path(__file__).resolve().parents[2]


def test_facts_match_words_in_order_whatever_the_case_punctuation_or_separators() -> None:
    text = "Orion Dynamics (Stuttgart) reported revenue of 4,200.5 million euros; CEO: Lena."
    assert metrics.facts_found(
        ["orion dynamics", "4200.5 million euros", "Lena", "Dynamics Orion", "4,200"],
        text,
    ) == [True, True, True, False, False]
    assert metrics.key_fact_recall([], "anything") == 1.0
    assert metrics.key_fact_recall(["a b"], "") == 0.0


def test_rouge_l_is_the_maintained_scorer_and_zero_for_empty_text() -> None:
    assert metrics.rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert metrics.rouge_l("", "the cat") == 0.0
    assert 0 < metrics.rouge_l("the cat sat", "the cat sat on the mat") < 1


def test_length_fit_is_closeness_to_what_the_style_asked() -> None:
    assert metrics.sentence_count("One. Two! Three?") == 3
    assert metrics.length_fit(3, 5, 3, 5) == 1.0
    assert metrics.length_fit(6, 5, 3, 5) == 0.5  # twice the sentences: 0, points right: 1
    assert metrics.length_fit(0, 0, None, None) == 1.0


def test_fields_compare_numbers_to_the_cent_and_paths_into_lists() -> None:
    result = {"total": 0.1 + 0.2, "items": [{"id": "tx_1"}], "flag": True}
    assert metrics.fields_exact({"total": 0.3, "items.0.id": "tx_1", "flag": True}, result) == 1
    assert metrics.fields_exact({"total": 0.31, "items.3.id": "x", "flag": 1}, result) == 0
    assert metrics.fields_exact({}, result) == 1.0


def test_tool_calls_match_as_multisets_of_names_and_arguments() -> None:
    call = {"name": "fetch", "arguments": {"user": "u1", "period": "2026-01"}}
    reordered = {"name": "fetch", "arguments": {"period": "2026-01", "user": "u1"}}
    assert metrics.tool_calls_exact([call], [reordered]) == 1.0
    assert metrics.tool_calls_exact([call], [call, call]) == 0.0
    assert metrics.tool_calls_exact([call], []) == 0.0


def test_classification_figures_as_scikit_learn_gives_them() -> None:
    L = metrics.Labelled
    records = [
        L("hot", "hot", 0.9),
        L("hot", "warm", 0.6),
        L("warm", "warm", 0.8),
        L("cold", "hot", 0.7),
        L("cold", None),
    ]
    labels = ["cold", "hot", "warm"]
    assert metrics.accuracy(records) == 0.4
    figures = metrics.per_label(records, labels)
    # hot: tp 1, predicted 2, support 2 -> p 0.5 r 0.5; warm: tp 1, predicted 2, support 1
    # -> p 0.5 r 1.0 f1 2/3; cold: nothing right -> 0.
    assert (figures["hot"].precision, figures["hot"].recall) == (0.5, 0.5)
    assert figures["warm"].f1 == pytest.approx(2 / 3)
    assert figures["cold"].f1 == 0.0
    assert metrics.macro_f1(records, labels) == pytest.approx((0 + 0.5 + 2 / 3) / 3)
    assert metrics.confusion(records, labels)["cold"] == {"cold": 0, "hot": 1, "warm": 0, "none": 1}
    # Four records carry a confidence; bins 0.6, 0.7, 0.8, 0.9 hold one each.
    assert metrics.expected_calibration_error(records) == pytest.approx((0.1 + 0.6 + 0.2 + 0.7) / 4)
    assert metrics.brier_score(records) == pytest.approx(
        ((0.9 - 1) ** 2 + 0.6**2 + (0.8 - 1) ** 2 + 0.7**2) / 4
    )


def test_an_item_is_scored_on_what_its_expectations_ask() -> None:
    expected = Expectations(facts=["Acme"], fields={"n": 1}, sections=["Summary"])
    good = ItemOutcome(
        "i1",
        expected,
        succeeded=True,
        result={
            "summary": "Acme did well.",
            "n": 1,
            "sections": [{"title": "Summary", "body": "x"}],
        },
    )
    assert score_item(good) == {
        "key_fact_recall": 1.0,
        "fields_exact": 1.0,
        "sections_present": 1.0,
        "overall": 1.0,
    }
    failed = ItemOutcome("i2", expected, succeeded=False)
    assert score_item(failed)["overall"] == 0.0
    assert score_item(ItemOutcome("i3", Expectations(), succeeded=True)) == {"overall": 1.0}


def test_a_run_pools_labelled_records_and_lists_items_that_fell() -> None:
    expected = Expectations(labels={"a": "hot", "b": "cold"})
    outcome = ItemOutcome(
        "i1",
        expected,
        succeeded=True,
        result={
            "classifications": [
                {"id": "a", "label": "hot", "confidence": 0.9},
                {"id": "b", "label": "hot"},
            ]
        },
    )
    scores = [score_item(outcome)]
    run = score_run([outcome], scores)
    assert run.scores["accuracy"] == 0.5
    assert run.scores["completed"] == 1.0
    assert run.details["confusion"]["cold"]["hot"] == 1
    fell = regressions(
        {"i1": {"accuracy": 1.0, "brier": 0.1}}, {"i1": {"accuracy": 0.5, "brier": 0.9}}
    )
    assert [(r.item_id, r.metric) for r in fell] == [("i1", "accuracy")]  # brier: lower is better
    assert cost_per_point(1.0, 0.5) == 0.02
    assert cost_per_point(None, 0.5) is None
    assert cost_per_point(1.0, 0.0) is None


def test_standings_are_the_latest_run_per_type_and_model_against_the_one_before() -> None:
    found = standings(
        [
            ("t", "m1", {"overall": 0.5}),
            ("t", "m2", {"overall": 0.9}),
            ("t", "m1", {"overall": 0.75}),
            ("t", "m1", None),  # never scored
        ]
    )
    assert [(s.model, s.scores, s.change) for s in found] == [
        ("m1", {"overall": 0.75}, {"overall": 0.25}),
        ("m2", {"overall": 0.9}, {}),
    ]


def test_datasets_name_bad_lines_and_refuse_odd_text() -> None:
    good = {"id": "a", "input": {}, "expected": {}}
    lines = [json.dumps(good), "", "not json", json.dumps({**good, "id": "a\ud800"})]
    with pytest.raises(InvalidRequest) as refused:
        parse_dataset("d.jsonl", "\n".join(lines).encode("utf-8", "surrogatepass"))
    assert refused.value.errors[0].loc == ("dataset", 3)
    with pytest.raises(InvalidRequest) as odd:
        parse_dataset(
            "d.jsonl", (json.dumps(good) + "\n" + json.dumps({**good, "id": "x\u0000"})).encode()
        )
    assert odd.value.errors[0].loc == ("dataset", 2)
    assert "NUL" in odd.value.errors[0].message
    with pytest.raises(InvalidRequest):
        parse_dataset("d.jsonl", b"\xff\xfe")
    with pytest.raises(InvalidRequest):
        parse_dataset("d.jsonl", b"NaN")
    with pytest.raises(InvalidRequest):
        parse_items("sent", [])
    sent = parse_items("sent", [good])
    assert sent.position(0) == ("body", "dataset_items", 0)
    # The digest is of the items, not of how they were spelt.
    assert parse_dataset("d", (json.dumps(good, indent=None) + "\n").encode()).sha256 == sent.sha256


def test_document_placeholders_become_the_stored_ids() -> None:
    value = {"document_ids": ["$doc:1", "$doc:0"], "keep": "$docs"}
    assert with_documents(value, ["d0", "d1"]) == {"document_ids": ["d1", "d0"], "keep": "$docs"}
    item = {
        "id": "x",
        "input": {"document_ids": ["$doc:1"]},
        "expected": {},
        "documents": [{"name": "a.txt", "text": "A"}],
    }
    with pytest.raises(InvalidRequest):
        parse_items("sent", [item])


def test_the_shipped_datasets_are_what_the_generator_writes(tmp_path: Path) -> None:
    """The datasets are made by our own script, from our own code's figures: a change to
    that code (sample data, report arithmetic) shows up here first."""
    for job_type, least in (
        ("summarize_documents", 24),
        ("classify_leads", 30),
        ("generate_report", 20),
    ):
        dataset = load_builtin(ROOT / "evals", job_type)
        assert len(dataset.items) >= least
    before = {p.name: p.read_bytes() for p in (ROOT / "evals").glob("*.jsonl")}
    subprocess.run(
        [sys.executable, str(ROOT / "evals" / "make_datasets.py")], check=True, capture_output=True
    )
    after = {p.name: p.read_bytes() for p in (ROOT / "evals").glob("*.jsonl")}
    assert after == before


def test_cron_lines_are_checked_and_slots_computed_in_their_time_zone() -> None:
    for bad in ("61 * * * *", "* * * * * *", "", "every day", "0 3 * * *\u0000"):
        with pytest.raises(InvalidRequest):
            check_cron(bad)
    assert check_cron("@daily") == "@daily"
    start = NOW.replace(hour=2, minute=59, second=0, microsecond=0)
    assert next_slot("0 3 * * *", "UTC", start) == start.replace(hour=3, minute=0)
    # 03:00 in Berlin is 02:00 UTC in winter.
    berlin = next_slot("0 3 * * *", "Europe/Berlin", start.replace(month=1, day=10, hour=0))
    assert (berlin.hour, berlin.tzinfo is not None) == (2, True)
    with pytest.raises(InvalidRequest):
        next_slot("0 3 * * *", "Mars/Olympus", start)


def test_missed_slots_are_caught_up_once_with_the_latest() -> None:
    slot = NOW.replace(hour=3, minute=0, second=0, microsecond=0)
    on_time = firing("0 3 * * *", "UTC", slot, slot)
    assert (on_time.slot, on_time.missed) == (slot, 0)
    assert (on_time.next_at - slot).days == 1
    three_days_late = slot + (on_time.next_at - slot) * 3
    late = firing("0 3 * * *", "UTC", slot, three_days_late.replace(hour=5))
    assert late.missed == 3
    assert late.slot == three_days_late
    assert late.next_at > three_days_late.replace(hour=5)
