"""counter, sum/mean_over_time, ewma(_timeless), ddt, predict_linear (spec §3.8)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import (
    Event,
    counter,
    ddt,
    ddt_events,
    ddt_real,
    ewma,
    ewma_timeless,
    exception_stream,
    mean_over_time,
    predict_linear,
    sum_over_time,
)
from streams.testing import Sink, clock, run, run_intervals

metrics = st.one_of(st.none(), st.integers(-1000, 1000),
                    st.floats(-1000, 1000, allow_nan=False, allow_infinity=False))


def feed(stream: object, events: list[Event]) -> list[Event]:
    return run(lambda sink: stream(sink), events)  # type: ignore[operator]


def ms(*values: float | None) -> list[Event]:
    return [Event(metric=m) for m in values]


# counter ------------------------------------------------------------------------------------


def test_counter_table() -> None:
    out = feed(counter, ms(2, None, 3))
    assert out == [Event(metric=2), Event(), Event(metric=5)]
    out = feed(lambda sink: counter(sink, initial=100),
               [Event(metric=1), Event(metric=200, tags=("reset",)), Event(metric=5)])
    assert out == [Event(metric=101), Event(metric=200, tags=("reset",)), Event(metric=205)]


def test_counter_rejects_a_non_number_initial() -> None:
    with pytest.raises(TypeError, match="initial"):
        counter(print, initial="0")  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-100, 100)), st.booleans())))
def test_counter_is_a_running_sum_with_resets(steps: list[tuple[int | None, bool]]) -> None:
    events = [Event(metric=m, tags=("reset",) if reset else ()) for m, reset in steps]
    out = feed(lambda sink: counter(sink, initial=7), events)
    total, expected = 7, []
    for m, reset in steps:
        if m is not None:
            total = m if reset else total + m
        expected.append(None if m is None else total)
    assert [e.metric for e in out] == expected
    assert [e.evolve(metric=None) for e in out] == [e.evolve(metric=None) for e in events]


# sum_over_time / mean_over_time -------------------------------------------------------------


def test_sum_over_time_forwards_nil_metrics_and_keeps_the_sum() -> None:
    assert [e.metric for e in feed(sum_over_time, ms(1, None, 2, 3))] == [1, None, 3, 6]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-1000, 1000)))
def test_sum_over_time_equals_accumulate(values: list[int]) -> None:
    out = feed(sum_over_time, ms(*values))
    assert [e.metric for e in out] == list(itertools.accumulate(values))


def test_mean_over_time_is_a_running_mean() -> None:
    assert [e.metric for e in feed(mean_over_time, ms(2, None, 4, 9))] == [2, None, 3, 5]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=1))
def test_mean_over_time_equals_mean_of_prefixes(values: list[int]) -> None:
    out = feed(mean_over_time, ms(*values))
    for i, e in enumerate(out):
        assert e.metric == pytest.approx(sum(values[: i + 1]) / (i + 1))


# ewma_timeless ------------------------------------------------------------------------------


@pytest.mark.parametrize(("r", "expected"), [
    (0.5, [0.5, 0.75, 0.875, 15 / 16, 31 / 32]),
    (0, [0, 0, 0, 0, 0]),
    (1, [1, 1, 1, 1, 1]),
])
def test_ewma_timeless_table(r: float, expected: list[float]) -> None:
    assert [e.metric for e in feed(lambda sink: ewma_timeless(r, sink), ms(1, 1, 1, 1, 1))] \
        == expected


def test_ewma_timeless_forwards_nil_metric_and_keeps_state() -> None:
    out = feed(lambda sink: ewma_timeless(0.5, sink), ms(2, None, 2))
    assert [e.metric for e in out] == [1, None, 1.5]


@settings(max_examples=80, deadline=None)
@given(st.lists(metrics))
def test_ewma_timeless_r1_is_identity(values: list[float | None]) -> None:
    events = ms(*values)
    assert feed(lambda sink: ewma_timeless(1, sink), events) == events


@pytest.mark.parametrize("r", [-0.1, 1.5, "0.5", math.nan])
def test_ewma_timeless_rejects_bad_r(r: object) -> None:
    with pytest.raises((TypeError, ValueError), match="r "):
        ewma_timeless(r)  # type: ignore[arg-type]


# ewma ---------------------------------------------------------------------------------------


def test_ewma_decays_with_event_time() -> None:
    out = feed(lambda sink: ewma(1, sink),
               [Event(metric=1, time=0), Event(metric=1, time=1), Event(metric=1, time=3)])
    assert [(e.metric, e.time) for e in out] == [(0.5, 0), (0.75, 1), (0.5 + 0.75 / 4, 3)]


def test_ewma_same_time_accumulates_and_late_events_are_weighted() -> None:
    out = feed(lambda sink: ewma(1, sink),
               [Event(metric=1, time=2), Event(metric=1, time=2), Event(metric=4, time=1)])
    assert [(e.metric, e.time) for e in out] == [(0.5, 2), (1.0, 2), (2.0, 2)]


def test_ewma_nil_metric_passes_unchanged_and_missing_time_counts_as_zero() -> None:
    out = feed(lambda sink: ewma(2, sink), [Event(metric=None, time=5), Event(metric=4)])
    r = 0.5 ** 0.5
    assert out[0] == Event(time=5)
    assert (out[1].metric, out[1].time) == (pytest.approx((1 - r) * 4), 0)


# ddt ----------------------------------------------------------------------------------------


def test_ddt_dispatches_like_riemann() -> None:
    assert isinstance(ddt(print), ddt_events)
    assert isinstance(ddt(2, print), ddt_real)
    with pytest.raises(TypeError, match="child"):
        ddt("5", print)


def test_ddt_events_table() -> None:
    out = feed(ddt_events, [Event(metric=1, time=0), Event(time=1), Event(metric=3, time=2),
                            Event(metric=7, time=2), Event(metric=4, time=5)])
    assert [(e.time, e.metric) for e in out] == [(2, 1.0), (5, -1.0)]


def test_ddt_events_missing_time_raises_on_the_second_event_as_in_riemann() -> None:
    # Riemann stores the first event as the previous one before computing
    # anything, so the first event without a time passes and the second fails.
    out = Sink()
    stream = ddt_events(out)
    stream(Event(metric=1))
    with pytest.raises(ValueError, match="no time"):
        stream(Event(metric=3, time=2))
    stream(Event(metric=7, time=4))  # the previous event now has a time
    assert [(e.time, e.metric) for e in out.events] == [(4, 2.0)]
    with pytest.raises(ValueError, match="no time"):
        stream(Event(metric=9))


def test_ddt_real_emits_rate_between_snapshots_then_zero_after_silence() -> None:
    out = run(lambda sink: ddt(1, sink),
              [Event(metric=0, time=0), Event(metric=2, time=0.5), Event(metric=4, time=1.5)],
              until=4)
    assert [(e.time, e.metric) for e in out] == [(1, 4.0), (2, 2.0), (3, 0), (4, 0)]


def test_ddt_real_single_event_followed_by_silence_emits_nothing() -> None:
    # Riemann emits 0 at every tick after the first here (quirk §9.1.8).
    assert run(lambda sink: ddt_real(1, sink), [Event(metric=5, time=0)], until=5) == []


def test_ddt_real_expired_event_stops_ticks() -> None:
    out = run(lambda sink: ddt_real(1, sink),
              [Event(metric=0, time=0), Event(metric=1, time=0.5),
               Event(state="expired", time=1.5)], until=5)
    assert [(e.time, e.metric) for e in out] == [(1, 2.0)]
    assert len(clock()) == 0


def test_ddt_real_missing_time_is_reported_at_the_tick() -> None:
    errors: list[Event] = []
    run_intervals(lambda sink: exception_stream(errors.append, ddt_real(1, sink)),
                  [(Event(metric=1), None), (Event(metric=2), 1.5)])
    assert errors and "no time" in errors[0].description  # type: ignore[operator]


# predict_linear -----------------------------------------------------------------------------


def test_predict_linear_fits_the_last_n_events() -> None:
    events = [Event(metric=m, time=t) for t, m in [(0, 0), (1, 1), (2, 2), (3, 9), (4, 10)]]
    out = feed(lambda sink: predict_linear(2, 1, sink), events)
    assert [e.metric for e in out] == [2.0, 3.0, 16.0, 11.0]
    out = feed(lambda sink: predict_linear(3, 0, sink), events[:3])
    assert [e.metric for e in out] == [1.0, 2.0]


def test_predict_linear_rebuild_every_uses_the_stream_clock() -> None:
    events = [Event(metric=m, time=t) for t, m in [(0, 0), (1, 1), (2, 5), (3, 3), (5, 9)]]
    out = run(lambda sink: predict_linear(2, 0, sink, rebuild_every=2), events)
    # Fitted at 1 (slope 1) and reused at 2 and 3; refitted at 5 (more than 2 s later).
    assert [e.metric for e in out] == [1.0, 2.0, 3.0, 9.0]


def test_predict_linear_errors() -> None:
    with pytest.raises(ValueError, match="all have time"):
        feed(lambda sink: predict_linear(2, 1, sink), [Event(metric=1, time=1)] * 2)
    with pytest.raises(ValueError, match="no metric"):
        feed(lambda sink: predict_linear(2, 1, sink), [Event(time=1)])
    with pytest.raises(ValueError, match="n must"):
        predict_linear(1, 5)


@settings(max_examples=40, deadline=None)
@given(st.floats(-10, 10), st.floats(-100, 100), st.integers(2, 6), st.floats(0, 10))
def test_predict_linear_is_exact_on_a_line(slope: float, intercept: float, n: int,
                                           ahead: float) -> None:
    events = [Event(metric=intercept + slope * t, time=t) for t in range(8)]
    out = feed(lambda sink: predict_linear(n, ahead, sink), events)
    for e in out:
        assert e.metric == pytest.approx(intercept + slope * (e.time + ahead), abs=1e-6)
