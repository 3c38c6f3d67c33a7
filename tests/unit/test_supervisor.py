"""A process's services run under one supervisor: a crash of any is seen at once, the
others stop gracefully, and whoever runs the process hears of it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from backburner.runtime import ServiceCrashed, Supervisor


class Steady:
    """A service that runs until asked to stop, and finishes its round when asked."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.finished_round = False

    async def run(self) -> None:
        await self.stopping.wait()
        await asyncio.sleep(0.01)  # the round it is in
        self.finished_round = True

    def stop(self) -> None:
        self.stopping.set()


class Crashing(Steady):
    async def run(self) -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("the embedded service broke")


async def test_a_crash_is_seen_at_once_and_the_others_stop_gracefully(
    caplog: pytest.LogCaptureFixture,
) -> None:
    told: list[str] = []
    steady = Steady()
    supervisor = Supervisor(
        [("worker", steady), ("notifications", Crashing())], on_crash=lambda: told.append("!")
    )
    with (
        caplog.at_level(logging.CRITICAL, logger="backburner.runtime"),
        pytest.raises(ServiceCrashed, match="notifications"),
    ):
        await asyncio.wait_for(supervisor.run(), timeout=5)
    assert told == ["!"]
    assert supervisor.crashed == ["notifications"]
    assert steady.finished_round  # stopped, not cancelled mid-round
    (record,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.exc_info is not None  # the traceback, when it happened


async def test_stop_ends_every_service_without_a_crash() -> None:
    services = [Steady(), Steady()]
    supervisor = Supervisor([("a", services[0]), ("b", services[1])])
    running = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0)
    supervisor.stop()
    await asyncio.wait_for(running, timeout=5)
    assert all(s.finished_round for s in services)
    assert supervisor.crashed == []


async def test_a_service_that_ends_by_itself_counts_as_crashed() -> None:
    class Quitter(Steady):
        async def run(self) -> None:
            return

    steady = Steady()
    supervisor = Supervisor([("worker", Quitter()), ("other", steady)])
    with pytest.raises(ServiceCrashed, match="worker"):
        await asyncio.wait_for(supervisor.run(), timeout=5)
    assert steady.finished_round
