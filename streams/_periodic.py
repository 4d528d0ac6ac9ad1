"""The two timing building blocks behind Riemann's periodic streams (spec §3.0.5–3.0.7).

Both are small state holders that a stream owns; neither is a stream itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._clock import Task, next_tick, scheduler
from ._core import rescued
from ._event import outlived
from ._skew import SkewChecked, reject
from ._validate import seconds

__all__ = ["PeriodicUntilExpired", "TimeWindows"]

_INF = math.inf


class PeriodicUntilExpired:
    """Run ``tick`` every ``interval`` seconds from the first live event until
    an expired event arrives or the latest event's ``time + ttl`` has passed.

    ``observe(event)`` is called for every incoming event; it returns whether
    the event is expired, so owners need not ask again. With an ``owner``
    (a stream with ``max_skew``), an event that looks expired only because
    its time lies more than ``owner.max_skew`` in the past changes nothing,
    is counted on the owner, and ``observe`` returns None: the owner drops
    it. Only the expiry test reads event time here, so a far-future event is
    an ordinary live one, and the check costs nothing on the live path.
    """

    __slots__ = ("_clock", "delay", "expires_at", "interval", "max_skew", "owner", "task", "tick")

    def __init__(self, interval: float, tick: Callable[[], object], delay: float = 0,
                 owner: SkewChecked | None = None) -> None:
        self.interval = interval
        self.delay = delay
        self.tick = tick
        self.owner = owner
        # Read once: the owner's max_skew is configuration, and this test runs per event.
        self.max_skew = owner.max_skew if owner is not None else None
        self.task: Task | None = None
        self.expires_at = math.inf
        self._clock = scheduler()

    def observe(self, event: Any) -> bool | None:
        # Runs for every event of every keyed rate/fill stream: the task and
        # infinity are read once into locals (attribute and global lookups
        # are most of this method's own cost).
        task = self.task
        # A running timer's clock is the current one; without a timer, ask for it afresh.
        clock = self._clock if task is not None else scheduler()
        time, ttl = event.time, event.ttl
        expired: bool
        if time is None:
            self.expires_at = _INF
            expired = event.state == "expired"
        else:
            now = clock.now()
            expired = event.state == "expired" or outlived(time, ttl, now)
            if expired:
                limit = self.max_skew
                if limit is not None and now - time > limit:
                    # A host whose clock is far behind: not an expiry to act on.
                    reject(self.owner, time, now)  # type: ignore[arg-type]
                    return None
            self.expires_at = _INF if ttl is None else time + ttl
        if expired:
            self.stop()
        elif task is None:
            self._clock = clock
            self.task = clock.every(self.interval, rescued(self._run), delay=self.delay)
        return expired

    def _run(self) -> None:
        if self.expires_at < self._clock.now():
            self.stop()
        else:
            self.tick()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


class TimeWindows:
    """Riemann's part-time-simple: windows aligned to ``anchor + k*dt``.

    The anchor is the clock when the owning stream was built. The first event
    of a window schedules that window's end; ``finish(start, end)`` runs then.
    A window that sees no event costs nothing and produces nothing.
    """

    __slots__ = ("anchor", "dt", "finish", "start", "task")

    def __init__(self, dt: float, finish: Callable[[float, float], object]) -> None:
        self.dt = seconds(dt, "TimeWindows(dt, finish)", "dt")
        self.anchor = scheduler().now()
        self.finish = finish
        self.start: float | None = None
        self.task: Task | None = None

    def observe(self) -> None:
        """Call once per event; opens a window (and schedules its end) when none is open."""
        if self.task is None:
            clock = scheduler()
            end = next_tick(self.anchor, self.dt, clock.now())
            self.start = end - self.dt
            self.task = clock.once(end, rescued(self._end))

    def _end(self) -> None:
        start = self.start
        assert start is not None
        self.task = None
        self.start = None
        self.finish(start, start + self.dt)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
