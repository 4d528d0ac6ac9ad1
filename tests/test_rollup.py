"""percentiles, fold_interval(_metric), rollup, batch, apdex, coalesce (spec §3.7)."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import (
    Event,
    Runtime,
    apdex,
    batch,
    coalesce,
    exception_stream,
    fold_interval,
    fold_interval_metric,
    percentiles,
    rollup,
)
from streams.testing import clock, run, run_intervals, timed_events

# percentiles -------------------------------------------------------------------------------


def lat(t: float, m: float | None, **kw: object) -> Event:
    return Event(service="lat", metric=m, time=t, **kw)  # type: ignore[arg-type]


def test_percentiles_list_points_suffix_service() -> None:
    out = run(lambda sink: percentiles(5, [0, 0.5, 1], sink),
              [lat(0, 6), lat(1, 1), lat(2, 2), lat(3, 1), lat(4, 1)], until=5)
    assert [(e.service, e.metric, e.time) for e in out] == [
        ("lat 0", 1, 1), ("lat 0.5", 1, 4), ("lat 1", 6, 0)]


def test_percentiles_two_events_sample_upper() -> None:
    out = run(lambda sink: percentiles(1, [0, 0.5, 1], sink), [lat(0, 2), lat(0.5, 1)], until=1)
    assert [e.metric for e in out] == [1, 2, 2]


def test_percentiles_dict_points_give_suffixes() -> None:
    out = run(lambda sink: percentiles(1, {0.5: ".median", 0.99: ".p99"}, sink),
              [lat(0, m) for m in range(100)], until=1)
    assert [(e.service, e.metric) for e in out] == [("lat.median", 50), ("lat.p99", 99)]


def test_percentiles_bins_anchor_at_first_event_and_empty_bins_emit_nothing() -> None:
    out = run(lambda sink: percentiles(2, [1], sink),
              [lat(0.5, 1), lat(1, 3), lat(3, 7), lat(9, 4)], until=12)
    # Bins [0.5, 2.5), [2.5, 4.5), then silence, then 9 falls in [8.5, 10.5).
    assert [(e.metric, e.time) for e in out] == [(3, 1), (7, 3), (4, 9)]
    assert len({e.time for e in out}) == 3


def test_percentiles_nil_metrics_skipped() -> None:
    out = run(lambda sink: percentiles(1, [0, 1], sink), [lat(0, None), lat(0, 4)], until=1)
    assert [e.metric for e in out] == [4, 4]


def test_percentiles_expired_event_discards_bin_and_stops() -> None:
    out = run(lambda sink: percentiles(2, [1], sink),
              [lat(0, 5), Event(service="lat", state="expired", time=1)], until=10)
    assert out == []
    assert len(clock()) == 0


def test_percentiles_tick_sees_exception_stream() -> None:
    errors: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    run(lambda sink: exception_stream(errors.append, percentiles(1, [0.5], broken)),
        [lat(0, 1)], until=1)
    assert [(e.service, e.state, e.time) for e in errors] == [("rillet exception", "error", 1)]


@pytest.mark.parametrize("points", [[], [1.5], [-0.1], "0.5", {0.5: 3}, 0.5])
def test_percentiles_rejects_bad_points(points: object) -> None:
    with pytest.raises((TypeError, ValueError), match="percentiles"):
        percentiles(1, points)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(timed_events(), st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_percentiles_outputs_are_ordered_by_metric(events: list[Event],
                                                   points: list[float]) -> None:
    points = sorted(points)
    out = run(lambda sink: percentiles(1000, points, sink),
              [e.evolve(state="ok", ttl=None) for e in events], until=1101)
    metrics = [e.metric for e in out]
    assert metrics == sorted(metrics)
    present = [e.metric for e in events if e.metric is not None]
    assert len(out) == (len(points) if present else 0)
    if present:
        assert metrics[0] >= min(present) and metrics[-1] <= max(present)


# fold_interval ------------------------------------------------------------------------------


def test_fold_interval_metric_sums_into_last_event() -> None:
    out = run(lambda sink: fold_interval_metric(1, sum, sink),
              [Event(host="a", metric=1, time=0), Event(host="b", metric=2, time=0.5),
               Event(host="c", time=0.6)], until=1)
    assert out == [Event(host="b", metric=3, time=0.5)]


def test_fold_interval_keeps_zero_metrics() -> None:
    out = run(lambda sink: fold_interval_metric(1, statistics.mean, sink),
              [Event(metric=0, time=0), Event(metric=4, time=0.5)], until=1)
    assert [e.metric for e in out] == [2]


def test_fold_interval_empty_interval_emits_nothing() -> None:
    # Riemann emits a bare {metric: folder([])} here (quirk §9.1.7); rillet emits nothing.
    out = run(lambda sink: fold_interval_metric(1, sum, sink), [Event(metric=2, time=0)], until=4)
    assert [(e.metric, e.time) for e in out] == [(2, 0)]


def test_fold_interval_on_an_attribute() -> None:
    out = run(lambda sink: fold_interval(2, "size", max, sink),
              [Event(size=3, time=0), Event(size=9, time=1), Event(size=4, time=1.5)], until=2)
    assert [e.get("size") for e in out] == [9]


def test_fold_interval_expired_discards_bin() -> None:
    out = run(lambda sink: fold_interval_metric(1, sum, sink),
              [Event(metric=1, time=0), Event(state="expired", metric=5, time=0.5),
               Event(metric=7, time=2)], until=3)
    assert [(e.metric, e.time) for e in out] == [(7, 2)]


def test_fold_interval_tick_sees_exception_stream() -> None:
    errors: list[Event] = []
    run(lambda sink: exception_stream(errors.append,
                                      fold_interval_metric(1, lambda xs: 1 / 0, sink)),
        [Event(metric=1, time=0)], until=1)
    assert [e.tags for e in errors] == [("exception", "ZeroDivisionError")]


def test_fold_interval_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="field"):
        fold_interval(1, lambda e: e.metric, sum)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="folder"):
        fold_interval_metric(1, "sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        fold_interval_metric(0, sum)


# rollup -------------------------------------------------------------------------------------


def test_rollup_sends_n_then_flushes_the_rest_at_window_end() -> None:
    out = run_intervals(lambda sink: rollup(2, 1, sink),
                        [(1, None), (2, None), (3, None), (4, 1.5), (5, None), (6, None),
                         (7, None), (8, 2)])
    assert out == [[1], [2], [3, 4], [5], [6], [7, 8]]


def test_rollup_window_after_a_flush_allows_n_again() -> None:
    # Riemann allows only n-1 immediate sends here (quirk §9.1.4); rillet allows n.
    out = run_intervals(lambda sink: rollup(1, 1, sink),
                        [("a", None), ("b", 1.5), ("c", None), ("d", 1)])
    assert out == [["a"], ["b"], ["c"], ["d"]]


def test_rollup_windows_align_to_construction_time() -> None:
    # The part-time-simple example: built at 1, dt 5.
    out = run(lambda sink: rollup(1, 5, sink),
              [Event(time=t) for t in [1, 2, 4, 5, 6, 8, 9, 99, 100, 101, 102]], start=1,
              until=110)
    assert [[e.time for e in b] for b in out] == [
        [1], [2, 4, 5], [6], [8, 9], [99], [100], [101], [102]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.integers(0, 50), st.sampled_from([None, 0.3, 2]))))
def test_rollup_loses_nothing_and_keeps_order(
        n: int, steps: list[tuple[int, float | None]]) -> None:
    out = run_intervals(lambda sink: rollup(n, 1, sink), [*steps, (-1, 5)])
    assert [x for group in out for x in group] == [x for x, _ in steps] + [-1]


# batch --------------------------------------------------------------------------------------


def test_batch_forwards_full_batches_at_once_and_partial_ones_at_window_end(
        runtime: Runtime) -> None:
    out = run_intervals(lambda sink: batch(2, 1, sink),
                        [(1, None), (2, None), (3, None), (4, None), (5, 1), (6, 0.5)],
                        runtime=runtime)
    assert out == [[1, 2], [3, 4], [5]]
    clock().advance(2)
    assert out == [[1, 2], [3, 4], [5], [6]]


def test_batch_window_boundary_is_anchored_not_per_batch() -> None:
    out = run(lambda sink: batch(10, 2, sink), [Event(time=t) for t in [1.9, 2.1, 3.9]], until=6)
    assert [[e.time for e in b] for b in out] == [[1.9], [2.1, 3.9]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.lists(st.tuples(st.integers(0, 50), st.sampled_from([None, 0.3, 2]))))
def test_batch_never_exceeds_n_and_loses_nothing(n: int,
                                                steps: list[tuple[int, float | None]]) -> None:
    out = run_intervals(lambda sink: batch(n, 1, sink), [*steps, (-1, 5)])
    assert all(1 <= len(b) <= n for b in out)
    assert [x for b in out for x in b] == [x for x, _ in steps] + [-1]


@pytest.mark.parametrize("make", [lambda: batch(0, 1), lambda: rollup(1.5, 1),  # type: ignore
                                  lambda: batch(1, -1), lambda: rollup(True, 1)])
def test_batch_and_rollup_reject_bad_arguments(make: object) -> None:
    with pytest.raises(ValueError, match=r"n must|dt must"):
        make()  # type: ignore[operator]


# apdex --------------------------------------------------------------------------------------


def test_apdex_scores_each_window() -> None:
    events = [Event(service="req", metric=m, time=t) for t, m in
              [(0, 0.1), (1, 0.2), (2, 0.8), (3, 3), (4, 0.6), (11, 5)]]
    out = run(lambda sink: apdex(10, lambda e: e.metric < 0.5, "metric < 1", sink),
              events, until=20)
    assert [(e.metric, e.time) for e in out] == [(0.6, 4), (0.0, 11)]


def test_apdex_ignores_expired_events() -> None:
    out = run(lambda sink: apdex(10, "metric < 1", "metric < 2", sink),
              [Event(metric=0.1, time=0), Event(metric=5, time=1, state="expired"),
               Event(metric=5, time=-100, ttl=10)], until=10)
    assert [(e.metric, e.time) for e in out] == [(1.0, 0)]
    assert run(lambda sink: apdex(10, "metric < 1", "metric < 2", sink),
               [Event(metric=5, time=1, state="expired")], until=30) == []


def test_apdex_rejects_bad_conditions() -> None:
    with pytest.raises(TypeError, match="apdex"):
        apdex(1, 0.5, "metric < 2")


# coalesce -----------------------------------------------------------------------------------


def test_coalesce_flushes_latest_per_key_every_dt() -> None:
    out = run(lambda sink: coalesce(1, sink),
              [Event(host="a", metric=1, time=0), Event(host="b", metric=2, time=0.5),
               Event(host="a", metric=3, time=1.5)], until=2)
    assert [[(e.host, e.metric) for e in f] for f in out] == [
        [("a", 1)], [("a", 1), ("b", 2)], [("a", 3), ("b", 2)]]


def test_coalesce_default_dt_is_one_second() -> None:
    s = coalesce(print)
    assert s.dt == 1 and s.children == (print,)
    out = run(lambda sink: coalesce(sink), [Event(host="a", time=0)], until=2.5)
    assert len(out) == 3


def test_coalesce_flushes_expired_once_and_keeps_flushing_the_others() -> None:
    # Riemann stops flushing everything on an expired event (quirk §9.1.5).
    out = run(lambda sink: coalesce(1, sink),
              [Event(host="a", time=0), Event(host="b", time=0),
               Event(host="a", state="expired", time=1.5)], until=3)
    assert [sorted((e.host, e.state) for e in f) for f in out] == [
        [("a", None), ("b", None)], [("a", None), ("b", None)],
        [("a", "expired"), ("b", None)], [("b", None)]]


def test_coalesce_stops_when_nothing_is_left() -> None:
    out = run(lambda sink: coalesce(1, sink), [Event(host="a", time=0, ttl=1.5)], until=10)
    assert [[e.host for e in f] for f in out] == [["a"], ["a"], ["a"]]
    assert len(clock()) == 0


@settings(max_examples=60, deadline=None)
@given(timed_events(times=st.integers(0, 30), ttls=st.none(), states=["ok", None]))
def test_coalesce_keeps_the_latest_per_key(events: list[Event]) -> None:
    out = run(lambda sink: coalesce(1, sink), events, until=31)
    latest = {(e.host, e.service): e for e in events}
    if events:
        assert Counter(out[-1]) == Counter(latest.values())
    else:
        assert out == []
