"""Folds: functions from a list of events to one event (Riemann's ``riemann.folds``, spec §4).

"Friendly" folds skip None events and None metrics; the starred strict
variants (``sum_strict`` for Riemann's ``sum*``) raise on them. A fold that
returns one event returns None for an empty list. Numbers follow Python:
``/`` gives floats, and a division by zero is reported, not raised.

>>> from streams import Event
>>> mean([Event(metric=2), Event(metric=4), None, Event(metric=6)])
Event(metric=4.0)
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import toolz

from ._clock import now
from ._event import Event

__all__ = [
    "count", "difference", "difference_strict", "extremum", "fold", "fold_all", "fold_strict",
    "maximum", "mean", "median", "minimum", "mode", "modes", "non_nil_metrics", "product",
    "product_strict", "quotient",
    "quotient_sloppy", "quotient_strict", "sorted_sample", "sorted_sample_extract", "std_dev",
    "sum", "sum_strict",
]

Events = Iterable[Any]
_IDENTITY: dict[Callable[..., Any], Any] = {operator.add: 0, operator.mul: 1}


def _non_nil(events: Events) -> list[Any]:
    return [e for e in events if e is not None]


def non_nil_metrics(events: Events) -> list[Any]:
    """The metrics of the events, leaving out None events and None metrics.

    >>> non_nil_metrics([Event(metric=1), None, Event(), Event(metric=0)])
    [1, 0]
    """
    return [e.metric for e in events if e is not None and e.metric is not None]


def sorted_sample_extract(events: Events, points: Iterable[float]) -> list[Any]:
    """The events at quantiles ``points`` of the metric, nearest-rank, upper.

    >>> ms = [Event(metric=m) for m in [6, 1, 2, 1, 1]]
    >>> [e.metric for e in sorted_sample_extract(ms, [0, 0.5, 1])]
    [1, 1, 6]
    """
    ranked = sorted((e for e in events if e is not None and e.metric is not None
                     and e.metric is not False), key=lambda e: e.metric)
    n = len(ranked)
    if not n:
        return []
    return [ranked[min(n - 1, math.floor(n * p))] for p in points]


def sorted_sample(events: Events, points: Iterable[float] | Mapping[float, str]) -> list[Any]:
    """Like :func:`sorted_sample_extract`, with each service suffixed by its point.

    >>> [e.service for e in sorted_sample([Event(service="lat", metric=1)], [0, 0.5, 1])]
    ['lat 0', 'lat 0.5', 'lat 1']
    """
    if isinstance(points, Mapping):
        suffixes = list(points.values())
        points = list(points.keys())
    else:
        points = list(points)
        suffixes = [f" {p}" for p in points]
    picked = sorted_sample_extract(events, points)
    return [e.evolve(service=(e.service or "") + suffix)
            for e, suffix in zip(picked, suffixes, strict=False)]


def fold_strict(f: Callable[[Any, Any], Any], events: Sequence[Any]) -> Any:
    """The first event with ``metric = reduce(f, metrics)``; raises on None.

    >>> fold_strict(operator.add, [Event(metric=1), Event(metric=2)])
    Event(metric=3)
    """
    metrics = [e.metric for e in events]
    if any(m is None for m in metrics):
        raise TypeError(f"{_name(f)}: an event or metric was None in {list(events)!r}")
    if not metrics:
        return None
    return events[0].evolve(metric=functools.reduce(f, metrics))


def fold(f: Callable[[Any, Any], Any], events: Events) -> Any:
    """The first event with ``metric = reduce(f, non-None metrics)``; None-friendly.

    With no metrics at all the metric is f's identity (0 for sum, 1 for product).

    >>> fold(operator.add, [Event(metric=1), Event(), None, Event(metric=2)])
    Event(metric=3)
    """
    present = _non_nil(events)
    if not present:
        return None
    metrics = non_nil_metrics(present)
    if not metrics:
        if f not in _IDENTITY:
            raise TypeError(f"fold({_name(f)}, ...): no metrics to fold and no identity for it")
        return present[0].evolve(metric=_IDENTITY[f])
    return present[0].evolve(metric=functools.reduce(f, metrics))


def _name(f: Callable[..., Any]) -> str:
    return getattr(f, "__name__", repr(f))


def fold_all(f: Callable[[Any, Any], Any], events: Sequence[Any]) -> Any:
    """Reduce every metric with ``f``; a None event or metric gives metric None with a reason.

    >>> fold_all(operator.sub, [Event(metric=10), Event(metric=3), Event(metric=2)])
    Event(metric=5)
    >>> fold_all(operator.sub, [Event(metric=10), Event()]).description
    'An event or metric was nil.'
    """
    events = list(events)
    if not events or events[0] is None:
        return None
    first = events[0]
    if len(events) == 1:
        return first
    try:
        metrics = [e.metric for e in events]
        if any(m is None for m in metrics):
            raise TypeError
        return first.evolve(metric=functools.reduce(f, metrics))
    except (TypeError, AttributeError):
        return first.evolve(metric=None, description="An event or metric was nil.")
    except ZeroDivisionError:
        return first.evolve(metric=None, description="Can't divide by zero")


def sum(events: Events) -> Any:  # Riemann's name; shadows the builtin only inside this module
    """Sum of the metrics (None-friendly).

    >>> sum([Event(metric=1), Event(metric=2.5)])
    Event(metric=3.5)
    """
    return fold(operator.add, events)


def sum_strict(events: Sequence[Any]) -> Any:
    """Riemann's ``sum*``: raises on None."""
    return fold_strict(operator.add, events)


