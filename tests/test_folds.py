"""Folds: functions from a list of events to an event (spec §4)."""

from __future__ import annotations

import math
import operator
import statistics
from typing import Any

import pytest
from _helpers import relaxed
from hypothesis import given
from hypothesis import strategies as st

from streams import Event, folds
from streams.testing import clock


def m(*metrics: Any) -> list[Any]:
    """Events with these metrics; None stays a None event, "-" an event without a metric."""
    return [None if x is None else Event() if x == "-" else Event(metric=x) for x in metrics]


def metric_of(result: Any) -> Any:
    return None if result is None else result.metric


FOLD_TABLE = [
    # (fold, input, expected metric of the result)
    (folds.sum, m(1, 2.5), 3.5),
    (folds.sum, m(1, "-", None, 2), 3),
    (folds.sum, m("-", "-"), 0),  # no metrics: f's identity
    (folds.sum, m(), None),
    (folds.sum, m(None), None),
    (folds.product, m(2, 3), 6),
    (folds.product, m("-"), 1),
    (folds.difference, m(10, 3, 2), 5),
    (folds.difference, m(10), 10),
    (folds.quotient, m(1, 4), 0.25),  # Python: a float, Riemann: the ratio 1/4
    (folds.quotient, m(1, 0), None),
    (folds.quotient, m(1.0, 0.0), None),
    (folds.quotient_sloppy, m(2, 0), 0),
    (folds.quotient_sloppy, m(0, 2), 0),
    (folds.quotient_sloppy, m(2, -3), -2 / 3),
    (folds.mean, m(2, 4, "-", 6, None), 4.0),
    (folds.mean, m(1, 2), 1.5),
    (folds.mean, m("-"), None),
    (folds.median, m(1, 2, 3, 4), 3),  # the upper median, not averaged
    (folds.median, m(3, 1, 2), 2),
    (folds.median, m(), None),
    (folds.minimum, m(3, None, 1, "-", 2), 1),
    (folds.maximum, m(3, None, 1, "-", 2), 3),
    (folds.minimum, m("-"), None),
    (folds.std_dev, m(600, "-", 470, 170, 430, 300), pytest.approx(147.32277488562318)),
    (folds.std_dev, m(), None),
    (folds.count, m(5, "-", None, 3), 3),
    (folds.mode, m(1, 2, 1), 1),
    (folds.mode, m(), None),
]


@pytest.mark.parametrize(("fold", "events", "expected"), FOLD_TABLE)
def test_fold_table(fold: Any, events: list[Any], expected: Any) -> None:
    assert metric_of(fold(events)) == expected


def test_folds_keep_the_first_non_none_event() -> None:
    events = [None, Event(host="first", metric=1), Event(host="second", metric=2)]
    for fold in [folds.sum, folds.product, folds.mean, folds.std_dev, folds.count]:
        assert fold(events).host == "first", fold
    assert folds.mean([Event(metric=2), Event(metric=4), Event(), Event(metric=6), None]) == (
        Event(metric=4.0)
    )


def test_fold_all_reports_none_and_zero_division_in_the_description() -> None:
    nil = folds.difference([Event(metric=10), Event()])
    assert nil == Event(description="An event or metric was nil.")
    assert folds.difference([Event(metric=10), None]).description == "An event or metric was nil."
    zero = folds.quotient([Event(metric=1, host="h"), Event(metric=0)])
    assert zero == Event(host="h", description="Can't divide by zero")
    # quirk kept: a single event with no metric comes back as is, no description
    assert folds.fold_all(operator.sub, [Event(host="h")]) == Event(host="h")
    assert folds.fold_all(operator.sub, [None, Event(metric=1)]) is None
    assert folds.fold_all(operator.sub, []) is None


