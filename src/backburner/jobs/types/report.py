"""`generate_report`: a spending report whose data the model fetches through a tool.

The model calls `get_user_transactions` (a "GPT action" answered by our code) and writes the
narrative; the figures are computed here from the same data, because arithmetic is ours to
get right, not the model's.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backburner.jobs.context import JobContext
from backburner.jobs.registry import JobRegistry, RetryPolicy
from backburner.jobs.sample_data import PERIOD_PATTERN, get_user_transactions
from backburner.providers.base import FunctionTool, JsonSchemaFormat, ModelRequest

TOOL_NAME = "get_user_transactions"
TOOL_PARAMETERS = {
    "type": "object",
    "properties": {
        "user_id": {"type": "string", "description": "The user whose transactions to fetch."},
        "period": {"type": "string", "description": "YYYY, YYYY-MM or YYYY-Qn."},
    },
    "required": ["user_id", "period"],
    "additionalProperties": False,
}


class ReportInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    period: str = Field(pattern=PERIOD_PATTERN, examples=["2026-10", "2026-Q3", "2026"])


class Narrative(BaseModel):
    headline: str
    summary: str
    highlights: list[str]


class CategoryTotal(BaseModel):
    category: str
    amount: float
    transactions: int


class Transaction(BaseModel):
    id: str
    date: str
    description: str
    category: str
    amount: float


class ReportSection(BaseModel):
    title: str
    body: str


class ReportOutput(BaseModel):
    user_id: str
    period: str
    currency: str
    total_spent: float
    total_income: float
    net: float
    transaction_count: int
    by_category: list[CategoryTotal]
    largest_expense: Transaction | None
    headline: str
    summary: str
    highlights: list[str]
    sections: list[ReportSection]


def narrative_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "headline": {"type": "string"},
            "summary": {"type": "string"},
            "highlights": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["headline", "summary", "highlights"],
        "additionalProperties": False,
    }


def spending_by_category(transactions: list[dict[str, Any]]) -> list[CategoryTotal]:
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for tx in transactions:
        if tx["amount"] < 0:
            totals[tx["category"]] += -tx["amount"]
            counts[tx["category"]] += 1
    return sorted(
        (
            CategoryTotal(category=c, amount=round(a, 2), transactions=counts[c])
            for c, a in totals.items()
        ),
        key=lambda t: (-t.amount, t.category),
    )


async def generate_report(ctx: JobContext, payload: ReportInput) -> ReportOutput:
    """A spending report for one user and period, from data the model fetches by tool."""

    async def fetch(user_id: str, period: str) -> dict[str, Any]:
        return get_user_transactions(user_id, period)

    request = ModelRequest(
        model=ctx.model,
        instructions=(
            "You are a personal finance analyst. Fetch the transactions with "
            f"{TOOL_NAME}, then write a headline, a 3 sentences summary and 4 key points "
            "of highlights about where the money went."
        ),
        input=f"Write the spending report for user_id: {payload.user_id} period: {payload.period}.",
        tools=[
            FunctionTool(
                name=TOOL_NAME,
                description="Fetch a user's transactions for a period.",
                parameters=TOOL_PARAMETERS,
            )
        ],
        text_format=JsonSchemaFormat(name="report_narrative", json_schema=narrative_schema()),
    )
    narrative = await ctx.respond_json("narrative", request, Narrative, tools={TOOL_NAME: fetch})
    await ctx.progress(0.8, "narrative written")
    data: dict[str, Any] = await ctx.step("transactions", fetch, payload.user_id, payload.period)
    transactions = data["transactions"]
    spent = round(-sum(t["amount"] for t in transactions if t["amount"] < 0), 2)
    income = round(sum(t["amount"] for t in transactions if t["amount"] > 0), 2)
    categories = spending_by_category(transactions)
    expenses = [t for t in transactions if t["amount"] < 0]
    largest = min(expenses, key=lambda t: t["amount"]) if expenses else None
    sections = [
        ReportSection(title="Summary", body=narrative.summary),
        ReportSection(
            title="Spending by category",
            body="\n".join(
                f"{c.category}: {c.amount:.2f} {data['currency']} ({c.transactions} transactions)"
                for c in categories
            ),
        ),
        ReportSection(title="Highlights", body="\n".join(f"- {h}" for h in narrative.highlights)),
    ]
    return ReportOutput(
        user_id=payload.user_id,
        period=payload.period,
        currency=data["currency"],
        total_spent=spent,
        total_income=income,
        net=round(income - spent, 2),
        transaction_count=len(transactions),
        by_category=categories,
        largest_expense=Transaction(**largest) if largest else None,
        headline=narrative.headline,
        summary=narrative.summary,
        highlights=narrative.highlights,
        sections=sections,
    )


def register(registry: JobRegistry) -> None:
    registry.job_type(
        "generate_report",
        description="A spending report; the model fetches the data via a tool call.",
        expected_duration=15.0,
        timeout=1800.0,
        retry=RetryPolicy(max_attempts=5),
        sequential_model_calls=2,  # the tool call, then the answer
    )(generate_report)
