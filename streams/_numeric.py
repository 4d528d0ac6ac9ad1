"""Numeric transforms: counters, running sums and means, moving averages,
derivatives and linear prediction (spec §3.8)."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from ._clock import scheduler
from ._core import Child, Stream, register_stream
from ._periodic import PeriodicUntilExpired
from ._skew import DEFAULT_MAX_SKEW, event_time, skew_limit, skewed
from ._validate import count, is_number, number, seconds, unit_interval

__all__ = [
    "counter", "ddt", "ddt_events", "ddt_real", "ewma", "ewma_timeless", "mean_over_time",
    "predict_linear", "sum_over_time",
]


class _RunningMetric(Stream):
    """Events without a metric pass through unchanged; the others leave with
    ``metric = self._step(event, metric)``, the stream's new running value."""

    __slots__ = ()

    def _step(self, event: Any, metric: float) -> float:
        raise NotImplementedError

    def __call__(self, event: Any) -> None:
        metric = event.metric
        if metric is None:
            self._out(event)
            return
        self._out(event.evolve(metric=self._step(event, metric)))


class counter(_RunningMetric):
    """Forward each event with ``metric`` = the running total of the metrics so far.

    An event tagged ``"reset"`` sets the total to its own metric. Events
    without a metric pass through unchanged and leave the total alone.

    >>> from streams import Event
    >>> out = []
    >>> s = counter(out.append, initial=100)
    >>> for e in [Event(metric=1), Event(metric=200, tags=("reset",)), Event(), Event(metric=5)]:
    ...     s(e)
    >>> [e.metric for e in out]
    [101, 200, None, 205]
    """

    __slots__ = ("_initial", "_total")
    copy_forks = True

    def __init__(self, *children: Child, initial: float = 0) -> None:
        self._initial = number(initial, "counter(*children, initial=0)", "initial")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._total: float = self._initial

    def _step(self, event: Any, metric: float) -> float:
        self._total = metric if "reset" in event.tags else self._total + metric
        return self._total


class sum_over_time(_RunningMetric):
    """Forward each event with ``metric`` = the sum of every metric seen so far.

    An event without a metric is forwarded with no metric and leaves the sum alone.

    >>> from streams import Event
    >>> out = []
    >>> s = sum_over_time(out.append)
    >>> for m in [1, 2, None, 4]: s(Event(metric=m))
    >>> [e.metric for e in out]
    [1, 3, None, 7]
    """

    __slots__ = ("_sum",)
    copy_forks = True

    def __init__(self, *children: Child) -> None:
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._sum: float = 0

    def _step(self, event: Any, metric: float) -> float:
        self._sum += metric
        return self._sum


class mean_over_time(_RunningMetric):
    """Forward each event with ``metric`` = the mean of every metric seen so far.

    An event without a metric is forwarded with no metric and does not count.

    >>> from streams import Event
    >>> out = []
    >>> s = mean_over_time(out.append)
    >>> for m in [1, 2, None, 6]: s(Event(metric=m))
    >>> [e.metric for e in out]
    [1.0, 1.5, None, 3.0]
    """

    __slots__ = ("_count", "_sum")
    copy_forks = True

    def __init__(self, *children: Child) -> None:
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._sum: float = 0
        self._count = 0

    def _step(self, event: Any, metric: float) -> float:
        self._sum += metric
        self._count += 1
        return self._sum / self._count