def test_strict_folds_raise_on_none() -> None:
    assert folds.sum_strict([Event(metric=1), Event(metric=2)]) == Event(metric=3)
    assert folds.product_strict([Event(metric=2), Event(metric=3)]) == Event(metric=6)
    assert folds.difference_strict([Event(metric=5), Event(metric=3)]) == Event(metric=2)
    assert folds.quotient_strict([Event(metric=1), Event(metric=2)]) == Event(metric=0.5)
    assert folds.sum_strict([]) is None
    with pytest.raises(TypeError):
        folds.sum_strict([Event(metric=1), Event()])
    with pytest.raises(AttributeError):
        folds.sum_strict([Event(metric=1), None])
    with pytest.raises(ZeroDivisionError):
        folds.quotient_strict([Event(metric=1), Event(metric=0)])


def test_quotient_sloppy_raises_on_a_none_metric_before_any_zero() -> None:
    with pytest.raises(TypeError):
        folds.quotient_sloppy([Event(metric=1), Event(), Event(metric=0)])
    assert folds.quotient_sloppy([Event(metric=1), Event(metric=0), Event()]) == Event(metric=0)


def test_fold_without_an_identity_raises_on_no_metrics() -> None:
    with pytest.raises(TypeError, match="no identity"):
        folds.fold(max, [Event()])
    assert folds.fold(max, [Event(metric=1), Event(metric=3)]) == Event(metric=3)


def test_std_dev_of_events_without_metrics_raises() -> None:
    with pytest.raises(ValueError):
        folds.std_dev([Event()])


def test_minimum_and_maximum_ties_go_to_the_later_event() -> None:
    events = [Event(metric=1, host="a"), Event(metric=1, host="b")]
    assert folds.minimum(events).host == "b"
    assert folds.maximum(events).host == "b"


def test_non_nil_metrics_returns_the_metrics_as_riemann_does() -> None:
    # Riemann: (keep (fn [e] (when-not (nil? e) (:metric e))) events): metrics, not events.
    assert folds.non_nil_metrics([Event(metric=1), None, Event(), Event(metric=0),
                                  Event(metric=2.5)]) == [1, 0, 2.5]
    assert folds.non_nil_metrics([]) == []


@given(st.lists(st.one_of(st.none(), st.builds(Event, metric=st.one_of(
    st.none(), st.integers(-5, 5))))))
def test_extremum_with_le_and_ge_is_minimum_and_maximum(events: list[Any]) -> None:
    assert folds.extremum(operator.le, events) is folds.minimum(events)
    assert folds.extremum(operator.ge, events) is folds.maximum(events)
    metrics = folds.non_nil_metrics(events)
    best = folds.extremum(operator.lt, events)
    assert (best is None) == (not metrics)
    if metrics:
        assert best.metric == min(metrics)
        # With a strict comparison the first of the tied events wins.
        assert best is next(e for e in events if e is not None and e.metric == min(metrics))


def test_extremum_takes_any_comparison() -> None:
    closest_to_ten = folds.extremum(lambda a, b: abs(a - 10) < abs(b - 10),
                                    [Event(metric=m) for m in [3, 12, 9, 30]])
    assert closest_to_ten.metric == 9
    assert folds.extremum(operator.lt, [None, Event()]) is None


def test_count_of_nothing_is_a_fresh_zero_event_at_now() -> None:
    clock().set(1.4)
    assert folds.count(None) == Event(metric=0, time=1)
    assert folds.count([]) == Event(metric=0, time=1)
    assert folds.count([Event(metric=5, time=5), Event(metric=3, time=3)]) == (
        Event(metric=2, time=5)
    )
    # counts events without a metric and expired ones too
    assert folds.count([Event(), Event(state="expired")]).metric == 2


@pytest.mark.parametrize(
    ("metrics", "points", "expected"),
    [
        ([6, 1, 2, 1, 1], [0, 0.5, 1], [1, 1, 6]),
        ([2, 1], [0, 0.5, 1], [1, 2, 2]),
        ([], [0.5], []),
        ([None, 3], [0], [3]),
    ],
)
def test_sorted_sample_extract(metrics: list[Any], points: list[float],
                               expected: list[Any]) -> None:
    events = [Event(metric=x) for x in metrics]
    assert [e.metric for e in folds.sorted_sample_extract(events, points)] == expected


