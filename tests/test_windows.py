"""Windows by count and by event time (spec §3.6), window (the alias of
moving_event_window) and fixed_offset_time_window."""

from __future__ import annotations

import math
from typing import Any

import pytest
from _helpers import relaxed, through
from hypothesis import given
from hypothesis import strategies as st

from streams import (
    REGISTRY,
    Event,
    by,
    fixed_event_window,
    fixed_offset_time_window,
    fixed_time_window,
    moving_event_window,
    moving_time_window,
    window,
)
from streams.testing import Sink, run


def times(windows: list[list[Event]]) -> list[list[float | None]]:
    return [[e.time for e in w] for w in windows]


# By count ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("stream", "n", "inputs", "expected"),
    [
        (moving_event_window, 2, [1, 2, 3], [[1], [1, 2], [2, 3]]),
        (moving_event_window, 0, [1, 2], [[], []]),
        (fixed_event_window, 2, [1, 2, 3, 4, 5], [[1, 2], [3, 4]]),
        (fixed_event_window, 0, [1, 2, 3], []),
        (fixed_event_window, 1, [1, 2], [[1], [2]]),
    ],
)
def test_event_windows_table(stream: Any, n: int, inputs: list[int],
                             expected: list[list[int]]) -> None:
    assert through(lambda sink: stream(n, sink), inputs) == expected


def test_emitted_windows_are_copies() -> None:
    out = through(lambda sink: moving_event_window(3, sink), [1, 2])
    out[0].append("changed")
    assert out[1] == [1, 2]


@relaxed
@given(st.integers(0, 5), st.lists(st.integers(), max_size=30))
def test_moving_event_window_keeps_order_and_size(n: int, inputs: list[int]) -> None:
    out = through(lambda sink: moving_event_window(n, sink), inputs)
    assert out == [inputs[max(0, i + 1 - n): i + 1] if n else [] for i in range(len(inputs))]


@relaxed
@given(st.integers(1, 5), st.lists(st.integers(), max_size=30))
def test_fixed_event_window_chunks_in_order(n: int, inputs: list[int]) -> None:
    out = through(lambda sink: fixed_event_window(n, sink), inputs)
    assert all(len(w) == n for w in out)
    assert [x for w in out for x in w] == inputs[: len(inputs) // n * n]


# By event time -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("stream", "dt", "inputs", "expected"),
    [
        (moving_time_window, 2, [1, 2, 3, 4], [[1], [1, 2], [2, 3], [3, 4]]),
        (moving_time_window, 2, [5, 1, 2, 6, 3, 8, 4, 8, 5, 9],
         [[5], [5, 6], [8], [8, 8], [8, 8, 9]]),
        (fixed_time_window, 2, [1, 2, 3, 4, 5], [[1, 2], [3, 4]]),
        (fixed_time_window, 2, [1, 7], [[1], [], []]),
        (fixed_time_window, 2, [5, 1, 2, 6, 3, 8, 4, 8, 5, 9, 11], [[5, 6], [8, 8], [9]]),
        (fixed_time_window, 0.5, [0, 0.25, 0.5, 1.75], [[0, 0.25], [0.5], []]),
    ],
)
def test_time_windows_table(stream: Any, dt: float, inputs: list[float],
                            expected: list[list[float]]) -> None:
    out = through(lambda sink: stream(dt, sink), [Event(time=t) for t in inputs])
    assert times(out) == expected


def test_moving_time_window_keeps_untimed_events() -> None:
    inputs = [Event(time=1), Event(service="untimed"), Event(time=5)]
    out = through(lambda sink: moving_time_window(2, sink), inputs)
    assert [[e.time for e in w] for w in out] == [[1], [1, None], [None, 5]]


def test_fixed_time_window_puts_untimed_events_in_the_current_window() -> None:
    inputs = [Event(service="early"), Event(time=1), Event(service="late"), Event(time=4)]
    out = through(lambda sink: fixed_time_window(2, sink), inputs)
    # an untimed event before the first timed one is dropped when the first window opens
    assert [[e.service for e in w] for w in out] == [[None, "late"]]


@relaxed
@given(st.integers(1, 10), st.lists(st.integers(0, 60), max_size=30))
def test_moving_time_window_model(dt: int, inputs: list[int]) -> None:
    out = through(lambda sink: moving_time_window(dt, sink), [Event(time=t) for t in inputs])
    expected: list[list[int]] = []
    buffer: list[int] = []
    cutoff = 0
    for t in inputs:
        cutoff = max(cutoff, t - dt)
        if t > cutoff:
            buffer = [x for x in buffer if x > cutoff] + [t]
            expected.append(buffer)
    assert times(out) == expected
    # every window is in arrival order and spans less than dt
    for each in expected:
        assert each[-1] - min(each) < dt


