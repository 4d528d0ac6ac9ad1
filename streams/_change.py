"""Change detection: changed, changed_state, runs, stable, and sustained (rillet's own)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._clock import Task, scheduler
from ._core import Child, Stream, rescued
from ._filters import close_else, else_branch, predicate
from ._partition import by
from ._skew import DEFAULT_MAX_SKEW, event_time, skew_limit, skewed
from ._validate import count, field_reader, seconds

__all__ = ["changed", "changed_state", "runs", "stable", "sustained"]


class changed(Stream):
    """Forward events whose ``field`` (a name or function) differs from the previous event's.

    With ``pairs=True`` it forwards ``(previous_event, event)`` instead. ``init``
    is the value assumed before the first event.

    >>> from streams import Event
    >>> out = []
    >>> s = changed("state", out.append)
    >>> for st in ["ok", "bad", "bad", "ok", "ok", "evil"]: s(Event(state=st))
    >>> [e.state for e in out]
    ['ok', 'bad', 'ok', 'evil']
    """

    __slots__ = ("_get", "_init", "_pairs", "_previous_event", "_previous_value", "field")
    copy_forks = True

    def __init__(self, field: str | Callable[[Any], Any], *children: Child,
                 init: Any = None, pairs: bool = False) -> None:
        self.field = field
        self._get = field_reader(field, "changed(field, *children)",
                                 example="changed('state', child)")
        self._init = init
        self._pairs = pairs
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._previous_value = self._init
        self._previous_event: Any = None

    def __call__(self, event: Any) -> None:
        value = self._get(event)
        previous_value, previous_event = self._previous_value, self._previous_event
        self._previous_value, self._previous_event = value, event
        if value != previous_value:
            self._out((previous_event, event) if self._pairs else event)


class changed_state(Stream):
    """Forward an event when its state differs from the last one of the same host and service.

    >>> from streams import Event
    >>> out = []
    >>> s = changed_state(out.append)
    >>> for host, st in [("a", "ok"), ("b", "ok"), ("a", "ok"), ("a", "critical")]:
    ...     s(Event(host=host, state=st))
    >>> [(e.host, e.state) for e in out]
    [('a', 'ok'), ('b', 'ok'), ('a', 'critical')]
    """

    __slots__ = ("_by",)
    templates = True  # its inner by forks the children per key

    def __init__(self, *children: Child, init: Any = None, max_keys: int = 100_000,
                 idle: float | None = None) -> None:
        self._set_children(children)
        self._by = by(["host", "service"], changed("state", *children, init=init),
                      max_keys=max_keys, idle=idle)

    def _init_fork(self, template: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   memo: dict[int, Any]) -> None:
        # One per key when under a by: the inner by is forked, its template shared.
        # Written out rather than copy_forks, which bench_fork.py measures slower here.
        self.children, self._out = template.children, template._out
        self._by = template._by.fork(memo)

    def __call__(self, event: Any) -> None:
        self._by(event)

    def __len__(self) -> int:
        return len(self._by)

    def close(self) -> None:
        self._by.close()


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
    copy_forks = True

    def __init__(self, n: int, field: str | Callable[[Any], Any], *children: Child) -> None:
        caller, example = "runs(n, field, *children)", "runs(3, 'state', child)"
        self.n = count(n, caller, example=example)
        self.field = field
        self._get = field_reader(field, caller, example=example)
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._previous: Any = None
        # How many events in a row, ending with the latest, have equal values;
        # Clojure's (apply = window) also compares neighbours pairwise.
        self._length = 0

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
    straight through until it changes. Events must have a time. An event
    whose time lies more than ``max_skew`` seconds from the clock (default one
    hour, ``None`` trusts every time) is dropped and counted in ``skewed``
    (see ``DEFAULT_MAX_SKEW``): trusted, a year-ahead event would hold every
    later event of its value for a year.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: stable(3, "state", sink),
    ...           [Event(state=s, time=t) for s, t in [("ok", 0), ("ok", 3), ("bad", 4),
    ...                                                ("bad", 5), ("ok", 6), ("ok", 9)]])
    >>> [(e.state, e.time) for e in out]
    [('ok', 0), ('ok', 3), ('ok', 6), ('ok', 9)]
    """

    __slots__ = ("_buffer", "_get", "_previous", "_task", "dt", "field", "max_skew", "skewed")
    copy_forks = True

    def __init__(self, dt: float, field: str | Callable[[Any], Any], *children: Child,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        caller, example = "stable(dt, field, *children)", "stable(60, 'state', child)"
        self.dt = seconds(dt, caller, "dt", example, zero=True)
        self.max_skew = skew_limit(max_skew, "stable(dt, field, *children, max_skew=...)")
        self.field = field
        self._get = field_reader(field, caller, example=example)
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self.skewed = 0
        self._previous: Any = _UNKNOWN
        self._buffer: list[Any] = []
        self._task: Task | None = None

    def __call__(self, event: Any) -> None:
        time = event_time(event, f"stable(dt={self.dt!r}, ...)", "stable works on event time")
        if skewed(self, time):
            return
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
            self._flush(self._emit_from_timer)

    def _flush(self, emit: Child | None = None) -> None:
        buffer, self._buffer = self._buffer, []
        emit = emit or self._out
        for event in buffer:
            emit(event)

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
    count per host. Events must have a time. An event whose time lies more
    than ``max_skew`` seconds from the clock (default one hour, ``None``
    trusts every time) is dropped and counted in ``skewed`` (see
    ``DEFAULT_MAX_SKEW``), and neither starts nor breaks a run.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: sustained(60, "metric > 90", sink),
    ...           [Event(metric=m, time=t) for t, m in [(0, 95), (30, 97), (50, 80),
    ...                                                 (60, 91), (100, 99), (120, 93)]])
    >>> [e.time for e in out]
    [120]
    """

    __slots__ = ("_else", "_else_children", "_since", "condition", "dt", "max_skew", "predicate",
                 "skewed")

    def __init__(self, dt: float, condition: Any, *children: Child,
                 else_: Child | Iterable[Child] = (),
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.dt = seconds(dt, "sustained(dt, condition, *children)", "dt",
                          "sustained(300, 'metric > 0.9', child)", zero=True)
        self.max_skew = skew_limit(max_skew, "sustained(dt, condition, *children, max_skew=...)")
        self.skewed = 0
        self.condition = condition
        self.predicate = predicate(condition, {}, "sustained(dt, condition, *children)")
        self._since: float | None = None
        self._else_children, self._else = else_branch(else_)
        self._set_children(children, required=not self._else_children)

    def __call__(self, event: Any) -> None:
        time = event_time(event, f"sustained(dt={self.dt!r}, ...)",
                          "sustained works on event time")
        if skewed(self, time):
            return
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
