"""The production scheduler: tasks on the wall clock, run by one trio task.

trio's MockClock jumps time forward whenever every task is blocked, so the
scheduler's sleeps take no real time and the tests are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from transport._scheduler import TrioScheduler


def run_with(body: Callable[[TrioScheduler], Awaitable[None]]) -> None:
    async def main() -> None:
        scheduler = TrioScheduler(clock=trio.current_time)
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await body(scheduler)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_tasks_run_at_their_time_in_due_then_creation_order() -> None:
    async def body(scheduler: TrioScheduler) -> None:
        ran: list[tuple[str, float]] = []
        start = scheduler.now()
        for name, delay in [("b", 2), ("a", 1), ("c", 2)]:
            scheduler.after(delay, lambda name=name: ran.append((name, scheduler.now() - start)))
        await trio.sleep(5)
        assert [name for name, _ in ran] == ["a", "b", "c"]
        assert [round(t, 6) for _, t in ran] == [1, 2, 2]

    run_with(body)


def test_a_task_added_while_the_scheduler_sleeps_wakes_it() -> None:
    async def body(scheduler: TrioScheduler) -> None:
        ran: list[float] = []
        start = scheduler.now()
        scheduler.after(100, lambda: ran.append(scheduler.now() - start))
        await trio.sleep(1)
        scheduler.after(1, lambda: ran.append(scheduler.now() - start))
        await trio.sleep(2)
        assert [round(t, 6) for t in ran] == [2]

    run_with(body)


def test_every_is_fixed_rate_and_cancel_stops_it() -> None:
    async def body(scheduler: TrioScheduler) -> None:
        ticks: list[float] = []
        start = scheduler.now()
        task = scheduler.every(1, lambda: ticks.append(scheduler.now() - start), delay=0.5)
        await trio.sleep(3.6)
        task.cancel()
        await trio.sleep(3)
        assert [round(t, 6) for t in ticks] == [0.5, 1.5, 2.5, 3.5]
        assert len(scheduler) == 0

    run_with(body)


def test_a_failing_task_is_logged_and_periodic_tasks_go_on(
        caplog: pytest.LogCaptureFixture) -> None:
    async def body(scheduler: TrioScheduler) -> None:
        runs = []

        def flaky() -> None:
            runs.append(1)
            raise RuntimeError("task broke")

        scheduler.every(1, flaky)
        await trio.sleep(2.5)
        assert len(runs) == 3
        assert scheduler.statistics()["runs"] == 3

    with caplog.at_level(logging.ERROR, logger="rillet.scheduler"):
        run_with(body)
    assert "task broke" in caplog.text
