"""A small deterministic source of user transactions, so `generate_report` runs offline.

The same (user, period) always gives the same transactions; replace `get_user_transactions`
with a call to your own systems to report on real data.
"""

from __future__ import annotations

import calendar
import hashlib
import random
import re
from datetime import date
from typing import Any

PERIOD_PATTERN = r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$"

_MERCHANTS: dict[str, list[tuple[str, float, float]]] = {
    # category: (description, low, high) in EUR
    "groceries": [("Fresh Market", 18, 140), ("Corner Grocer", 5, 45), ("BioLaden", 12, 90)],
    "dining": [("Trattoria Roma", 25, 95), ("Noodle Bar", 12, 35), ("Cafe Central", 4, 16)],
    "transport": [("City Transit pass", 49, 49), ("Taxi", 12, 48), ("Fuel station", 40, 90)],
    "utilities": [("Power & Light", 60, 140), ("Fibre internet", 39, 39), ("Mobile plan", 25, 25)],
    "entertainment": [("Cinema", 11, 30), ("Streaming service", 13, 13), ("Concert hall", 40, 120)],
    "travel": [("Rail tickets", 35, 180), ("Hotel Lindenhof", 90, 320), ("Airline", 120, 480)],
    "shopping": [("Bookshop", 9, 60), ("Electronics store", 30, 600), ("Clothing", 25, 150)],
}
_RENT = ("Rent", 1150.0)
_SALARY = ("Salary", 4200.0)


def period_range(period: str) -> tuple[date, date]:
    """First and last day of a period written `YYYY`, `YYYY-MM` or `YYYY-Qn`."""
    if not re.match(PERIOD_PATTERN, period):
        raise ValueError(f"period must be YYYY, YYYY-MM or YYYY-Qn, not {period!r}")
    year = int(period[:4])
    if len(period) == 4:
        return date(year, 1, 1), date(year, 12, 31)
    if period[5] == "Q":
        quarter = int(period[6])
        first_month = 3 * (quarter - 1) + 1
        last_month = first_month + 2
        return date(year, first_month, 1), date(
            year, last_month, calendar.monthrange(year, last_month)[1]
        )
    month = int(period[5:7])
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def get_user_transactions(user_id: str, period: str) -> dict[str, Any]:
    """The user's transactions in the period (amounts: negative spent, positive received)."""
    first, last = period_range(period)
    seed = int.from_bytes(hashlib.sha256(f"{user_id}|{period}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    transactions: list[dict[str, Any]] = []
    months = [
        (y, m)
        for y in range(first.year, last.year + 1)
        for m in range(1, 13)
        if first <= date(y, m, 1) <= last
    ]
    for year, month in months:
        days = calendar.monthrange(year, month)[1]
        transactions.append(_tx(year, month, 1, _SALARY[0], "income", _SALARY[1]))
        transactions.append(_tx(year, month, 2, _RENT[0], "housing", -_RENT[1]))
        for _ in range(rng.randint(14, 26)):
            category = rng.choice(sorted(_MERCHANTS))
            name, low, high = rng.choice(_MERCHANTS[category])
            amount = round(rng.uniform(low, high), 2)
            transactions.append(_tx(year, month, rng.randint(1, days), name, category, -amount))
    transactions.sort(key=lambda t: (t["date"], t["description"], t["amount"]))
    for index, tx in enumerate(transactions, start=1):
        tx["id"] = f"tx_{index:04d}"
    return {"user_id": user_id, "period": period, "currency": "EUR", "transactions": transactions}


def _tx(
    year: int, month: int, day: int, description: str, category: str, amount: float
) -> dict[str, Any]:
    return {
        "id": "",
        "date": date(year, month, day).isoformat(),
        "description": description,
        "category": category,
        "amount": amount,
    }
