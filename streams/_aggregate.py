"""Periodic aggregation on the clock: rate and throttle (spec §3.7)."""

from __future__ import annotations

from typing import Any

from ._clock import scheduler
from ._core import Child, Stream
from ._event import Event
from ._periodic import PeriodicUntilExpired, TimeWindows
from ._skew import DEFAULT_MAX_SKEW, skew_limit
from ._validate import count, seconds

__all__ = ["rate", "throttle"]


class rate(Stream):
    """Every ``interval`` seconds, forward the sum of metrics seen divided by ``interval``.

    The output is the latest metric-bearing event with ``metric`` = events per
    second and ``time`` = now. Ticks start ``interval`` after the first event
    and go on (emitting 0) until an expired event arrives or the latest
    event's ``time + ttl`` has passed.
    An event whose time lies more than ``max_skew`` seconds in the past
    (default one hour, ``None`` trusts every time) is dropped and counted in
    ``skewed`` (see ``DEFAULT_MAX_SKEW``): trusted, it would count as expired
    and stop the ticks of every host's rate. Only expiry reads event time
    here, so an event ahead of the clock is counted like any other.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: rate(2, sink),
    ...           [Event(service="req", metric=m, time=t) for t, m in [(0, 1), (1, 3), (2, 4)]])
    >>> [(e.time, e.metric) for e in out]
    [(2, 2.0)]
    """

    __slots__ = ("_fresh", "_last", "_sum", "_timer", "interval", "max_skew", "skewed")
    copy_forks = True

    def __init__(self, interval: float, *children: Child,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.interval = seconds(interval, "rate(interval, *children)", "interval",
                                "rate(5, child)")
        self.max_skew = skew_limit(max_skew, "rate(interval, *children, max_skew=...)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self.skewed = 0
        self._sum: float = 0
        self._last: Any = None
        self._fresh = False
        self._timer = PeriodicUntilExpired(self.interval, self._tick, delay=self.interval,
                                           owner=self)

    def __call__(self, event: Any) -> None:
        if self._timer.observe(event) is None:
            return  # too far from the clock
        metric = event.metric
        if metric is not None:
            self._sum += metric
            self._last = event
            self._fresh = True

    def _tick(self) -> None:
        total, self._sum = self._sum, 0
        last, interval = self._last, self.interval
        now = scheduler().now()
        if last is None:
            out = Event(metric=total / interval, time=now)
        else:
            ttl = last.ttl
            if ttl is not None and not self._fresh:
                ttl -= interval
            out = last.evolve(metric=total / interval, time=now, ttl=ttl)
        self._last, self._fresh = out, False
        self._emit_from_timer(out)

    def close(self) -> None:
        self._timer.stop()
        super().close()


class throttle(Stream):
    """Forward at most ``n`` events per ``dt``-second window; drop the rest.

    Windows are aligned to the time the stream was built. Adds no latency.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: throttle(2, 10, sink), [Event(time=t) for t in [0, 1, 2, 3, 11]])
    >>> [e.time for e in out]
    [0, 1, 11]
    """

    __slots__ = ("_count", "_windows", "dt", "n")
    copy_forks = True

    def __init__(self, n: int, dt: float, *children: Child) -> None:
        caller = "throttle(n, dt, *children)"
        self.n = count(n, caller, what="events per window", example="throttle(1, 60, child)")
        self.dt = seconds(dt, caller, "dt", "throttle(1, 60, child)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._count = 0
        self._windows = TimeWindows(self.dt, self._reset)

    def _reset(self, start: float, end: float) -> None:
        self._count = 0

    def __call__(self, event: Any) -> None:
        self._windows.observe()
        self._count += 1
        if self._count <= self.n:
            self._out(event)

    def close(self) -> None:
        self._windows.stop()
        super().close()