def product(events: Events) -> Any:
    """Product of the metrics (None-friendly).

    >>> product([Event(metric=2), Event(metric=3)])
    Event(metric=6)
    """
    return fold(operator.mul, events)


def product_strict(events: Sequence[Any]) -> Any:
    """Riemann's ``product*``."""
    return fold_strict(operator.mul, events)


def difference(events: Sequence[Any]) -> Any:
    """First metric minus the others.

    >>> difference([Event(metric=10), Event(metric=3), Event(metric=2)]).metric
    5
    """
    return fold_all(operator.sub, events)


def difference_strict(events: Sequence[Any]) -> Any:
    """Riemann's ``difference*``."""
    return fold_strict(operator.sub, events)


def quotient(events: Sequence[Any]) -> Any:
    """First metric divided by the others; a zero divisor gives metric None with a reason.

    >>> quotient([Event(metric=1), Event(metric=4)]).metric
    0.25
    >>> quotient([Event(metric=1), Event(metric=0)]).description
    "Can't divide by zero"
    """
    return fold_all(operator.truediv, events)


def quotient_strict(events: Sequence[Any]) -> Any:
    """Riemann's ``quotient*``: raises ZeroDivisionError and on None."""
    return fold_strict(operator.truediv, events)


def quotient_sloppy(events: Sequence[Any]) -> Any:
    """Like :func:`quotient`, but any zero metric gives metric 0.

    >>> quotient_sloppy([Event(metric=2), Event(metric=0)]).metric
    0
    """
    events = list(events)
    if events and events[0] is not None:
        for e in events:
            if e.metric is None:
                raise TypeError("quotient_sloppy: an event or metric was None")
            if e.metric == 0:
                return events[0].evolve(metric=0)
    return quotient(events)


def mean(events: Events) -> Any:
    """The first event with the mean of the non-None metrics.

    >>> mean([Event(metric=1), Event(metric=2)]).metric
    1.5
    """
    present = _non_nil(events)
    metrics = non_nil_metrics(present)
    if not metrics:
        return None
    return present[0].evolve(metric=math.fsum(metrics) / len(metrics))


def median(events: Events) -> Any:
    """The upper median event by metric (not averaged).

    >>> median([Event(metric=m) for m in [1, 2, 3, 4]]).metric
    3
    """
    picked = sorted_sample_extract(events, [0.5])
    return picked[0] if picked else None


def extremum(comparison: Callable[[Any, Any], Any], events: Events) -> Any:
    """The event whose metric wins ``comparison``: each later event with a metric
    replaces the best so far when ``comparison(its metric, best metric)`` is true.

    None events and metrics are skipped; nothing usable gives None.

    >>> extremum(lambda a, b: abs(a) > abs(b), [Event(metric=3), Event(metric=-5), None]).metric
    -5
    """
    best = None
    for e in events:
        if e is None or e.metric is None:
            continue
        if best is None or comparison(e.metric, best.metric):
            best = e
    return best


def minimum(events: Events) -> Any:
    """The event with the smallest metric; ties go to the later event.

    >>> minimum([Event(metric=1, host="a"), Event(metric=1, host="b"), Event()]).host
    'b'
    """
    return extremum(operator.le, events)


def maximum(events: Events) -> Any:
    """The event with the largest metric; ties go to the later event.

    >>> maximum([Event(metric=5, host="a"), Event(metric=2, host="b")]).host
    'a'
    """
    return extremum(operator.ge, events)


def std_dev(events: Events) -> Any:
    """Population standard deviation of the non-None metrics, in the first event.

    >>> round(std_dev([Event(metric=m) for m in [600, None, 470, 170, 430, 300]]).metric, 4)
    147.3228
    """
    present = _non_nil(events)
    if not present:
        return None
    metrics = non_nil_metrics(present)
    if not metrics:
        raise ValueError("std_dev: events without any metric have no standard deviation")
    average = math.fsum(metrics) / len(metrics)
    variance = math.fsum((m - average) ** 2 for m in metrics) / len(metrics)
    return present[0].evolve(metric=math.sqrt(variance))


def count(events: Events | None) -> Any:
    """How many (non-None) events, in the first of them; none gives a fresh event with 0.

    >>> count([Event(metric=5, time=5), Event(metric=3, time=3)])
    Event(metric=2, time=5)
    """
    present = _non_nil(events or ())
    if not present:
        return Event(metric=0, time=round(now()))
    return present[0].evolve(metric=len(present))


def modes(events: Events) -> list[Any]:
    """One event per most frequent metric: the latest event of each such group.

    >>> [e.metric for e in modes([Event(metric=1), Event(metric=2), Event(metric=1)])]
    [1]
    """
    present = _non_nil(events)
    counts = toolz.frequencies(e.metric for e in present)
    if not counts:
        return []
    # Later events overwrite earlier ones: each group is represented by its latest.
    latest = {e.metric: e for e in present}
    top = max(counts.values())
    return [latest[m] for m, c in counts.items() if c == top]


def mode(events: Events) -> Any:
    """The first of :func:`modes`, or None."""
    found = modes(events)
    return found[0] if found else None
