"""Interval rollups on the clock: percentiles, fold_interval, rollup, batch, apdex,
coalesce (spec §3.7).

``rate`` and ``throttle``, the other §3.7 streams, live in ``_aggregate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._clock import Task, scheduler
from ._core import Child, Stream, is_expired, rescued
from ._filters import predicate
from ._match import field_getter
from ._periodic import PeriodicUntilExpired, TimeWindows
from ._skew import DEFAULT_MAX_SKEW, SkewChecked, skew_limit
from ._validate import argument_error, count, function, seconds, unit_interval
from .folds import sorted_sample

__all__ = [
    "apdex", "batch", "coalesce", "fold_interval", "fold_interval_metric", "percentiles",
    "rollup",
]


class _TimeBins:
    """Riemann's part-time-fast (§3.0.6): bins anchored at the first event.

    The first live event opens a bin and starts a PeriodicUntilExpired timer
    with ``delay=interval``; each tick opens a fresh bin and calls
    ``finish(old_bin, start, end)``, also for a bin that stayed empty. An
    expired event discards the open bin and stops the ticks.
    """

    __slots__ = ("_add", "_bin", "_create", "_finish", "_start", "timer")

    def __init__(self, interval: float, create: Callable[[], Any],
                 add: Callable[[Any, Any], object],
                 finish: Callable[[Any, float, float], object],
                 owner: SkewChecked | None = None) -> None:
        self._create = create
        self._add = add
        self._finish = finish
        self._bin: Any = None
        self._start: float | None = None
        self.timer = PeriodicUntilExpired(interval, self._switch, delay=interval, owner=owner)

    def observe(self, event: Any) -> None:
        expired = self.timer.observe(event)
        if expired is None:
            return  # too far from the clock: counted on the owner
        if expired:
            self._bin = self._start = None
            return
        if self._bin is None:
            self._start, self._bin = scheduler().now(), self._create()
        self._add(self._bin, event)

    def _switch(self) -> None:
        now = scheduler().now()
        old, start = self._bin, self._start
        self._start, self._bin = now, self._create()
        self._finish(self._create() if old is None else old, now if start is None else start, now)

    def stop(self) -> None:
        self.timer.stop()


def _append(bin_: list[Any], event: Any) -> None:
    bin_.append(event)


def _points(points: Any) -> Iterable[float] | Mapping[float, str]:
    caller = "percentiles(interval, points, *children)"
    keys = list(points.keys()) if isinstance(points, Mapping) else points
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable) or not keys:
        raise argument_error(caller, "points", points,
                             "a non-empty list of quantiles or a dict {quantile: suffix}",
                             "[0.5, 0.95, 0.99]")
    keys = [unit_interval(p, caller, f"every point of {points!r}", "a quantile",
                          "0.99 for the 99th percentile") for p in keys]
    if isinstance(points, Mapping):
        for suffix in points.values():
            if not isinstance(suffix, str):
                raise argument_error(caller, f"every suffix of {points!r}", suffix, "a string",
                                     "{0.99: '.p99'}")
        return dict(zip(keys, points.values(), strict=True))
    return keys


class percentiles(Stream):
    """Every ``interval`` seconds, forward the events at the given quantiles of the metric.

    Bins start at the first event and last ``interval`` seconds; at the end of
    each bin the events at each point (nearest rank, upper) are forwarded with
    ``" <point>"`` (or the dict's suffix) appended to their service. Empty bins
    emit nothing; an expired event discards the open bin.
    An event whose time lies more than ``max_skew`` seconds in the past
    (default one hour, ``None`` trusts every time) is dropped and counted in
    ``skewed`` (see ``DEFAULT_MAX_SKEW``): trusted, it would count as expired
    and discard the open bin of every host. Only expiry reads event time
    here, so an event ahead of the clock is counted like any other.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: percentiles(10, [0, 0.5, 1], sink),
    ...           [Event(service="lat", metric=m, time=t) for t, m in enumerate([5, 1, 3, 4, 2])],
    ...           until=10)
    >>> [(e.service, e.metric) for e in out]
    [('lat 0', 1), ('lat 0.5', 3), ('lat 1', 5)]
    """

    __slots__ = ("_bins", "_points", "interval", "max_skew", "skewed")
    copy_forks = True

    def __init__(self, interval: float, points: Iterable[float] | Mapping[float, str],
                 *children: Child, max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.interval = seconds(interval, "percentiles(interval, points, *children)")
        self.max_skew = skew_limit(max_skew,
                                   "percentiles(interval, points, *children, max_skew=...)")
        self._points = _points(points)
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self.skewed = 0
        self._bins = _TimeBins(self.interval, list, _append, self._finish, owner=self)

    def __call__(self, event: Any) -> None:
        self._bins.observe(event)

    def _finish(self, bin_: list[Any], start: float, end: float) -> None:
        for picked in sorted_sample(bin_, self._points):
            self._emit_from_timer(picked)

    def close(self) -> None:
        self._bins.stop()
        super().close()


def _present(value: Any) -> bool:
    # Clojure truthiness: a metric of 0 is data, not absence.
    return value is not None and value is not False


class fold_interval(Stream):
    """Every ``interval`` seconds, fold the ``field`` values of the bin into its last event.

    ``folder`` receives the list of the bin's ``field`` values (events where
    the field is None are left out) and its result replaces ``field`` in the
    last such event. Bins start at the first event; an empty bin emits nothing;
    an expired event discards the open bin.
    An event whose time lies more than ``max_skew`` seconds in the past
    (default one hour, ``None`` trusts every time) is dropped and counted in
    ``skewed`` (see ``DEFAULT_MAX_SKEW``): trusted, it would count as expired
    and discard the open bin of every host. Only expiry reads event time
    here, so an event ahead of the clock is counted like any other.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: fold_interval(5, "metric", sum, sink),
    ...           [Event(host="a", metric=m, time=t) for t, m in [(0, 1), (1, 2), (2, 4)]],
    ...           until=5)
    >>> out
    [Event(host='a', metric=7, time=2)]
    """

    __slots__ = ("_bins", "_get", "field", "folder", "interval", "max_skew", "skewed")

    def __init__(self, interval: float, field: str, folder: Callable[[list[Any]], Any],
                 *children: Child, max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        caller = f"{type(self).__name__}(interval, field, folder, *children)"
        self.interval = seconds(interval, caller)
        self.max_skew = skew_limit(max_skew, caller[:-1] + ", max_skew=...)")
        self.skewed = 0
        if not isinstance(field, str):
            raise argument_error(caller, "field", field, "a field name", "'metric'")
        function(folder, caller, "folder", "a list of values", "sum, max or statistics.mean")
        self.field = field
        self.folder = folder
        self._get = field_getter(field)
        self._set_children(children)
        self._bins = _TimeBins(self.interval, list, self._add, self._finish, owner=self)

    def __call__(self, event: Any) -> None:
        self._bins.observe(event)

    def _add(self, bin_: list[Any], event: Any) -> None:
        if _present(self._get(event)):
            bin_.append(event)

    def _finish(self, bin_: list[Any], start: float, end: float) -> None:
        if not bin_:
            return
        folded = self.folder([self._get(e) for e in bin_])
        self._emit_from_timer(bin_[-1].evolve(**{self.field: folded}))

    def close(self) -> None:
        self._bins.stop()
        super().close()


class fold_interval_metric(fold_interval):
    """:class:`fold_interval` on the metric.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: fold_interval_metric(5, max, sink),
    ...           [Event(metric=m, time=t) for t, m in [(0, 3), (1, 9), (2, 4)]], until=5)
    >>> [(e.metric, e.time) for e in out]
    [(9, 2)]
    """

    __slots__ = ()

    def __init__(self, interval: float, folder: Callable[[list[Any]], Any],
                 *children: Child, max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        super().__init__(interval, "metric", folder, *children, max_skew=max_skew)


class rollup(Stream):
    """Forward up to ``n`` events per ``dt``-second window at once, the rest as one list at its end.

    Each of the first ``n`` events of a window is forwarded immediately as a
    one-element list; later events are held and forwarded together as one
    list when the window ends. Windows are aligned to the time the stream was
    built. Nothing is lost.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: rollup(2, 10, sink), [Event(time=t) for t in [0, 1, 2, 3, 11]],
    ...           until=20)
    >>> [[e.time for e in batch] for batch in out]
    [[0], [1], [2, 3], [11]]
    """

    __slots__ = ("_buffer", "_sent", "_windows", "dt", "n")

    def __init__(self, n: int, dt: float, *children: Child) -> None:
        self.n = count(n, "rollup(n, dt, *children)", minimum=1)
        self.dt = seconds(dt, "rollup(n, dt, *children)", "dt")
        self._set_children(children)
        self._sent = 0
        self._buffer: list[Any] = []
        self._windows = TimeWindows(self.dt, self._flush)

    def __call__(self, event: Any) -> None:
        self._windows.observe()
        if self._sent < self.n:
            self._sent += 1
            self._out([event])
        else:
            self._buffer.append(event)

    def _flush(self, start: float, end: float) -> None:
        held, self._buffer, self._sent = self._buffer, [], 0
        if held:
            self._emit_from_timer(held)

    def close(self) -> None:
        self._windows.stop()
        super().close()


class batch(Stream):
    """Forward events in lists of ``n``, and whatever has gathered at the end of each window.

    A list is forwarded as soon as it holds ``n`` events; at the end of each
    ``dt``-second window (aligned to the time the stream was built) a partial
    list is forwarded too, so no event waits longer than ``dt``.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: batch(2, 10, sink), [Event(time=t) for t in [0, 1, 2]], until=10)
    >>> [[e.time for e in b] for b in out]
    [[0, 1], [2]]
    """

    __slots__ = ("_buffer", "_windows", "dt", "n")

    def __init__(self, n: int, dt: float, *children: Child) -> None:
        self.n = count(n, "batch(n, dt, *children)", minimum=1)
        self.dt = seconds(dt, "batch(n, dt, *children)", "dt")
        self._set_children(children)
        self._buffer: list[Any] = []
        self._windows = TimeWindows(self.dt, self._flush)

    def __call__(self, event: Any) -> None:
        self._windows.observe()
        self._buffer.append(event)
        if len(self._buffer) >= self.n:
            full, self._buffer = self._buffer, []
            self._out(full)

    def _flush(self, start: float, end: float) -> None:
        held, self._buffer = self._buffer, []
        if held:
            self._emit_from_timer(held)

    def close(self) -> None:
        self._windows.stop()
        super().close()


class apdex(Stream):
    """Every ``dt`` seconds, forward the Apdex score of the window's events.

    Each live event is *satisfied* if ``satisfied`` holds for it, else
    *tolerated* if ``tolerated`` holds, else frustrated. At the end of a
    window with events, the last event is forwarded with
    ``metric = (satisfied + tolerated / 2) / total``. Conditions are
    where-style: a function of the event or a query string. Expired events are
    ignored. Windows are aligned to the time the stream was built.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: apdex(10, "metric < 1", lambda e: e.metric < 4, sink),
    ...           [Event(metric=m, time=0) for m in [0.5, 0.2, 2, 9]], until=10)
    >>> [(e.metric, e.time) for e in out]
    [(0.625, 0)]
    """

    __slots__ = ("_counts", "_last", "_satisfied", "_tolerated", "_windows", "dt")

    def __init__(self, dt: float, satisfied: Any, tolerated: Any, *children: Child) -> None:
        caller = "apdex(dt, satisfied, tolerated, *children)"
        self.dt = seconds(dt, caller, "dt")
        self._satisfied = predicate(satisfied, {}, caller)
        self._tolerated = predicate(tolerated, {}, caller)
        self._set_children(children)
        self._counts = [0, 0, 0]  # satisfied, tolerated, frustrated
        self._last: Any = None
        self._windows = TimeWindows(self.dt, self._finish)

    def __call__(self, event: Any) -> None:
        if is_expired(event):
            return
        self._windows.observe()
        if self._satisfied(event):
            self._counts[0] += 1
        elif self._tolerated(event):
            self._counts[1] += 1
        else:
            self._counts[2] += 1
        self._last = event

    def _finish(self, start: float, end: float) -> None:
        (satisfied, tolerated, frustrated), last = self._counts, self._last
        self._counts, self._last = [0, 0, 0], None
        total = satisfied + tolerated + frustrated
        if total and last is not None:
            self._emit_from_timer(last.evolve(metric=(satisfied + tolerated / 2) / total))

    def close(self) -> None:
        self._windows.stop()
        super().close()


class coalesce(Stream):
    """Every ``dt`` seconds, forward a list of the latest event of every (host, service).

    Expired events (state "expired", or older than their ttl at flush time)
    are included in one flush and then forgotten. Flushing starts with the
    first event (at the same instant, on the next clock step) and runs while
    anything is remembered. ``coalesce(child)`` is ``coalesce(1, child)``.
    The list is in the order the keys were first seen.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: coalesce(5, sink),
    ...           [Event(host="a", metric=1, time=0), Event(host="b", metric=2, time=1),
    ...            Event(host="a", metric=3, time=2)], until=6)
    >>> [[(e.host, e.metric) for e in flush] for flush in out]
    [[('a', 1)], [('a', 3), ('b', 2)]]
    """

    __slots__ = ("_latest", "_task", "dt")

    def __init__(self, dt: Any = 1, *children: Child) -> None:
        if callable(dt) and not isinstance(dt, (int, float)):
            children, dt = (dt, *children), 1
        self.dt = seconds(dt, "coalesce(dt=1, *children)", "dt")
        self._set_children(children)
        self._latest: dict[tuple[Any, Any], Any] = {}
        self._task: Task | None = None

    def __call__(self, event: Any) -> None:
        self._latest[(event.host, event.service)] = event
        if self._task is None:
            self._task = scheduler().every(self.dt, rescued(self._flush))

    def _flush(self) -> None:
        now = scheduler().now()
        snapshot = list(self._latest.values())
        for key, event in list(self._latest.items()):
            if is_expired(event, now):
                del self._latest[key]
        if not self._latest:
            self._stop()
        self._emit_from_timer(snapshot)

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def close(self) -> None:
        self._stop()
        super().close()

