"""The worker's one timer for handlers' time limits: each armed deadline fires once, in
order, unless disarmed; an earlier deadline armed later still fires first; and the heap
stays bounded by what is armed while thousands come and go."""

from __future__ import annotations

from backburner.worker.deadlines import COMPACT_AFTER, Deadlines
from tests.conftest import wait_for


async def _until(condition: object) -> None:
    await wait_for(condition, within=5.0, interval=0.005)


async def test_deadlines_fire_in_time_order_and_once() -> None:
    deadlines = Deadlines()
    fired: list[str] = []
    late = deadlines.arm(0.2, lambda: fired.append("late"))
    early = deadlines.arm(0.05, lambda: fired.append("early"))  # armed after, due before
    await _until(lambda: len(fired) == 2)
    assert fired == ["early", "late"]
    assert early.expired
    assert late.expired
    assert len(deadlines) == 0
    late.disarm()  # after it fired: nothing changes
    assert len(deadlines) == 0


async def test_a_disarmed_deadline_never_fires() -> None:
    deadlines = Deadlines()
    fired: list[str] = []
    first = deadlines.arm(0.03, lambda: fired.append("first"))
    deadlines.arm(0.06, lambda: fired.append("second"))
    first.disarm()
    first.disarm()  # twice is harmless
    await _until(lambda: fired)
    assert fired == ["second"]
    assert not first.expired


async def test_one_failing_callback_does_not_keep_the_others_from_firing() -> None:
    deadlines = Deadlines()
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("a bug in a callback")

    deadlines.arm(0.01, broken)
    deadlines.arm(0.01, lambda: fired.append("next"))
    await _until(lambda: fired)
    assert fired == ["next"]


async def test_the_heap_stays_bounded_by_the_armed_deadlines() -> None:
    """Thousands of jobs a second arm a day-long limit and end at once: what they leave
    behind is dropped, not kept until the day is over."""
    deadlines = Deadlines()
    kept = [deadlines.arm(86_400, lambda: None) for _ in range(10)]
    for _ in range(20_000):
        deadlines.arm(86_400, lambda: None).disarm()
    assert len(deadlines) == 10
    assert len(deadlines._heap) <= len(kept) + 2 * COMPACT_AFTER
    fired: list[int] = []
    deadlines.arm(0.01, lambda: fired.append(1))  # still fires among the survivors
    await _until(lambda: fired)
    assert not any(deadline.expired for deadline in kept)