def test_sorted_sample_suffixes_the_service() -> None:
    assert [e.service for e in folds.sorted_sample([Event(metric=1)], [0, 0.5, 1])] == [
        " 0", " 0.5", " 1"
    ]
    picked = folds.sorted_sample([Event(service="lat", metric=1)], {0.5: ".median", 1: ".max"})
    assert [e.service for e in picked] == ["lat.median", "lat.max"]


def test_modes_group_by_metric_and_keep_the_latest_event() -> None:
    events = [Event(metric=1, host="a"), Event(metric=2, host="b"), Event(metric=1, host="c"),
              Event(metric=2, host="d"), Event(host="e")]
    assert [(e.metric, e.host) for e in folds.modes(events)] == [(1, "c"), (2, "d")]
    assert folds.modes([]) == []
    assert folds.modes([Event(host="x")]) == [Event(host="x")]  # None is a valid group


# Properties: folds agree with plain Python math ------------------------------------

metrics_lists = st.lists(st.one_of(st.none(), st.integers(-1000, 1000),
                                   st.floats(-1000, 1000, allow_nan=False)), max_size=20)


def events_of(metrics: list[Any]) -> list[Event]:
    return [Event(metric=x) for x in metrics]


@relaxed
@given(metrics_lists)
def test_folds_agree_with_python_math(metrics: list[Any]) -> None:
    present = [x for x in metrics if x is not None]
    events = events_of(metrics)
    if not events:
        assert folds.sum(events) is None and folds.mean(events) is None
        return
    assert folds.sum(events).metric == pytest.approx(math.fsum(present), abs=1e-6)
    assert folds.product(events).metric == pytest.approx(math.prod(present), rel=1e-9)
    assert folds.count(events).metric == len(metrics)
    if present:
        assert folds.mean(events).metric == pytest.approx(statistics.fmean(present))
        assert folds.minimum(events).metric == min(present)
        assert folds.maximum(events).metric == max(present)
        assert folds.std_dev(events).metric == pytest.approx(statistics.pstdev(present),
                                                             abs=1e-6)
        ranked = sorted(present)
        assert folds.median(events).metric == ranked[len(ranked) // 2]
    else:
        assert folds.mean(events) is None and folds.minimum(events) is None


@relaxed
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=10))
def test_difference_and_quotient_agree_with_python(metrics: list[int]) -> None:
    events = events_of(metrics)
    assert folds.difference(events).metric == metrics[0] - sum(metrics[1:])
    if 0 in metrics[1:]:
        assert folds.quotient(events).description == "Can't divide by zero"
    else:
        expected = float(metrics[0])
        for x in metrics[1:]:
            expected /= x
        assert folds.quotient(events).metric == pytest.approx(expected)


@relaxed
@given(st.lists(st.integers(0, 5), max_size=20))
def test_modes_are_the_most_common_metrics(metrics: list[int]) -> None:
    found = folds.modes(events_of(metrics))
    if not metrics:
        assert found == []
        return
    counts = {x: metrics.count(x) for x in metrics}
    top = max(counts.values())
    assert sorted(e.metric for e in found) == sorted(x for x, c in counts.items() if c == top)


@relaxed
@given(st.lists(st.integers(-100, 100), min_size=1, max_size=20),
       st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_sorted_sample_extract_is_nearest_rank(metrics: list[int], points: list[float]) -> None:
    picked = folds.sorted_sample_extract(events_of(metrics), points)
    ranked = sorted(metrics)
    assert [e.metric for e in picked] == [
        ranked[min(len(ranked) - 1, math.floor(len(ranked) * p))] for p in points
    ]
