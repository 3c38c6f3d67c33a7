"""How times, durations and money read on the pages."""

from __future__ import annotations

import math
from datetime import datetime


def duration(seconds: float | None) -> str:
    """45 s, 3 min, 2 h 5 min, 3 d 4 h: how long, as a person says it."""
    if seconds is None or math.isnan(seconds):
        return "\u2014"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def usd(value: float | None) -> str:
    if value is None:
        return "\u2014"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "\u2014"
