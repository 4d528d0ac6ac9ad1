"""Windows over events, by count or by event time (spec §3.6)."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from ._core import Child, Stream
from ._skew import DEFAULT_MAX_SKEW, skew_limit, skewed
from ._validate import count, seconds

__all__ = [
    "DEFAULT_MAX_SKEW", "fixed_event_window", "fixed_offset_time_window", "fixed_time_window",
    "moving_event_window", "moving_time_window", "window",
]

class moving_event_window(Stream):
    """On every event, forward a list of the last ``n`` events, oldest first.

    >>> out = []
    >>> s = moving_event_window(2, out.append)
    >>> for x in [1, 2, 3]: s(x)
    >>> out
    [[1], [1, 2], [2, 3]]
    """

    __slots__ = ("_buffer", "n")
    copy_forks = True

    def __init__(self, n: int, *children: Child) -> None:
        self.n = count(n, "moving_event_window(n, *children)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._buffer: deque[Any] = deque(maxlen=self.n)

    def __call__(self, event: Any) -> None:
        if self.n:
            self._buffer.append(event)
        self._out(list(self._buffer))


class fixed_event_window(Stream):
    """Gather ``n`` events, forward them as a list, start again.

    >>> out = []
    >>> s = fixed_event_window(2, out.append)
    >>> for x in [1, 2, 3, 4, 5]: s(x)
    >>> out
    [[1, 2], [3, 4]]
    """

    __slots__ = ("_buffer", "n")
    copy_forks = True

    def __init__(self, n: int, *children: Child) -> None:
        self.n = count(n, "fixed_event_window(n, *children)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self._buffer: list[Any] = []

    def __call__(self, event: Any) -> None:
        if not self.n:
            return
        self._buffer.append(event)
        if len(self._buffer) >= self.n:
            window, self._buffer = self._buffer, []
            self._out(window)


class moving_time_window(Stream):
    """On every event, forward the events of the last ``dt`` seconds of event time.

    Events at or before the cutoff (latest time seen minus ``dt``) are dropped;
    events without a time are kept. An event whose time lies more than
    ``max_skew`` seconds from the clock (default :data:`DEFAULT_MAX_SKEW`, one
    hour; ``None`` accepts any) is dropped and counted in ``skewed``, so one
    host with a wrong clock cannot push the cutoff past every later event.

    >>> from streams import Event
    >>> out = []
    >>> s = moving_time_window(2, out.append)
    >>> for t in [1, 2, 3, 4]: s(Event(time=t))
    >>> [[e.time for e in w] for w in out]
    [[1], [1, 2], [2, 3], [3, 4]]
    """

    __slots__ = ("_buffer", "_cutoff", "_in_order", "_times", "dt", "max_skew", "skewed")
    copy_forks = True

    def __init__(self, dt: float, *children: Child,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.dt = seconds(dt, "moving_time_window(dt, *children)", "dt")
        self.max_skew = skew_limit(max_skew, "moving_time_window(dt, *children, max_skew=...)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self.skewed = 0
        # Times are kept beside the events: reading a decoded event's time
        # again on every event made each call cost O(window) field decodes.
        self._buffer: deque[Any] = deque()
        self._times: deque[float | None] = deque()
        self._in_order = True  # timed events arrived in time order: expire from the left
        self._cutoff = 0.0

    def __call__(self, event: Any) -> None:
        time = event.time
        if time is not None and skewed(self, time):
            return
        cutoff = self._cutoff = max(self._cutoff, (time or 0) - self.dt)
        if time is not None and time <= cutoff:
            return
        buffer, times = self._buffer, self._times
        if self._in_order:
            while times and times[0] is not None and times[0] <= cutoff:
                times.popleft()
                buffer.popleft()
            if time is None or (times and (times[-1] is None or time < times[-1])):
                self._in_order = False
        else:
            kept = [(t, e) for t, e in zip(times, buffer, strict=True)
                    if t is None or t > cutoff]
            self._times = times = deque(t for t, _ in kept)
            self._buffer = buffer = deque(e for _, e in kept)
            # Back to the cheap path once the stragglers have left the window.
            order = [*times, time]
            self._in_order = None not in order and all(
                a <= b for a, b in itertools.pairwise(order))
        buffer.append(event)
        times.append(time)
        self._out(list(buffer))


class fixed_time_window(Stream):
    """Forward the events of consecutive ``dt``-second windows of event time.

    The first window starts at the first event's time; a window is emitted when
    an event past its end arrives, followed by an empty list for each window
    that saw nothing. Late events (before the current window) are dropped;
    events without a time join the current window. An event whose time lies
    more than ``max_skew`` seconds from the clock (default
    :data:`DEFAULT_MAX_SKEW`, one hour; ``None`` accepts any) is dropped and
    counted in ``skewed``: trusted, a year-ahead time would emit millions of
    empty windows and make every later event late.

    >>> from streams import Event
    >>> out = []
    >>> s = fixed_time_window(2, out.append)
    >>> for t in [1, 2, 3, 7]: s(Event(time=t))
    >>> [[e.time for e in w] for w in out]
    [[1, 2], [3], []]
    """

    __slots__ = ("_buffer", "_start", "dt", "max_skew", "skewed")
    copy_forks = True

    def __init__(self, dt: float, *children: Child,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self.dt = seconds(dt, "fixed_time_window(dt, *children)", "dt")
        self.max_skew = skew_limit(max_skew, f"{type(self).__name__}(dt, *children, max_skew=...)")
        self._set_children(children)
        self._init_state()

    def _init_state(self) -> None:
        self.skewed = 0
        self._start: float | None = None
        self._buffer: list[Any] = []

    def _first_start(self, time: float) -> float:
        return time

    def __call__(self, event: Any) -> None:
        time = event.time
        if time is None:
            self._buffer.append(event)
            return
        if skewed(self, time):
            return
        start = self._start
        if start is None:
            self._start = self._first_start(time)
            self._buffer = [event]
            return
        if time < start:
            return
        if time < start + self.dt:
            self._buffer.append(event)
            return
        delta = time - start
        skipped = delta - delta % self.dt
        window, self._buffer = self._buffer, [event]
        self._start = start + skipped
        self._out(window)
        for _ in range(round(skipped / self.dt) - 1):
            self._out([])


class window(moving_event_window):
    """Alias of :class:`moving_event_window`: the last ``n`` events on every event.

    >>> out = []
    >>> s = window(2, out.append)
    >>> for x in [1, 2, 3]: s(x)
    >>> out
    [[1], [1, 2], [2, 3]]
    """

    __slots__ = ()
    copy_forks = True  # the same state as moving_event_window's


class fixed_offset_time_window(fixed_time_window):
    """Like :class:`fixed_time_window`, but windows are aligned to multiples of ``dt``.

    The first window is the one holding the first event: it starts at
    ``time - time % dt``, so with ``dt=60`` every window is a clock minute.

    >>> from streams import Event
    >>> out = []
    >>> s = fixed_offset_time_window(2, out.append)
    >>> for t in [1, 2, 3, 4, 5, 6]: s(Event(time=t))
    >>> [[e.time for e in w] for w in out]
    [[1], [2, 3], [4, 5]]
    """

    __slots__ = ()
    copy_forks = True  # the same state as fixed_time_window's

    def _first_start(self, time: float) -> float:
        return time - time % self.dt
