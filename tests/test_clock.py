"""The clock and scheduler: spec §3.0.4 and the controlled_test examples of §7."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Runtime, Task, VirtualClock, next_tick
from streams._clock import now, scheduler


def test_once_runs_at_an_absolute_time_and_cancel_stops_it(clock: VirtualClock) -> None:
    # controlled_test: once!(1), once!(2), once!(3); 0.5 → 0 runs; 2 → 2 runs;
    # cancel the third, advance to 3 → still 2.
    runs: list[float] = []
    clock.once(1, lambda: runs.append(clock.now()))
    clock.once(2, lambda: runs.append(clock.now()))
    third = clock.once(3, lambda: runs.append(clock.now()))
    clock.advance(0.5)
    assert runs == []
    clock.advance(2)
    assert runs == [1, 2]
    third.cancel()
    clock.advance(3)
    assert runs == [1, 2]
    assert clock.now() == 3


def test_after_is_relative_to_now(clock: VirtualClock) -> None:
    clock.set(10)
    runs: list[float] = []
    clock.after(2, lambda: runs.append(clock.now()))
    clock.advance(11.9)
    assert runs == []
    clock.advance(12)
    assert runs == [12]


def test_every_with_delay_then_defer_into_the_past_catches_up(clock: VirtualClock) -> None:
    # spec §3.0.4: every!(1, 2, bump) at t=0.
    count = [0]
    task = clock.every(1, lambda: count.__setitem__(0, count[0] + 1), delay=2)
    expected = {1: 0, 2: 1, 3: 2, 4: 3}
    for t, runs in expected.items():
        clock.advance(t)
        assert count[0] == runs, t
    task.defer(-3)  # the pending time 1 is in the past: the task runs at 1, 2, 3, 4, 5
    clock.advance(5)
    assert count[0] == 8
    task.defer(4)  # nothing until 9, then one run at 9 and one at 10
    clock.advance(8.9)
    assert count[0] == 8
    clock.advance(9)
    assert count[0] == 9
    clock.advance(10)
    assert count[0] == 10


def test_defer_uses_the_tasks_own_clock_even_when_not_installed() -> None:
    # The VirtualClock doctest builds a clock without installing it; defer must
    # still read that clock, not whichever one is installed.
    with Runtime(VirtualClock(1000)):
        private = VirtualClock()
        runs: list[float] = []
        task = private.every(1, lambda: runs.append(private.now()), delay=1)
        private.advance(2)
        task.defer(5)
        private.advance(8)
        assert runs == [1, 2, 7, 8]


def test_every_is_fixed_rate_from_scheduled_times(clock: VirtualClock) -> None:
    runs: list[float] = []
    clock.every(2, lambda: runs.append(clock.now()), delay=1)
    clock.advance(7.5)  # one jump: every run still sees its own due time
    assert runs == [1, 3, 5, 7]


def test_tasks_run_in_due_then_creation_order(clock: VirtualClock) -> None:
    order: list[str] = []
    clock.once(2, lambda: order.append("b"))
    clock.once(1, lambda: order.append("a"))
    clock.once(2, lambda: order.append("c"))
    clock.advance(5)
    assert order == ["a", "b", "c"]


def test_tasks_scheduled_during_an_advance_run_if_due(clock: VirtualClock) -> None:
    runs: list[float] = []
    clock.once(1, lambda: clock.after(1, lambda: runs.append(clock.now())))
    clock.advance(3)
    assert runs == [2]


def test_the_clock_never_moves_backwards(clock: VirtualClock) -> None:
    clock.advance(-1)
    assert clock.now() == 0
    clock.advance(5)
    clock.advance(3)
    assert clock.now() == 5


def test_set_moves_the_clock_without_running_anything(clock: VirtualClock) -> None:
    runs: list[float] = []
    clock.once(1, lambda: runs.append(clock.now()))
    clock.set(10)
    assert runs == []
    clock.advance(11)
    assert runs == [10]  # overdue tasks run at the current time, not in the past


def test_a_failing_task_is_logged_and_still_rescheduled(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[float] = []

    def flaky() -> None:
        runs.append(clock.now())
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="rillet.scheduler"):
        clock.every(1, flaky)
        clock.advance(2)
    assert runs == [0, 1, 2]
    assert "scheduled task" in caplog.text


def test_cancelling_a_periodic_task_from_inside_it_stops_it(clock: VirtualClock) -> None:
    runs: list[float] = []
    holder: list[Task] = []

    def once_then_stop() -> None:
        runs.append(clock.now())
        holder[0].cancel()

    holder.append(clock.every(1, once_then_stop, delay=1))
    clock.advance(5)
    assert runs == [1]
    assert len(clock) == 0 and clock.next_due is None


def test_every_rejects_a_bad_interval_or_delay_by_name(clock: VirtualClock) -> None:
    with pytest.raises(ValueError, match=r"interval=0"):
        clock.every(0, lambda: None)
    with pytest.raises(ValueError, match=r"delay=-1"):
        clock.every(1, lambda: None, delay=-1)


def test_clear_drops_everything_and_repr_counts_tasks(clock: VirtualClock) -> None:
    clock.once(1, lambda: None)
    clock.every(1, lambda: None)
    assert repr(clock) == "VirtualClock(now=0, tasks=2)"
    clock.clear()
    assert len(clock) == 0


def test_scheduler_and_now_follow_the_installed_clock(clock: VirtualClock) -> None:
    clock.set(42)
    assert scheduler() is clock and now() == 42


@pytest.mark.parametrize(
    ("anchor", "dt", "t", "expected"),
    [(0, 2, 2, 4), (1, 2, 1, 3), (4, 2, 2, 4), (0, 5, 3, 5), (1, 5, 99, 101)],
)
def test_next_tick(anchor: float, dt: float, t: float, expected: float) -> None:
    assert next_tick(anchor, dt, t) == expected


@settings(deadline=None)
@given(st.integers(-50, 50), st.integers(1, 20), st.integers(-100, 100))
def test_next_tick_is_the_next_boundary_strictly_after_t(anchor: int, dt: int, t: int) -> None:
    tick = next_tick(anchor, dt, t)
    assert t < tick <= t + dt
    assert (tick - anchor) % dt == 0


@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(0, 20), max_size=20), st.lists(st.integers(0, 25), max_size=6))
def test_once_tasks_run_in_time_order_however_the_clock_jumps(
    dues: list[int], stops: list[int]
) -> None:
    clock = VirtualClock()
    ran: list[tuple[int, float]] = []
    for i, due in enumerate(dues):
        clock.once(due, lambda i=i, due=due: ran.append((due, clock.now())))  # type: ignore[misc]
    for stop in [*sorted(stops), 30]:
        clock.advance(stop)
    assert [due for due, _ in ran] == sorted(dues)
    assert all(seen == due for due, seen in ran)  # each task sees its own due time