class ewma_timeless(_RunningMetric):
    """Exponentially weighted moving average, one step per event: ``m = r·metric + (1−r)·m``.

    ``m`` starts at 0; ``r = 1`` forwards the metric unchanged, ``r = 0``
    always gives 0. An event without a metric is forwarded with no metric.

    >>> from streams import Event
    >>> out = []
    >>> s = ewma_timeless(0.5, out.append)
    >>> for _ in range(3): s(Event(metric=1))
    >>> [e.metric for e in out]
    [0.5, 0.75, 0.875]
    """

    __slots__ = ("_m", "r")
    copy_forks = True

    def __init__(self, r: float, *children: Child) -> None:
        self.r = unit_interval(r, "ewma_timeless(r, *children)", "r",
                               "the weight of the newest metric", "ewma_timeless(0.5, child)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._m: float = 0

    def _step(self, event: Any, metric: float) -> float:
        r = self.r
        self._m = r * metric + (1 - r) * self._m
        return self._m


class ewma(Stream):
    """Exponentially weighted moving average over event time, with a ``halflife`` in seconds.

    A metric's weight halves every ``halflife`` seconds of event time. The
    average starts from 0 (so with halflife 1 a first metric of 1 gives 0.5);
    events at the same time accumulate, late events are added with the weight
    they would have had. The output carries the latest event time seen. An
    event without a metric passes through unchanged; one without a time
    counts as time 0. An event whose time lies more than ``max_skew`` seconds
    from the clock (default one hour, ``None`` trusts every time) is dropped
    and counted in ``skewed`` (see ``DEFAULT_MAX_SKEW``): trusted, a
    year-ahead time would become the latest time and give every later metric
    a weight of nothing.

    >>> from streams import Event
    >>> out = []
    >>> s = ewma(1, out.append)
    >>> for t in [0, 1, 2]: s(Event(metric=1, time=t))
    >>> [(e.metric, e.time) for e in out]
    [(0.5, 0), (0.75, 1), (0.875, 2)]
    """

    __slots__ = ("_metric", "_r", "_time", "halflife", "max_skew", "skewed")
    copy_forks = True

    def __init__(self, halflife: float, *children: Child,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.halflife = seconds(halflife, "ewma(halflife, *children)", "halflife")
        self.max_skew = skew_limit(max_skew, "ewma(halflife, *children, max_skew=...)")
        self._r = 0.5 ** (1 / self.halflife)
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self.skewed = 0
        self._metric: float = 0
        self._time: float | None = None

    def __call__(self, event: Any) -> None:
        metric = event.metric
        if metric is None:
            self._out(event)
            return
        t = event.time
        if t is None:
            t = 0
        elif skewed(self, t):
            return
        previous = t if self._time is None else self._time
        r, delta = self._r, t - previous
        if delta > 0:
            self._metric = (1 - r) * metric + self._metric * r ** delta
            self._time = t
        elif delta < 0:
            self._metric += (1 - r) * metric * r ** -delta
        else:
            self._metric += (1 - r) * metric
            self._time = t
        self._out(event.evolve(metric=self._metric, time=self._time))


def _time_of(event: Any, caller: str) -> float:
    time: float = event_time(event, caller, "a rate of change needs the time of each event")
    return time


class ddt_events(Stream):
    """Forward each metric's rate of change per second since the previous one (event time).

    The first metric-bearing event, and any at the same time as its
    predecessor, produce nothing. Events without a metric are ignored. A
    metric-bearing event without a time fails when it is compared: as in
    Riemann, the first one is accepted and the next one raises.
    An event whose time lies more than ``max_skew`` seconds from the clock
    (default one hour, ``None`` trusts every time) is dropped and counted in
    ``skewed`` (see ``DEFAULT_MAX_SKEW``) and is not
    compared with the next one.

    >>> from streams import Event
    >>> out = []
    >>> s = ddt_events(out.append)
    >>> for t, m in [(0, 1), (2, 5), (2, 6), (3, 9)]: s(Event(metric=m, time=t))
    >>> [(e.time, e.metric) for e in out]
    [(2, 2.0), (3, 3.0)]
    """

    __slots__ = ("_previous", "max_skew", "skewed")
    copy_forks = True

    def __init__(self, *children: Child, max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.max_skew = skew_limit(max_skew, "ddt_events(*children, max_skew=...)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self.skewed = 0
        self._previous: Any = None

    def __call__(self, event: Any) -> None:
        metric = event.metric
        if metric is None:
            return
        time = event.time
        if time is not None and skewed(self, time):
            return
        # As Riemann: the event becomes the previous one before anything is
        # checked, so a first event without a time is accepted and the next
        # one fails (and one after that works again).
        previous, self._previous = self._previous, event
        if previous is None:
            return
        caller = "ddt_events(*children)"
        dt = _time_of(event, caller) - _time_of(previous, caller)
        if dt:
            self._out(event.evolve(metric=(metric - previous.metric) / dt))


class ddt_real(Stream):
    """Every ``interval`` seconds, forward the rate of change between the last two snapshots.

    Ticks start with the first event and stop like ``rate``'s (an expired
    event, or the latest event's ``time + ttl`` passing). At each tick the
    newest metric-bearing event becomes the new snapshot; the output is it
    with ``time`` = now and ``metric`` = (m₂ − m₁) / (t₂ − t₁) against the
    previous snapshot, so an interval without new events gives 0. Nothing is
    emitted until two metric-bearing events have been seen. An event whose
    time lies more than ``max_skew`` seconds from the clock (default one hour,
    ``None`` trusts every time) is dropped and counted in ``skewed`` (see
    ``DEFAULT_MAX_SKEW``) and never becomes a snapshot.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: ddt_real(1, sink),
    ...           [Event(metric=1, time=0), Event(metric=3, time=0.5)], until=3)
    >>> [(e.time, e.metric) for e in out]
    [(1, 4.0), (2, 0), (3, 0)]
    """

    __slots__ = ("_fresh", "_newest", "_older", "_seen", "_timer", "interval", "max_skew",
                 "skewed")

    def __init__(self, interval: float, *children: Child,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.interval = seconds(interval, "ddt_real(interval, *children)")
        self.max_skew = skew_limit(max_skew, "ddt_real(interval, *children, max_skew=...)")
        self.skewed = 0
        self._set_children(children)
        self._fresh: Any = None
        self._newest: Any = None
        self._older: Any = None
        self._seen = 0
        self._timer = PeriodicUntilExpired(self.interval, self._tick)

    def __call__(self, event: Any) -> None:
        time = event.time
        if time is not None and skewed(self, time):
            return
        if event.metric is not None:
            self._fresh = event
            self._seen += 1
        self._timer.observe(event)

    def _tick(self) -> None:
        fresh, self._fresh = self._fresh, None
        self._older = self._newest
        if fresh is not None:
            self._newest = fresh
        newest, older = self._newest, self._older
        if newest is None or older is None or self._seen < 2:
            return
        caller = "ddt_real(interval, *children)"
        dt = _time_of(newest, caller) - _time_of(older, caller)
        rate = (newest.metric - older.metric) / dt if dt else 0
        self._emit_from_timer(newest.evolve(metric=rate, time=scheduler().now()))

    def close(self) -> None:
        self._timer.stop()
        super().close()


@register_stream
def ddt(*args: Any, **options: Any) -> Stream:
    """Riemann's ``ddt``: ``ddt(*children)`` is :class:`ddt_events`, ``ddt(interval,
    *children)`` (a number first) is :class:`ddt_real`.

    >>> ddt(print), ddt(5, print)
    (ddt_events(print), ddt_real(5, print))
    """
    if args and is_number(args[0]):
        return ddt_real(*args, **options)
    return ddt_events(*args, **options)


class predict_linear(Stream):
    """Forward the newest event with the metric predicted ``s`` seconds ahead.

    A least-squares line of metric over event time is fitted to the last
    ``n`` events (from two events on); the output is the newest event with
    ``metric`` = the line's value at ``time + s``. With ``rebuild_every``
    (seconds of the stream clock) the line is refitted only when that much
    time has passed since the last fit, otherwise the cached line is used.
    Events without a metric or a time raise, as do windows whose events all
    share one time. An event whose time lies more than ``max_skew`` seconds
    from the clock (default one hour, ``None`` trusts every time) is dropped
    and counted in ``skewed`` (see ``DEFAULT_MAX_SKEW``): in the fit, one such
    time would skew every prediction of the next ``n`` events.

    >>> from streams import Event
    >>> out = []
    >>> s = predict_linear(3, 10, out.append)
    >>> for t, m in [(0, 0), (1, 2), (2, 4)]: s(Event(metric=m, time=t))
    >>> [e.metric for e in out]
    [22.0, 24.0]
    """

    __slots__ = ("_built_at", "_line", "_window", "max_skew", "n", "rebuild_every", "s",
                 "skewed")

    def __init__(self, n: int, s: float, *children: Child,
                 rebuild_every: float | None = None,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        caller = "predict_linear(n, s, *children, rebuild_every=None, max_skew=3600)"
        self.max_skew = skew_limit(max_skew, caller)
        self.skewed = 0
        self.n = count(n, caller, minimum=2, example="predict_linear(10, 60, child)")
        self.s = number(s, caller, "s", "predict_linear(10, 60, child)")
        if rebuild_every is not None:
            rebuild_every = seconds(rebuild_every, caller, "rebuild_every")
        self.rebuild_every = rebuild_every
        self._window: deque[Any] = deque(maxlen=n)
        self._line: tuple[float, float] | None = None
        self._built_at = -math.inf
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        caller = "predict_linear(n, s, *children)"
        if event.metric is None:
            raise ValueError(f"{caller}: the event has no metric to predict from: {event!r}")
        if skewed(self, _time_of(event, caller)):
            return
        self._window.append(event)
        if len(self._window) < 2:
            return
        now = scheduler().now()
        every = self.rebuild_every
        if self._line is None or every is None or now - self._built_at > every:
            self._line = _least_squares(self._window)
            self._built_at = now
        slope, intercept = self._line
        self._out(event.evolve(metric=intercept + (event.time + self.s) * slope))


def _least_squares(events: deque[Any]) -> tuple[float, float]:
    xs = [e.time for e in events]
    ys = [e.metric for e in events]
    mean_x, mean_y = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    spread = math.fsum((x - mean_x) ** 2 for x in xs)
    if not spread:
        raise ValueError(f"predict_linear: the last {len(xs)} events all have time {xs[0]!r}, "
                         f"so no line can be fitted; wait for events at different times")
    slope = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, mean_y - slope * mean_x