@relaxed
@given(st.integers(1, 10), st.lists(st.integers(0, 60), max_size=30))
def test_fixed_time_window_windows_are_aligned_and_ordered(dt: int, inputs: list[int]) -> None:
    windows = through(lambda sink: fixed_time_window(dt, sink), [Event(time=t) for t in inputs])
    out = [[e.time for e in w] for w in windows]
    if not inputs:
        assert out == []
        return
    start = inputs[0]
    kept: list[int] = []
    for k, each in enumerate(out):
        low, high = start + k * dt, start + (k + 1) * dt
        assert all(low <= t < high for t in each)
        kept += each
    # what was emitted is a subsequence of the input, in arrival order
    it = iter(inputs)
    assert all(any(t == x for x in it) for t in kept)


# Time sanity (issue 10): a host with a wrong clock cannot break a time window -------------

YEAR = 365 * 86400.0


@pytest.fixture()
def clock_at_1000(clock: Any) -> None:
    clock.set(1000)


@pytest.mark.usefixtures("clock_at_1000")
@pytest.mark.parametrize("build", [fixed_time_window, moving_time_window])
@pytest.mark.parametrize("bad_time", [1000 + YEAR, 1000 - YEAR, float("nan")])
def test_an_event_far_from_the_clock_is_dropped_and_counted_and_later_events_still_flow(
        build: Any, bad_time: float) -> None:
    # Before: a year ahead made fixed_time_window(10) emit 3,153,599 empty
    # windows in one call, then treat every correctly timed event as late.
    from streams.testing import Sink

    sink = Sink()
    window = build(10, sink)
    for t in [1000, 1001, bad_time, 1002, 1011, 1025]:
        window(Event(time=t))
    assert window.skewed == 1
    assert len(sink.events) <= 6
    seen = {e.time for w in sink.events for e in w}
    assert {1000, 1001, 1002, 1011} <= seen
    assert bad_time not in seen


@pytest.mark.usefixtures("clock_at_1000")
def test_max_skew_is_configurable_and_none_trusts_every_time() -> None:
    out = through(lambda sink: fixed_time_window(10, sink, max_skew=5), [
        Event(time=t) for t in [1000, 1004, 1006, 1009]])
    assert out == []
    assert times(through(lambda sink: fixed_time_window(10, sink, max_skew=None), [
        Event(time=t) for t in [1000, 1004, 1006 + 3600 * 24, 1009]])) == \
        [[1000, 1004]] + [[]] * 8639
    with pytest.raises(ValueError, match=r"max_skew must be a positive number .* got -1"):
        moving_time_window(10, max_skew=-1)
    assert repr(fixed_time_window(10, print, max_skew=60)) == \
        "fixed_time_window(10, print, max_skew=60)"


@pytest.mark.usefixtures("clock_at_1000")
def test_moving_time_window_reads_each_event_time_a_bounded_number_of_times() -> None:
    # Before: every call re-read the time of every buffered event (O(window)
    # decodes per event for events decoded from the wire).
    reads = [0]

    class Counted:
        def __init__(self, time: float) -> None:
            self._time = time

        @property
        def time(self) -> float:
            reads[0] += 1
            return self._time

    window = moving_time_window(500, lambda events: None)
    for n in range(3000):
        window(Counted(time=1000 - 1500 + n * 0.5))
    assert reads[0] < 3 * 3000
    out: list[list[Event]] = []
    window = moving_time_window(2, out.append)
    for t in [1000, 999.5, 1001, 1002.5, 1003]:  # one straggler, then in order again
        window(Event(time=t))
    assert times(out) == [[1000], [1000, 999.5], [1000, 999.5, 1001], [1001, 1002.5],
                          [1002.5, 1003]]


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

@pytest.mark.parametrize(("event_times", "expected"), [
    ([1, 2, 3, 4, 5, 6], [[1], [2, 3], [4, 5]]),
    ([1, 7], [[1], [], []]),
    ([5, 1, 2, 6, 3, 8, 4, 8, 5, 9, 11], [[5], [6], [8, 8, 9]]),  # out of order
    ([0, 1, 2], [[0, 1]]),
])
def test_fixed_offset_time_window_spec_examples(event_times: list[float],
                                                expected: list[list[float]]) -> None:
    out = run(lambda sink: fixed_offset_time_window(2, sink),
              [Event(time=t) for t in event_times])
    assert times(out) == expected


def test_fixed_offset_differs_from_fixed_time_window_only_in_the_first_start() -> None:
    events = [Event(time=t) for t in [1, 2, 3, 4, 5, 6]]
    plain = run(lambda sink: fixed_time_window(2, sink), events)
    offset = run(lambda sink: fixed_offset_time_window(2, sink), events)
    assert times(plain) == [[1, 2], [3, 4]]
    assert times(offset) == [[1], [2, 3], [4, 5]]


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
    ordered = sorted(raw_times)
    out: Any = run(lambda sink: fixed_offset_time_window(dt, sink),
                   [Event(time=t) for t in ordered])
    first, last = math.floor(ordered[0] / dt), math.floor(ordered[-1] / dt)
    expected = [[t for t in ordered if math.floor(t / dt) == bucket]
                for bucket in range(first, last)]
    assert times(out) == expected
