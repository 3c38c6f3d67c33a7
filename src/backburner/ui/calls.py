"""A job's model calls as its page shows them: grouped by step with totals, then a page
of them at a time, each labelled with the file names its key holds. Plain functions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from backburner.store import ProviderCall

CALLS_PER_PAGE = 50


@dataclass(frozen=True)
class CallGroup:
    """The calls of one step ("map", "reduce", "batch", …) and what they took."""

    step: str
    calls: int
    statuses: dict[str, int]
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    seconds: float | None  # first submitted to last completed

    @property
    def status_text(self) -> str:
        return ", ".join(f"{count} {status}" for status, count in sorted(self.statuses.items()))


def step_of(key: str) -> str:
    return key.split("/", 1)[0]


def step_label(key: str, names: Mapping[str, str]) -> str:
    """`map/<document id>/2` → `map · report.pdf · part 3`: ids become file names."""
    parts = key.split("/")
    shown = [names.get(part, part) for part in parts]
    if len(parts) >= 3 and parts[1] in names and parts[-1].isdigit():
        shown[-1] = f"part {int(parts[-1]) + 1}"
    return " · ".join(shown)


def call_groups(calls: Sequence[ProviderCall]) -> list[CallGroup]:
    """One group per step, in the order the steps first appear."""
    order: list[str] = []
    members: dict[str, list[ProviderCall]] = {}
    for call in calls:
        step = step_of(call.key)
        if step not in members:
            order.append(step)
            members[step] = []
        members[step].append(call)
    groups = []
    for step in order:
        group = members[step]
        costs = [c.cost_usd for c in group if c.cost_usd is not None]
        ends = [c.completed_at for c in group if c.completed_at is not None]
        start = min(c.submitted_at for c in group)
        groups.append(
            CallGroup(
                step=step,
                calls=len(group),
                statuses=dict(Counter(c.status for c in group)),
                input_tokens=sum(c.input_tokens for c in group),
                output_tokens=sum(c.output_tokens for c in group),
                cost_usd=sum(costs) if costs else None,
                seconds=(max(ends) - start).total_seconds() if ends else None,
            )
        )
    return groups


@dataclass(frozen=True)
class CallPage:
    calls: list[ProviderCall]
    first: int  # 1-based number of the first call shown
    total: int
    previous: int | None  # offsets of the pages around it
    next: int | None


def call_page(calls: Sequence[ProviderCall], offset: int, size: int = CALLS_PER_PAGE) -> CallPage:
    """The calls from `offset` (clamped to the list), `size` of them."""
    total = len(calls)
    start = max(0, min(offset, max(0, total - 1)))
    start -= start % size
    shown = list(calls[start : start + size])
    return CallPage(
        calls=shown,
        first=start + 1,
        total=total,
        previous=start - size if start > 0 else None,
        next=start + size if start + size < total else None,
    )
