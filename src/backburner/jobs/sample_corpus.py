"""A deterministic corpus of annual reports, like a user's batch: each names its own
company, chief executive, revenue figure and main risk among pages of ordinary prose, so
what a summary kept can be counted (bench/facts.py, examples/150-pdfs, the tests).
Made up here; no network."""

from __future__ import annotations

import random
from dataclasses import dataclass

PREFIXES = [
    "Orion",
    "Bluefin",
    "Kestrel",
    "Nordlys",
    "Tamarind",
    "Quillfeather",
    "Sierra",
    "Halcyon",
    "Copperleaf",
    "Morrow",
    "Larkspur",
    "Verdant",
    "Pinecrest",
    "Aurora",
    "Saltmarsh",
    "Gilded",
    "Tidewater",
    "Brightwell",
    "Ironbark",
    "Cinder",
    "Juniper",
    "Marlow",
    "Ostara",
    "Redfern",
    "Solstice",
]
SUFFIXES = ["Dynamics", "Logistics", "Health", "Energy", "Foods", "Robotics", "Textiles"]
FIRST = ["Lena", "Marco", "Amara", "Ingrid", "Ravi", "Helen", "Diego", "Yuki", "Samuel", "Nadia"]
LAST = ["Hartmann", "Vidal", "Okafor", "Solberg", "Menon", "Ashdown", "Ramos", "Tanaka", "Petrova"]
RISKS = [
    "a shortage of semiconductor parts",
    "rising interest rates on its credit line",
    "a pending product liability lawsuit",
    "dependence on a single large customer",
    "currency swings in its export markets",
    "a cyber attack on its billing systems",
    "new emissions rules taking effect next year",
    "delays in a regulatory approval",
    "the loss of a key supplier",
    "labour shortages at its main site",
]
FILLER = [
    "The board met four times during the year and approved the annual plan.",
    "Staff training continued across all sites, with a focus on safety procedures.",
    "The company renewed its office lease on similar terms to the previous agreement.",
    "Management reviewed the pricing of its main products against local competitors.",
    "Customer satisfaction surveys were sent out at the end of each quarter.",
    "The finance team completed the migration to a new accounting system.",
    "Several long-standing contracts were extended for another two years.",
    "The annual general meeting is planned for the spring, as in earlier years.",
    "Suppliers were asked to confirm their delivery schedules for the coming season.",
    "The internal audit found no material weaknesses in the controls tested.",
    "A new intranet made it easier for staff to find policies and forms.",
    "Energy use in the offices fell after the lighting was replaced.",
]


@dataclass(frozen=True)
class Report:
    filename: str
    company: str
    text: str
    facts: list[str]  # company, revenue, main risk


def report(index: int, rng: random.Random, pages: int) -> Report:
    company = (
        f"{PREFIXES[index % len(PREFIXES)]} {SUFFIXES[index // len(PREFIXES) % len(SUFFIXES)]}"
    )
    if index >= len(PREFIXES) * len(SUFFIXES):
        company += f" {index // (len(PREFIXES) * len(SUFFIXES)) + 1}"
    ceo = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    revenue = f"{rng.randint(12, 980)}.{rng.randint(1, 9)} million euros"
    risk = RISKS[rng.randrange(len(RISKS))]
    facts_said = [
        f"{company} reported revenue of {revenue} for the year, led by chief executive {ceo}.",
        f"The main risk {company} named for the coming year is {risk}.",
    ]
    # About 4,300 characters a page, as the reports users send; the facts sit deep in it.
    sentences = [rng.choice(FILLER) for _ in range(pages * 55)]
    sentences.insert(len(sentences) // 3, facts_said[0])
    sentences.insert(2 * len(sentences) // 3, facts_said[1])
    paragraphs = [" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6)]
    text = f"{company} annual report\n\n" + "\n\n".join(paragraphs)
    filename = company.lower().replace(" ", "-") + "-annual-report.pdf"
    return Report(filename, company, text, [company, revenue, risk])


def reports(count: int, *, pages: int = 14, seed: int = 150) -> list[Report]:
    rng = random.Random(seed)
    return [report(index, rng, pages) for index in range(count)]
