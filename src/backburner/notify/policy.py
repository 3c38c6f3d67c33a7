"""When a failed delivery is tried again, and when we stop. Plain functions."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

MAX_DELAY_SECONDS = 3 * 3600.0


def retry_delay(attempts: int, base: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` tries: base * 3^(n-1), at most three
    hours, ±20% jitter so a receiver coming back is not hit by every retry at once.
    With the default base of 5 s: 5 s, 15 s, 45 s, 2 min, 7 min, 20 min, 1 h, 3 h, 3 h…
    about a day of trying in all, like the big webhook senders."""
    delay = min(MAX_DELAY_SECONDS, base * 3 ** max(0, attempts - 1))
    return float(delay * (rng or random).uniform(0.8, 1.2))


def next_step(
    *,
    ok: bool,
    gone: bool,
    attempts: int,
    now: datetime,
    give_up_at: datetime,
    base: float,
    rng: random.Random | None = None,
) -> tuple[str, datetime | None]:
    """(status, next attempt) after one attempt: succeeded; failed when the receiver says
    it is gone (410) or the retry period is over; else pending until the next try."""
    if ok:
        return "succeeded", None
    if gone:
        return "failed", None
    at = now + timedelta(seconds=retry_delay(attempts, base, rng))
    if at > give_up_at:
        return "failed", None
    return "pending", at
