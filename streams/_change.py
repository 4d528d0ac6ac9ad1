"""Runs and stability: runs, stable (spec §3.5), and sustained (rillet's own).

``changed`` and ``changed_state`` live in ``_partition``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from ._clock import Task, scheduler
from ._core import Child, Stream, rescued
from ._filters import close_else, else_branch, predicate
from ._match import field_getter

__all__ = ["runs", "stable", "sustained"]


def _field(field: Any, caller: str) -> Callable[[Any], Any]:
    try:
        return field_getter(field)
    except TypeError:
        raise TypeError(f"{caller}: field must be a field name or a function of the event, "
                        f"got {field!r}; e.g. 'state' or lambda e: e.metric > 0.9") from None


class runs(Stream):
    """Forward an event once the last ``n`` events all have the same ``field`` value.

    Every later event that continues the run is forwarded too; ``n=0`` never
    forwards.

    >>> from streams import Event
    >>> out = []
    >>> s = runs(2, "state", out.append)
    >>> for i, st in enumerate(["a", "a", "a", "b"]): s(Event(state=st, metric=i))
    >>> [e.metric for e in out]
    [1, 2]
    """

    __slots__ = ("_get", "_length", "_previous", "field", "n")

    def __init__(self, n: int, field: str | Callable[[Any], Any], *children: Child) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"runs(n, field, *children): n must be a whole number of events "
                             f">= 0, got {n!r}; e.g. runs(3, 'state', child)")
        self.n = n
        self.field = field
        self._get = _field(field, "runs(n, field, *children)")
        self._previous: Any = None
        # How many events in a row, ending with the latest, have equal values;
        # Clojure's (apply = window) also compares neighbours pairwise.
        self._length = 0
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        value = self._get(event)
        if self._length and value == self._previous:
            self._length += 1
        else:
            self._length = 1
        self._previous = value
        if self.n and self._length >= self.n:
            self._out(event)


_UNKNOWN: Any = type("_Unknown", (), {"__repr__": lambda self: "<unknown>"})()


class stable(Stream):
    """Forward events only once ``field`` has kept its value for ``dt`` seconds of event time.

    Events of a new value are held back; they are forwarded together when an
    event of the same value arrives ``dt`` or more after the first one, or
    when the clock reaches that time. Once a value is stable its events pass
    straight through until it changes. Events must have a time.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: stable(3, "state", sink),
    ...           [Event(state=s, time=t) for s, t in [("ok", 0), ("ok", 3), ("bad", 4),
    ...                                                ("bad", 5), ("ok", 6), ("ok", 9)]])
    >>> [(e.state, e.time) for e in out]
    [('ok', 0), ('ok', 3), ('ok', 6), ('ok', 9)]
    """

    __slots__ = ("_buffer", "_get", "_previous", "_task", "dt", "field")

    def __init__(self, dt: float, field: str | Callable[[Any], Any], *children: Child) -> None:
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt >= 0 \
                or math.isinf(dt):
            raise ValueError(f"stable(dt, field, *children): dt must be a number of seconds "
                             f">= 0, got {dt!r}; e.g. stable(60, 'state', child)")
        self.dt = dt
        self.field = field
        self._get = _field(field, "stable(dt, field, *children)")
        self._previous: Any = _UNKNOWN
        self._buffer: list[Any] = []
        self._task: Task | None = None
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        time = event.time
        if time is None:
            raise ValueError(f"stable(dt={self.dt!r}, ...): stable works on event time, and "
                             f"this event has none: {event!r}; give events a time upstream")
        value = self._get(event)
        buffer = self._buffer
        if value != self._previous:
            self._previous = value
            self._buffer = [event]
            if self._task is not None:
                self._task.cancel()
            self._task = scheduler().once(time + self.dt, rescued(self._timeout))
        elif not buffer:
            self._out(event)
        else:
            buffer.append(event)
            if time >= buffer[0].time + self.dt:
                self._flush()

    def _timeout(self) -> None:
        self._task = None
        buffer = self._buffer
        # "Held for dt" is always t >= first.time + dt, the way the due time is
        # computed, so float rounding cannot make the timer and the events disagree.
        if buffer and scheduler().now() >= buffer[0].time + self.dt:
            self._flush()

    def _flush(self) -> None:
        buffer, self._buffer = self._buffer, []
        for event in buffer:
            self._out(event)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        super().close()


class sustained(Stream):
    """Forward events once ``condition`` has held on every event for ``dt`` seconds.

    "Metric above X continuously for N seconds": an event passes when the
    condition holds for it and for every event before it since at least
    ``dt`` seconds of event time earlier. Events for which the condition
    fails go to ``else_`` and start the count again; events of a run younger
    than ``dt`` go nowhere. The condition is written as for ``where``: a
    function or a query string. Decided on events alone (no timer): a host
    that stops reporting never completes its run. Put it under ``by`` for one
    count per host. Events must have a time.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: sustained(60, "metric > 90", sink),
    ...           [Event(metric=m, time=t) for t, m in [(0, 95), (30, 97), (50, 80),
    ...                                                 (60, 91), (100, 99), (120, 93)]])
    >>> [e.time for e in out]
    [120]
    """

    __slots__ = ("_else", "_else_children", "_since", "condition", "dt", "predicate")

    def __init__(self, dt: float, condition: Any, *children: Child,
                 else_: Child | Iterable[Child] = ()) -> None:
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt >= 0 \
                or math.isinf(dt):
            raise ValueError(f"sustained(dt, condition, *children): dt must be a number of "
                             f"seconds >= 0, got {dt!r}; e.g. sustained(300, 'metric > 0.9', "
                             f"child)")
        self.dt = dt
        self.condition = condition
        self.predicate = predicate(condition, {}, "sustained(dt, condition, *children)")
        self._since: float | None = None
        self._set_children(children)
        self._else_children, self._else = else_branch(else_)

    def __call__(self, event: Any) -> None:
        time = event.time
        if time is None:
            raise ValueError(f"sustained(dt={self.dt!r}, ...): sustained works on event time, "
                             f"and this event has none: {event!r}; give events a time upstream")
        if not self.predicate(event):
            self._since = None
            if self._else is not None:
                self._else(event)
            return
        since = self._since
        if since is None:
            since = self._since = time
        if time - since >= self.dt:
            self._out(event)

    def close(self) -> None:
        close_else(self._else_children)
        super().close()
