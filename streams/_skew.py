"""Time sanity for every stream that reads event time (``max_skew=``).

A stream that windows, schedules, weighs or compares by an event's ``time``
trusts the sender's clock. One host a year ahead (or at ``time=1e11``) would
otherwise make a window emit millions of empty windows, push a cutoff past
every later event, schedule a timer a year away while holding what follows,
or freeze an average at the bogus time. Each such stream takes
``max_skew=`` (seconds, default :data:`DEFAULT_MAX_SKEW`; ``None`` trusts
every time): an event whose time lies further than that from the runtime's
clock is dropped, counted in the stream's ``skewed`` attribute and logged at
most once per interval per kind of stream.

>>> from streams import Event, Runtime, VirtualClock, ewma
>>> from streams.testing import Sink
>>> sink = Sink()
>>> with Runtime(VirtualClock(1000)):
...     s = ewma(60, sink)
...     s(Event(metric=1, time=1000 + 365 * 86400))   # a year ahead: dropped
...     s(Event(metric=1, time=1001))
>>> [e.time for e in sink.events], s.skewed
([1001], 1)
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ._clock import current_runtime, scheduler
from ._validate import seconds

__all__ = ["DEFAULT_MAX_SKEW"]

#: Seconds an event's time may lie from the clock before a stream that reads
#: event time drops it (``max_skew=``): one hour, far beyond any NTP-synced
#: host's drift.
DEFAULT_MAX_SKEW = 3600.0

_log = logging.getLogger("rillet.skew")


class SkewChecked(Protocol):
    """What :func:`skewed` reads and counts on a stream."""

    max_skew: float | None
    skewed: int


def event_time(event: Any, caller: str, why: str) -> Any:
    """``event.time``, or the error naming the stream (``caller``), why it needs a
    time (``why``) and the fix, for a stream that cannot work without one.

    >>> from streams import Event
    >>> event_time(Event(time=5), "stable(...)", "it works on event time")
    5
    >>> event_time(Event(), "stable(...)", "it works on event time")
    Traceback (most recent call last):
    ...
    ValueError: stable(...): it works on event time, and this event has no time: Event(); give events a time upstream (e.g. with default)
    """  # noqa: E501
    time = event.time
    if time is None:
        raise ValueError(f"{caller}: {why}, and this event has no time: {event!r}; give events "
                         f"a time upstream (e.g. with default)")
    return time


def skew_limit(value: Any, caller: str) -> float | None:
    """Validate a ``max_skew=`` argument: seconds > 0, or None to trust every time."""
    return None if value is None else seconds(value, caller, "max_skew", "max_skew=3600")


def skewed(stream: SkewChecked, time: Any) -> bool:
    """Whether ``time`` lies more than ``stream.max_skew`` from the clock; counts and
    logs (rate-limited) the events it rejects."""
    max_skew = stream.max_skew
    if max_skew is None:
        return False
    now = scheduler().now()
    try:
        if abs(time - now) <= max_skew:
            return False
    except TypeError:
        return False  # not a number: the stream reports it as it always did
    reject(stream, time, now)
    return True


def reject(stream: SkewChecked, time: Any, now: float) -> None:
    """Count and log an event :func:`skewed` (or a caller that already read the
    clock, such as ``PeriodicUntilExpired``) found too far from ``now``."""
    max_skew = stream.max_skew
    stream.skewed += 1
    current_runtime().limited_log(_log).warning(
        ("skew", type(stream).__name__),
        "%r dropped an event whose time %r is %s s from the clock (%r), more than "
        "max_skew=%r; is that host's clock right? (%d dropped so far by this stream)",
        stream, time, f"{time - now:+.0f}", now, max_skew, stream.skewed)
