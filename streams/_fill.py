"""Gap filling: emit something when events stop coming (spec §3.9)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._clock import Task, scheduler
from ._core import Child, Stream, is_expired, rescued
from ._event import Event
from ._periodic import PeriodicUntilExpired
from ._validate import argument_error, seconds

__all__ = ["fill_in", "fill_in_last", "interpolate_constant"]


class _Quiet:
    """A timer that fires every ``interval`` seconds of silence.

    Each live event pushes the next firing back to ``interval`` after it; an
    expired event stops the timer and the next live event starts it again.
    """

    __slots__ = ("_scoped", "fire", "interval", "task")

    def __init__(self, interval: float, fire: Callable[[], object]) -> None:
        self.interval = interval
        self.fire = fire
        self.task: Task | None = None
        self._scoped = False

    def start(self) -> None:
        self.task = scheduler().every(self.interval, rescued(self.fire), delay=self.interval)

    def observe(self, event: Any) -> None:
        expired = is_expired(event)
        if self.task is None:
            if not expired:
                self.start()
                self._scoped = True
        elif expired:
            self.stop()
        else:
            self.task.defer(self.interval)
            if not self._scoped:
                # A timer started at construction ran outside any exception_stream;
                # events arrive inside it, so the fills report where the events' failures do.
                self.task.function = rescued(self.fire)
                self._scoped = True

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


def _as_event(value: Any, caller: str) -> Any:
    if isinstance(value, Event):
        return value
    if isinstance(value, Mapping):
        return Event(**value)
    raise argument_error(caller, "default_event", value, "an Event or a dict of fields",
                         "Event(service='heartbeat', metric=0)")


class fill_in(Stream):
    """Forward every event, and ``default_event`` (with ``time`` = now) after each
    ``interval`` seconds without one.

    The silence timer starts when the stream is built, so it fills even if no
    event ever arrives. An expired event stops filling until the next live one.
    ``default_event`` is an Event or a dict of fields.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: fill_in(1, {"service": "x", "metric": 0}, sink),
    ...           [Event(service="x", metric=5, time=1.5)], until=4)
    >>> [(e.time, e.metric) for e in out]
    [(1, 0), (1.5, 5), (2.5, 0), (3.5, 0)]
    """

    __slots__ = ("_default", "_quiet", "default_event", "interval")

    def __init__(self, interval: float, default_event: Event | Mapping[str, Any],
                 *children: Child) -> None:
        caller = "fill_in(interval, default_event, *children)"
        self.interval = seconds(interval, caller)
        self.default_event = default_event
        self._default = _as_event(default_event, caller)
        self._set_children(children)
        self._quiet = _Quiet(self.interval, self._fill)
        self._quiet.start()

    def __call__(self, event: Any) -> None:
        self._quiet.observe(event)
        self._out(event)

    def _fill(self) -> None:
        self._emit_from_timer(self._default.evolve(time=scheduler().now()))

    def close(self) -> None:
        self._quiet.stop()
        super().close()


class fill_in_last(Stream):
    """Forward every event, and after each ``interval`` seconds without one, the last
    event changed by ``update`` (with ``time`` = now).

    ``update`` is a dict of fields to set (None removes an attribute) or a
    function from the last event to the event to emit (Riemann's
    ``fill-in-last*``). Filling starts with the first live event; an expired
    event stops it until the next live one.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: fill_in_last(1, {"state": "stale"}, sink),
    ...           [Event(host="a", state="ok", time=0)], until=2)
    >>> [(e.host, e.state, e.time) for e in out]
    [('a', 'ok', 0), ('a', 'stale', 1), ('a', 'stale', 2)]
    """

    __slots__ = ("_last", "_quiet", "_update", "interval", "update")

    def __init__(self, interval: float,
                 update: Mapping[str, Any] | Callable[[Any], Any], *children: Child) -> None:
        caller = "fill_in_last(interval, update, *children)"
        self.interval = seconds(interval, caller)
        self.update = update
        if isinstance(update, Mapping):
            changes = dict(update)
            self._update: Callable[[Any], Any] = lambda event: event.evolve(**changes)
        elif callable(update):
            self._update = update
        else:
            raise argument_error(caller, "update", update,
                                 "a dict of fields or a function of the last event",
                                 "{'state': 'stale'}")
        self._set_children(children)
        self._last: Any = None
        self._quiet = _Quiet(self.interval, self._fill)

    def __call__(self, event: Any) -> None:
        self._quiet.observe(event)
        self._last = event
        self._out(event)

    def _fill(self) -> None:
        self._emit_from_timer(self._update(self._last).evolve(time=scheduler().now()))

    def close(self) -> None:
        self._quiet.stop()
        super().close()


class interpolate_constant(Stream):
    """Every ``interval`` seconds, forward the latest event again with ``time`` = now.

    Events are not forwarded as they arrive: the first one goes out at the
    next clock step at the same instant, then once per interval until an
    expired event (forwarded at once, and it clears the state) or the latest
    event's ``time + ttl`` passing.

    >>> from streams import Event
    >>> from streams.testing import run
    >>> out = run(lambda sink: interpolate_constant(1, sink),
    ...           [Event(metric=1, time=0), Event(metric=2, time=1.5)], until=3)
    >>> [(e.time, e.metric) for e in out]
    [(0, 1), (1, 1), (2, 2), (3, 2)]
    """

    __slots__ = ("_latest", "_timer", "interval")

    def __init__(self, interval: float, *children: Child) -> None:
        self.interval = seconds(interval, "interpolate_constant(interval, *children)")
        self._set_children(children)
        self._latest: Any = None
        self._timer = PeriodicUntilExpired(self.interval, self._emit)

    def __call__(self, event: Any) -> None:
        if self._timer.observe(event):
            self._latest = None
            self._out(event)
            return
        self._latest = event

    def _emit(self) -> None:
        latest = self._latest
        if latest is not None:
            self._emit_from_timer(latest.evolve(time=scheduler().now()))

    def close(self) -> None:
        self._timer.stop()
        super().close()
