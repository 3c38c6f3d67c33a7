"""Reflowing a PDF page's text into paragraphs (backburner.jobs.parsing.reflow)."""

from __future__ import annotations

from backburner.jobs.parsing import reflow

WIDE = "x" * 60


def test_wrapped_lines_become_one_paragraph_and_figures_stay_in_their_sentence() -> None:
    page = (
        "Orion Dynamics annual report\n"
        "Revenue for the year reached the highest level the company has recorded, at\n"
        "204.4 million euros, while the main risk remained currency swings in its export\n"
        "markets.\n"
    )
    assert reflow(page) == (
        "Orion Dynamics annual report\n\n"
        "Revenue for the year reached the highest level the company has recorded, at "
        "204.4 million euros, while the main risk remained currency swings in its export "
        "markets."
    )


def test_list_items_blank_lines_and_hyphens() -> None:
    page = (
        f"{WIDE} long-\n"
        "standing contracts were renewed.\n"
        "\n"
        "Risks:\n"
        "- supply costs\n"
        "2. currency swings\n"
    )
    assert reflow(page).split("\n\n") == [
        f"{WIDE} long-standing contracts were renewed.",
        "Risks:",
        "- supply costs",
        "2. currency swings",
    ]


def test_nothing_in_nothing_out() -> None:
    assert reflow("") == ""
    assert reflow(" \n\n \n") == ""
