"""window (alias of moving_event_window) and fixed_offset_time_window: spec §3.6."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import (
    REGISTRY,
    Event,
    by,
    fixed_offset_time_window,
    fixed_time_window,
    moving_event_window,
    window,
)
from streams.testing import Sink, run


def times_of(windows: list[list[Event]]) -> list[list[float | None]]:
    return [[e.time for e in w] for w in windows]


# window ----------------------------------------------------------------------

@pytest.mark.parametrize(("n", "inputs", "expected"), [
    (2, [1, 2, 3], [[1], [1, 2], [2, 3]]),
    (0, [1, 2], [[], []]),
    (3, [1], [[1]]),
])
def test_window_spec_examples(n: int, inputs: list[int], expected: list[list[int]]) -> None:
    sink = Sink()
    s = window(n, sink)
    for x in inputs:
        s(x)
    assert sink.events == expected


def test_window_is_a_registered_moving_event_window_that_forks() -> None:
    assert REGISTRY["window"] is window
    assert issubclass(window, moving_event_window)
    s = window(2, Sink())
    assert repr(s).startswith("window(2, ")
    assert type(s.fork()) is window
    with pytest.raises(ValueError, match="n must be"):
        window(-1)


@given(st.integers(0, 4), st.lists(st.integers(), max_size=20))
def test_window_equals_moving_event_window(n: int, xs: list[int]) -> None:
    a, b = Sink(), Sink()
    sa, sb = window(n, a), moving_event_window(n, b)
    for x in xs:
        sa(x)
        sb(x)
    assert a.events == b.events


# fixed_offset_time_window ----------------------------------------------------

@pytest.mark.parametrize(("times", "expected"), [
    ([1, 2, 3, 4, 5, 6], [[1], [2, 3], [4, 5]]),
    ([1, 7], [[1], [], []]),
    ([5, 1, 2, 6, 3, 8, 4, 8, 5, 9, 11], [[5], [6], [8, 8, 9]]),  # out of order
    ([0, 1, 2], [[0, 1]]),
])
def test_fixed_offset_time_window_spec_examples(times: list[float],
                                                expected: list[list[float]]) -> None:
    out = run(lambda sink: fixed_offset_time_window(2, sink),
              [Event(time=t) for t in times])
    assert times_of(out) == expected


def test_fixed_offset_differs_from_fixed_time_window_only_in_the_first_start() -> None:
    events = [Event(time=t) for t in [1, 2, 3, 4, 5, 6]]
    plain = run(lambda sink: fixed_time_window(2, sink), events)
    offset = run(lambda sink: fixed_offset_time_window(2, sink), events)
    assert times_of(plain) == [[1, 2], [3, 4]]
    assert times_of(offset) == [[1], [2, 3], [4, 5]]


def test_fixed_offset_untimed_events_join_the_current_window() -> None:
    out = run(lambda sink: fixed_offset_time_window(10, sink),
              [Event(time=12), Event(service="untimed"), Event(time=19), Event(time=20)])
    assert [[(e.service, e.time) for e in w] for w in out] == [
        [(None, 12), ("untimed", None), (None, 19)]]


def test_fixed_offset_time_window_forks_per_key_and_validates() -> None:
    out = run(lambda sink: by("host", fixed_offset_time_window(5, sink)),
              [Event(host=h, time=t) for h, t in [("a", 3), ("b", 7), ("a", 6), ("b", 10)]])
    assert [[(e.host, e.time) for e in w] for w in out] == [[("a", 3)], [("b", 7)]]
    assert REGISTRY["fixed_offset_time_window"] is fixed_offset_time_window
    with pytest.raises(ValueError, match="positive number of seconds"):
        fixed_offset_time_window(0)


@given(st.sampled_from([1, 2, 5]),
       st.lists(st.integers(0, 200).map(lambda q: q / 4), min_size=1, max_size=30))
def test_fixed_offset_windows_are_the_aligned_buckets_before_the_last(
        dt: int, raw_times: list[float]) -> None:
    times = sorted(raw_times)
    out: Any = run(lambda sink: fixed_offset_time_window(dt, sink),
                   [Event(time=t) for t in times])
    first, last = math.floor(times[0] / dt), math.floor(times[-1] / dt)
    expected = [[t for t in times if math.floor(t / dt) == bucket]
                for bucket in range(first, last)]
    assert times_of(out) == expected
