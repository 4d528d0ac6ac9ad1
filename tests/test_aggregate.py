"""Periodic aggregation on the clock (spec §3.0.5, §3.0.7, §3.7): rate and throttle."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Event, by, rate, throttle
from streams._periodic import TimeWindows
from streams.testing import Sink, clock, run, run_intervals, timed_events

relaxed = settings(deadline=None, max_examples=40)


def metrics_at(out: list[Event]) -> list[tuple[float | None, float | None]]:
    return [(e.time, e.metric) for e in out]


# rate ----------------------------------------------------------------------------

RATE_TABLE = [
    # (interval, [(time, metric, extra fields)], until, [(time, metric)])
    (2, [(0, 1, {}), (1, 3, {}), (2, 4, {})], 2, [(2, 2.0)]),
    (1, [(0, 2, {})], 3, [(1, 2.0), (2, 0.0), (3, 0.0)]),  # ticks go on, emitting 0
    (1, [(0.5, 2, {}), (1, 4, {})], 2.5, [(1.5, 6.0), (2.5, 0.0)]),  # phase: first event
    (1, [(0, None, {})], 2, [(1, 0.0), (2, 0.0)]),  # no metric still drives the timer
    # time + ttl of the latest event passed: the timer stops without emitting
    (1, [(0, 4, {"ttl": 2.5})], 5, [(1, 4.0), (2, 0.0)]),
    # an expired event stops the timer; its metric is still counted
    (1, [(0, 5, {}), (0, 3, {"state": "expired"}), (2, 1, {})], 3.5, [(3, 9.0)]),
    (4, [(0, 2, {}), (1, 6, {})], 4, [(4, 2.0)]),
]


@pytest.mark.parametrize(("interval", "inputs", "until", "expected"), RATE_TABLE)
def test_rate_table(interval: float, inputs: list[tuple[float, Any, dict[str, Any]]],
                    until: float, expected: list[tuple[float, float]]) -> None:
    events = [Event(service="req", time=t, metric=m, **extra) for t, m, extra in inputs]
    assert metrics_at(run(lambda sink: rate(interval, sink), events, until=until)) == expected


def test_rate_keeps_its_sum_across_timer_stops() -> None:
    # spec §3.7 (verified): 5 at t0, an expired event with metric 3, then 1 at t2
    # → the tick at 3 emits 9.
    out = run(lambda sink: rate(1, sink),
              [Event(metric=5, time=0), Event(metric=3, time=0, state="expired"),
               Event(metric=1, time=2)], until=3)
    assert metrics_at(out) == [(3, 9.0)]


def test_rate_emits_the_latest_event_with_a_dropping_ttl() -> None:
    out = run(lambda sink: rate(1, sink),
              [Event(host="h", service="req", metric=1, time=0, ttl=10),
               Event(host="h", service="req", metric=1, time=0.5, ttl=10)], until=3)
    assert [(e.host, e.service, e.time, e.metric, e.ttl) for e in out] == [
        ("h", "req", 1, 2.0, 10), ("h", "req", 2, 0.0, 9), ("h", "req", 3, 0.0, 8),
    ]


def test_by_host_rate() -> None:
    # spec §3.4 (verified)
    out = run(lambda sink: by("host", rate(1, sink)),
              [Event(host="a", metric=1, time=0), Event(host="b", metric=2, time=0),
               Event(host="a", metric=3, time=0)], until=1)
    assert sorted((e.host, e.metric, e.time) for e in out) == [("a", 4.0, 1), ("b", 2.0, 1)]


def test_rate_restarts_with_a_new_phase_after_stopping() -> None:
    # The first timer stops at 1 (time + ttl = 0.5 has passed) without emitting;
    # the next event starts a new phase and the unflushed 1 is still in the sum.
    out = run(lambda sink: rate(1, sink),
              [Event(metric=1, time=0, ttl=0.5), Event(metric=2, time=3.25)], until=4.25)
    assert metrics_at(out) == [(4.25, 3.0)]


def test_rate_close_stops_the_timer() -> None:
    sink = Sink()
    run(lambda _: Sink(), [])
    r = rate(1, sink)
    r(Event(metric=1, time=0))
    r.close()
    clock().advance(5)
    assert sink.events == []


def test_run_intervals_drives_rate() -> None:
    out = run_intervals(lambda sink: rate(1, sink),
                        [(Event(metric=1), 0.5), (Event(metric=2), 0.5), (Event(metric=4), 1)])
    assert metrics_at(out) == [(1, 3.0), (2, 4.0)]


@relaxed
@given(st.sampled_from([0.5, 1, 2, 5]),
       timed_events(metrics=st.integers(-100, 100), ttls=st.none(), states=["ok", None]))
def test_rate_conserves_the_metric_sum(interval: float, inputs: list[Event]) -> None:
    last = inputs[-1].time or 0 if inputs else 0
    out = run(lambda sink: rate(interval, sink), inputs, until=last + interval)
    emitted = math.fsum(e.metric * interval for e in out)
    assert emitted == pytest.approx(sum(e.metric or 0 for e in inputs), abs=1e-6)
    # and the ticks are evenly spaced from the first event on
    if inputs:
        first = inputs[0].time or 0
        for k, e in enumerate(out, start=1):
            assert e.time == pytest.approx(first + k * interval)


# throttle --------------------------------------------------------------------------

THROTTLE_TABLE = [
    # (n, dt, built at, event times, forwarded times)
    (2, 10, 0, [0, 1, 2, 3, 11], [0, 1, 11]),
    (1, 5, 1, [1, 5.9, 6, 10.9, 11], [1, 6, 11]),  # windows anchored at construction
    (0, 5, 0, [0, 1, 2], []),
    (3, 1, 0, [0, 0, 0, 0, 0.5, 1, 1], [0, 0, 0, 1, 1]),
    (1, 60, 0, [59, 60, 119.5, 120], [59, 60, 120]),
]


@pytest.mark.parametrize(("n", "dt", "start", "inputs", "expected"), THROTTLE_TABLE)
def test_throttle_table(n: int, dt: float, start: float, inputs: list[float],
                        expected: list[float]) -> None:
    out = run(lambda sink: throttle(n, dt, sink), [Event(time=t) for t in inputs], start=start)
    assert [e.time for e in out] == expected


def test_throttle_counts_expired_events_like_any_other() -> None:
    out = run(lambda sink: throttle(1, 10, sink),
              [Event(state="expired", time=0), Event(state="ok", time=1)])
    assert [e.state for e in out] == ["expired"]


@relaxed
@given(st.integers(0, 4), st.sampled_from([1, 2.5, 10]), timed_events())
def test_throttle_never_exceeds_n_per_window(n: int, dt: float, inputs: list[Event]) -> None:
    out = run(lambda sink: throttle(n, dt, sink), inputs)
    per_window: dict[int, int] = {}
    for e in out:
        window = math.floor((e.time or 0) / dt)
        per_window[window] = per_window.get(window, 0) + 1
    assert all(count <= n for count in per_window.values())
    # and it forwards the first n of each window, in order
    expected: list[Event] = []
    seen: dict[int, int] = {}
    for e in inputs:
        window = math.floor((e.time or 0) / dt)
        seen[window] = seen.get(window, 0) + 1
        if seen[window] <= n:
            expected.append(e)
    assert out == expected


# part-time-simple (the windows behind throttle) --------------------------------------

def test_time_windows_part_time_simple_spec_example() -> None:
    # Built at t=1 with dt=5; windows end at 6, 11, 101, 106.
    clock().set(1)
    finished: list[tuple[float, list[float], float]] = []
    current: list[float] = []

    def finish(start: float, end: float) -> None:
        finished.append((start, list(current), end))
        current.clear()

    windows = TimeWindows(5, finish)
    for t in [1, 2, 4, 5, 6, 8, 9, 99, 100, 101, 102]:
        clock().advance(t)
        windows.observe()
        current.append(t)
    clock().advance(106)
    assert finished == [(1, [1, 2, 4, 5], 6), (6, [6, 8, 9], 11), (96, [99, 100], 101),
                        (101, [101, 102], 106)]


def test_throttle_window_boundaries_do_not_drift_with_rounding() -> None:
    # Found by the property above: the boundary after 22.078 was computed as
    # 30.000000000000004, so the event at 30.0 fell in the window before.
    inputs = [Event(time=0)] * 11 + [Event(time=22.078), Event(time=30.0)]
    out = run(lambda sink: throttle(1, 10, sink), inputs)
    assert [e.time for e in out] == [0, 22.078, 30.0]
