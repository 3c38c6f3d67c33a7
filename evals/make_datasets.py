"""Writes the golden datasets of the built-in job types (evals/*.jsonl), deterministically.

    python evals/make_datasets.py

Every text here is made up by this script (fictional companies, people and figures); the
report figures are computed by Backburner's own code from its sample data, so a change to
that code that alters a figure shows up as a failed item. Change the templates, run the
script, and commit the datasets with the change.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from backburner.jobs.evals.datasets import canonical_line  # noqa: E402
from backburner.jobs.sample_corpus import RISKS  # noqa: E402
from backburner.jobs.sample_data import get_user_transactions  # noqa: E402
from backburner.jobs.types.report import TOOL_NAME, spending_by_category  # noqa: E402
from backburner.jobs.types.summarize import SummaryStyle, overall_length  # noqa: E402

# --- summarize_documents ----------------------------------------------------------------

COMPANIES = [
    ("Orion Dynamics", "Lena Hartmann", "industrial sensors", "Stuttgart"),
    ("Bluefin Logistics", "Marco Vidal", "cold-chain freight", "Valencia"),
    ("Kestrel Health", "Amara Okafor", "remote patient monitoring", "Lagos"),
    ("Nordlys Energy", "Ingrid Solberg", "offshore wind maintenance", "Bergen"),
    ("Tamarind Foods", "Ravi Menon", "packaged spice blends", "Kochi"),
    ("Quillfeather Press", "Helen Ashdown", "academic publishing", "Oxford"),
    ("Sierra Vista Water", "Diego Ramos", "desalination plants", "Antofagasta"),
    ("Halcyon Robotics", "Yuki Tanaka", "warehouse robots", "Osaka"),
    ("Copperleaf Bank", "Samuel Reyes", "small-business lending", "Denver"),
    ("Morrow Textiles", "Fatima Zahra", "recycled fabrics", "Casablanca"),
    ("Larkspur Games", "Tomasz Nowak", "mobile strategy games", "Krakow"),
    ("Verdant Agritech", "Chloe Martin", "vertical farming", "Lyon"),
    ("Pinecrest Insurance", "Owen Gallagher", "crop insurance", "Cork"),
    ("Aurora Microchips", "Priya Nair", "low-power chips", "Bangalore"),
    ("Saltmarsh Shipping", "Erik Lindqvist", "short-sea container routes", "Gothenburg"),
    ("Gilded Fern Hotels", "Isabel Costa", "boutique hotels", "Porto"),
    ("Tidewater Cement", "Kwame Mensah", "low-carbon cement", "Accra"),
    ("Brightwell Pharma", "Nadia Petrova", "generic antibiotics", "Sofia"),
    ("Ironbark Mining", "Jack Thompson", "lithium extraction", "Perth"),
    ("Cinder Cloud", "Mei Chen", "managed databases", "Singapore"),
]
FILLER = [
    "The board met four times during the period and approved the annual plan.",
    "Staff training continued across all sites, with a focus on safety procedures.",
    "The company renewed its office lease on similar terms to the previous agreement.",
    "Management reviewed the pricing of its main products against local competitors.",
    "Customer satisfaction surveys were sent out at the end of each quarter.",
    "The finance team completed the migration to a new accounting system.",
    "Several long-standing contracts were extended for another two years.",
    "The annual general meeting is planned for the spring, as in earlier years.",
]


def company_report(index: int, rng: random.Random, long: bool) -> tuple[str, list[str], str]:
    name, ceo, business, city = COMPANIES[index % len(COMPANIES)]
    revenue = f"{rng.randint(12, 980)}.{rng.randint(1, 9)} million euros"
    growth = f"{rng.randint(2, 41)} percent"
    risk = RISKS[(index * 3) % len(RISKS)]
    quarter = f"Q{index % 4 + 1} 2026"
    facts = [name, ceo, revenue, growth, risk]
    body = [
        f"{name} is a {business} company based in {city}, led by chief executive {ceo}.",
        f"In {quarter} {name} reported revenue of {revenue}, growth of {growth} on the "
        "year before.",
        f"The main risk named by {ceo} is {risk}.",
    ]
    filler_count = 400 if long else 3
    filler = [FILLER[(index + k) % len(FILLER)] for k in range(filler_count)]
    # The facts sit among ordinary sentences; in long reports they are spread through
    # several chunks, so a summary keeps them only if the map step kept them.
    text_parts = [body[0], *filler[: filler_count // 3], body[1], *filler[filler_count // 3 :]]
    text_parts.insert(len(text_parts) - 1, body[2])
    reference = (
        f"{name}, a {business} company in {city} led by {ceo}, reported revenue of "
        f"{revenue} in {quarter}, up {growth}. Its main risk is {risk}."
    )
    return " ".join(text_parts), facts, reference


def summarize_items() -> list[dict[str, Any]]:
    rng = random.Random(20261130)
    items: list[dict[str, Any]] = []
    styles = list(SummaryStyle)
    for index in range(30):
        style = styles[index % len(styles)]
        if index < 16:
            kind, count, long = "single", 1, False
        elif index < 24:
            kind, count, long = "several", 3, False
        else:
            kind, count, long = "long", 1, True  # longer than one chunk: map then reduce
        documents, facts, references = [], [], []
        for offset in range(count):
            company = index * 3 + offset if count > 1 else index
            text, doc_facts, reference = company_report(company, rng, long)
            name = COMPANIES[company % len(COMPANIES)][0]
            documents.append({"name": f"{name.lower().replace(' ', '-')}.txt", "text": text})
            facts.extend(doc_facts)
            references.append(reference)
        sentences, points = overall_length(style, count)
        items.append(
            {
                "id": f"summary-{index + 1:02d}-{kind}",
                "input": {
                    "document_ids": [f"$doc:{n}" for n in range(count)],
                    "summary_style": style.value,
                },
                "documents": documents,
                "expected": {
                    "facts": facts,
                    "reference": " ".join(references),
                    "length": {"sentences": sentences, "points": points},
                    "rubric": "Names every company with its revenue, growth and main risk, "
                    "and states nothing the documents do not.",
                },
                "tags": [kind, style.value],
            }
        )
    return items


# --- classify_leads ---------------------------------------------------------------------

LEADS: list[tuple[str, str, str, str]] = [
    # (notes, right label, difficulty, title)
    ("Budget approved, wants a quote this week and a contract by Friday.", "hot", "easy", "CTO"),
    ("Asked for pricing and a demo for 40 seats; decision next week.", "hot", "easy", "VP Sales"),
    ("Signed the trial agreement and wants to purchase immediately.", "hot", "easy", "COO"),
    ("Urgent: ready to buy before the end of the month, budget in place.", "hot", "easy", "CFO"),
    (
        "Requested a quote for the enterprise plan, procurement already involved.",
        "hot",
        "easy",
        "Head of IT",
    ),
    (
        "Wants a demo asap, their current vendor contract ends in two weeks.",
        "hot",
        "easy",
        "Director",
    ),
    ("Downloaded the whitepaper and is curious about the product.", "warm", "easy", "Analyst"),
    ("Attended the webinar, interested, will follow up next quarter.", "warm", "easy", "Manager"),
    (
        "Considering options, evaluating us against two others later this year.",
        "warm",
        "easy",
        "Engineer",
    ),
    ("Exploring tools for next year, maybe a pilot after the summer.", "warm", "easy", "Team lead"),
    ("Interested in the API, asked to follow up after their reorg.", "warm", "easy", "Architect"),
    ("Curious about integrations, considering a call next month.", "warm", "easy", "Product owner"),
    ("Asked to unsubscribe from all e-mails.", "cold", "easy", "Intern"),
    ("E-mails bounced; the contact left the company.", "cold", "easy", "Unknown"),
    ("Student researching for a thesis, no purchase planned.", "cold", "easy", "Student"),
    (
        "Works for a competitor, asked detailed questions about our roadmap.",
        "cold",
        "easy",
        "Engineer",
    ),
    ("Declined the offer and said they are not interested.", "cold", "easy", "Buyer"),
    ("Unresponsive after five attempts; never opened an e-mail.", "cold", "easy", "Manager"),
    # Harder: cues point the wrong way, or several ways at once.
    (
        "Not ready to buy: no budget until next year, but keen to stay in touch.",
        "warm",
        "hard",
        "Director",
    ),
    ("Contract signed with another vendor last month; no need for now.", "cold", "hard", "Buyer"),
    (
        "Said the pricing is fine and the decision is theirs alone; wants the order form.",
        "hot",
        "hard",
        "Owner",
    ),
    (
        "Never used a tool like this before, wants to start a paid plan today.",
        "hot",
        "hard",
        "Founder",
    ),
    (
        "Evaluating, but the trial ends Friday and they asked how to pay by card.",
        "hot",
        "hard",
        "Manager",
    ),
    (
        "Closed their old account; interested in coming back after the merger next quarter.",
        "warm",
        "hard",
        "VP",
    ),
    ("Quote requested by an intern for a school project.", "cold", "hard", "Intern"),
    ("Demo booked, then cancelled twice; now unresponsive.", "cold", "hard", "Manager"),
    (
        "Spam filter caught our e-mails; they wrote back asking for a follow up call.",
        "warm",
        "hard",
        "Analyst",
    ),
    (
        "Budget approved last year was spent elsewhere; exploring again later.",
        "warm",
        "hard",
        "CFO",
    ),
    ("Their procurement sent a purchase order number.", "hot", "hard", "Procurement"),
    ("Replied 'no thanks' to the newsletter but booked a pricing call.", "hot", "hard", "Director"),
    # Ambiguous: people would disagree; the label is the team's call, written down.
    (
        "Interested and has budget, but the decision maker is on leave for two months.",
        "warm",
        "ambiguous",
        "Manager",
    ),
    ("Wants a trial; no budget mentioned.", "warm", "ambiguous", "Engineer"),
    ("Asked for pricing, then said they would think about it.", "warm", "ambiguous", "Owner"),
    ("Big company, senior title, no reply yet.", "cold", "ambiguous", "SVP"),
    ("Happy customer of a partner, asked for an introduction.", "warm", "ambiguous", "Director"),
    (
        "Contract renewal talk with an existing customer, expanding to a second team.",
        "hot",
        "ambiguous",
        "Head of Ops",
    ),
]
FIRST_NAMES = ["Ana", "Ben", "Chen", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jia"]
LEAD_COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark"]


def classify_items() -> list[dict[str, Any]]:
    items = []
    for index, (notes, label, difficulty, title) in enumerate(LEADS, start=1):
        lead_id = f"lead-{index:03d}"
        items.append(
            {
                "id": f"classify-{index:03d}-{difficulty}",
                "input": {
                    "leads": [
                        {
                            "id": lead_id,
                            "name": f"{FIRST_NAMES[index % len(FIRST_NAMES)]} Example",
                            "company": LEAD_COMPANIES[index % len(LEAD_COMPANIES)],
                            "title": title,
                            "notes": notes,
                        }
                    ],
                    "labels": ["hot", "warm", "cold"],
                },
                "expected": {"labels": {lead_id: label}},
                "tags": [difficulty],
            }
        )
    return items


# --- generate_report --------------------------------------------------------------------

USERS = ["u_1001", "u_1002", "u_2040", "u_3177", "u_5150", "u_7321"]
PERIODS = ["2026-01", "2026-02", "2026-Q1", "2026-Q2", "2025-11", "2025"]


def report_items() -> list[dict[str, Any]]:
    items = []
    for index in range(24):
        user = USERS[index % len(USERS)]
        period = PERIODS[(index // len(USERS) + index) % len(PERIODS)]
        data = get_user_transactions(user, period)
        transactions = data["transactions"]
        spent = round(-sum(t["amount"] for t in transactions if t["amount"] < 0), 2)
        income = round(sum(t["amount"] for t in transactions if t["amount"] > 0), 2)
        categories = spending_by_category(transactions)
        largest = min((t for t in transactions if t["amount"] < 0), key=lambda t: t["amount"])
        items.append(
            {
                "id": f"report-{index + 1:02d}-{user}-{period}",
                "input": {"user_id": user, "period": period},
                "expected": {
                    "fields": {
                        "currency": data["currency"],
                        "total_spent": spent,
                        "total_income": income,
                        "net": round(income - spent, 2),
                        "transaction_count": len(transactions),
                        "largest_expense.id": largest["id"],
                        "largest_expense.amount": largest["amount"],
                        "by_category.0.category": categories[0].category,
                        "by_category.0.amount": categories[0].amount,
                    },
                    "tool_calls": [
                        {"name": TOOL_NAME, "arguments": {"user_id": user, "period": period}}
                    ],
                    "sections": ["Summary", "Spending by category", "Highlights"],
                    "rubric": "The summary and highlights agree with the figures and name "
                    "the largest spending category.",
                },
                "tags": ["year" if len(period) == 4 else "quarter" if "Q" in period else "month"],
            }
        )
    return items


def write(name: str, items: list[dict[str, Any]]) -> None:
    path = HERE / f"{name}.jsonl"
    path.write_text("".join(canonical_line(item) + "\n" for item in items), encoding="utf-8")
    print(f"{path.name}: {len(items)} items")


def main() -> None:
    write("summarize_documents", summarize_items())
    write("classify_leads", classify_items())
    write("generate_report", report_items())


if __name__ == "__main__":
    main()
