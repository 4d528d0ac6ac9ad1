"""The index: the latest event per (host, service), expiry, search (spec §5.1–5.3).

>>> idx = Index()
>>> idx(Event(host="web1", service="cpu", metric=0.5, time=0))
>>> idx(Event(host="web1", service="cpu", metric=0.7, time=1))
>>> idx.lookup("web1", "cpu")
Event(host='web1', service='cpu', metric=0.7, time=1)
>>> idx.search('metric > 0.6')
[Event(host='web1', service='cpu', metric=0.7, time=1)]

In a config, ``index`` (lower case) is the stream that feeds the index of the
running config, as in Riemann: ``streams(where(...), index)``. It feeds the
:class:`Index` of the runtime in effect (``streams.Runtime``), which survives
config reloads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from . import _compiled
from ._clock import Task, _runtime, current_runtime, must_propagate, scheduler
from ._core import Stream, report_failure
from ._event import Event, LazyEvent, outlived
from ._query import Query, compile_query, lookup_key
from ._validate import StreamArgumentError, seconds, stream

__all__ = [
    "Index",
    "IndexStatistics",
    "Reaper",
    "current_index",
    "delete_from_index",
    "index",
]

log = logging.getLogger("rillet.index")

Subscriber = Callable[[Event], object]
Key = tuple[Any, Any]

#: Keys an expiry sweep looks at per scheduler turn (see Index.expire_slices).
SWEEP_SLICE = 2048


@dataclass(frozen=True, slots=True)
class IndexStatistics:
    """What :meth:`Index.statistics` reports.

    Attributes:
        size: events stored now.
        inserts: events stored since the index was created (replacements count).
        expired: events removed by :meth:`Index.expire`, broken ones included.
        subscribers: callbacks currently subscribed.
    """

    size: int
    inserts: int
    expired: int
    subscribers: int


class Index(Stream):
    """Riemann's index. Call it with an event to store that event.

    An event with ``state="expired"`` deletes its key instead (a tombstone).
    Every call, tombstones included, is then passed to each subscriber, in
    the order they subscribed; a failing subscriber is reported and skipped.

    The index is shared: ``by`` and ``fork`` hand out the same instance.

    >>> idx, seen = Index(), []
    >>> handle = idx.subscribe(seen.append)
    >>> idx(Event(host="a", service="b", time=5))
    >>> idx(Event(host="a", service="b", state="expired", time=6))
    >>> len(idx), [e.state for e in seen]
    (0, [None, 'expired'])
    >>> idx.unsubscribe(handle)
    True
    """

    __slots__ = (
        "_events", "_expired", "_inserts", "_lazy_ids", "_next_handle", "_reaper", "_reaping",
        "_subscribers", "_subscriptions",
    )

    shared = True

    def __init__(self) -> None:
        self._set_children(())
        self._events: dict[Key, Event] = {}
        self._subscriptions: dict[int, Subscriber] = {}
        # A tuple snapshot: iterating it is fast, and callbacks may unsubscribe mid-publish.
        self._subscribers: tuple[Subscriber, ...] = ()
        self._next_handle = 1
        self._inserts = 0
        self._expired = 0
        self._reaper: Reaper | None = None
        self._reaping: Event | None = None
        self._lazy_ids: dict[Key, int] = {}

    # Insert and notify ---------------------------------------------------

    def __call__(self, event: Event) -> None:
        if event.time is None:
            raise ValueError(
                f"cannot index event with no time: {event!r}; give events a time before "
                f"the index, e.g. default('time', ...) or event.evolve(time=now())"
            )
        key = (event.host, event.service)
        if event.state == "expired":
            removed = self._events.pop(key, None)
            if removed is None and event is self._reaping:
                # The reaper already published this tombstone (Riemann publishes it twice).
                return
        else:
            self._events[key] = event
            self._inserts += 1
        if self._subscribers:
            self._publish(event)

    def _publish(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as error:
                report_failure(error, event)

    def subscribe(self, function: Subscriber) -> int:
        """Call ``function(event)`` for every indexed event and tombstone; returns a handle."""
        if not callable(function):
            raise TypeError(
                f"Index.subscribe(function): function must be callable with one event, "
                f"got {function!r}"
            )
        handle = self._next_handle
        self._next_handle += 1
        self._subscriptions[handle] = function
        self._subscribers = tuple(self._subscriptions.values())
        return handle

    def unsubscribe(self, handle: int) -> bool:
        """Stop a subscription; False if the handle was not subscribed (safe to repeat)."""
        removed = self._subscriptions.pop(handle, None) is not None
        self._subscribers = tuple(self._subscriptions.values())
        return removed

    # Reading and deleting ------------------------------------------------

    def lookup(self, host: Any, service: Any) -> Event | None:
        """The latest event for ``(host, service)``, or None."""
        return self._events.get((host, service))

    def delete(self, event: Event) -> Event | None:
        """Remove whatever is stored under ``event``'s key; returns the removed event."""
        return self._events.pop((event.host, event.service), None)

    def delete_exactly(self, event: Event) -> bool:
        """Remove ``event`` only if it is still the stored one (equal by value)."""
        key = (event.host, event.service)
        stored = self._events.get(key)
        if stored is not None and (stored is event or stored == event):
            del self._events[key]
            return True
        return False

    def clear(self) -> None:
        """Remove every event (subscriptions stay)."""
        self._events.clear()

    def __len__(self) -> int:
        return len(self._events)

    def __bool__(self) -> bool:
        # An empty index is still an index: `if core.index:` must not depend on its size.
        return True

    def __iter__(self) -> Iterator[Event]:
        # A snapshot, so callers may insert or delete while iterating.
        return iter(list(self._events.values()))

    def search(self, query: str | Query) -> list[Event]:
        """The stored events matching a query, in unspecified order.

        ``host = "h" and service = "s"`` is answered by one lookup; anything
        else scans every event.

        >>> idx = Index()
        >>> for host in ("a", "b"):
        ...     idx(Event(host=host, service="cpu", metric=1, time=0))
        >>> idx.search('host = "b" and service = "cpu"')
        [Event(host='b', service='cpu', metric=1, time=0)]
        >>> len(idx.search("metric = 1"))
        2
        """
        return [event for part in self.search_slices(query) for event in part]

    def search_slices(self, query: str | Query, n: int = 4096) -> Iterator[list[Event]]:
        """:meth:`search` in parts: the matches among each ``n`` stored events.

        The server yields to other clients between parts, so a query over a
        large index never holds the loop. The events searched are those
        stored when the first part is asked for.

        >>> idx = Index()
        >>> for host in "abc":
        ...     idx(Event(host=host, metric=1, time=0))
        >>> [len(part) for part in idx.search_slices("metric = 1", n=2)]
        [2, 1]
        """
        if isinstance(query, str):
            query = compile_query(query)
        elif not isinstance(query, Query):
            raise TypeError(
                f"Index.search(query): query must be a query string or compile_query(...), "
                f"got {query!r}"
            )
        key = lookup_key(query)
        if key is not None:
            found = self._events.get(key)
            yield [] if found is None else [found]
            return
        predicate = query.predicate
        events = list(self._events.values())
        for start in range(0, len(events), n):
            yield [event for event in events[start:start + n] if predicate(event)]

    # Expiry --------------------------------------------------------------

    def expire(self, now: float | None = None) -> list[Event]:
        """Remove and return the events older than their ttl (60 s when unset).

        An event expires when ``ttl < now - time``, strictly. An event whose
        ttl or time cannot be compared (e.g. ttl ``"0"``) is logged and
        removed, but not returned.

        >>> idx = Index()
        >>> idx(Event(host="old", time=0, ttl=5)); idx(Event(host="new", time=8, ttl=5))
        >>> idx.expire(now=10), len(idx)
        ([Event(host='old', time=0, ttl=5)], 1)
        """
        if now is None:
            now = scheduler().now()
        return [event for part in self.expire_slices(now) for event in part]

    def expire_slices(self, now: float, n: int = SWEEP_SLICE) -> Iterator[list[Event]]:
        """:meth:`expire` in parts: the events removed among each ``n`` keys.

        The reaper runs one part per scheduler turn, so a sweep of a large
        index never holds the loop. The keys swept are those stored when the
        first part is asked for; each is judged by the event it holds then.

        >>> idx = Index()
        >>> for t in (0, 0, 8):
        ...     idx(Event(host=str(t) + str(len(idx)), time=t, ttl=5))
        >>> [len(part) for part in idx.expire_slices(now=10, n=2)]
        [2, 0]
        """
        events = self._events
        keys = list(events)
        # A decoded event keeps its whole wire message alive (100 events'
        # worth for one that is rarely updated). One still stored since the
        # previous sweep is swapped for a plain copy, so memory follows the
        # number of keys; busy keys, replaced between sweeps, are never
        # copied. Ids, not references, so the record pins nothing (a reused id
        # costs one copy).
        previous, seen = self._lazy_ids, {}
        get = events.get  # once per stored key per sweep: one lookup less each
        compiled = _compiled.speedups
        for start in range(0, len(keys), n):
            expired: list[Event] = []
            part = keys[start:start + n]
            if compiled is not None:
                # Only the keys whose event has outlived its ttl or that C cannot
                # judge exactly (a lazy event, an odd time): the rest pass untouched.
                part = compiled.stale(events, part, now)
            for key in part:
                event = get(key)
                if event is None:
                    continue
                try:
                    stale = outlived(event.time, event.ttl, now)  # type: ignore[arg-type]
                except Exception:
                    log.warning("removing an event whose ttl or time is broken: %r", event,
                                exc_info=True)
                    del events[key]
                    self._expired += 1
                    continue
                if stale:
                    del events[key]
                    self._expired += 1
                    expired.append(event)
                elif isinstance(event, LazyEvent):
                    if previous.get(key) == id(event):
                        events[key] = event.materialize()
                    else:
                        seen[key] = id(event)
            yield expired
        self._lazy_ids = seen

    def start_reaper(
        self,
        interval: float = 10,
        streams: Callable[[Event], object] | None = None,
        *,
        keep_keys: Iterable[str] | Literal["all"] = ("host", "service"),
    ) -> Reaper:
        """Expire the index every ``interval`` seconds, first after one interval.

        Each expired event becomes a tombstone (see :class:`Reaper`) that goes
        to the subscribers, then to ``streams`` (the server passes its core's
        top-level streams). Starting a reaper stops the previous one, so a
        reload never runs two.
        """
        if self._reaper is not None:
            self._reaper.stop()
        self._reaper = Reaper(self, interval, streams, keep_keys=keep_keys).start()
        return self._reaper

    def close(self) -> None:
        """Stop the reaper, if one runs."""
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None

    # Presentation --------------------------------------------------------

    def statistics(self) -> IndexStatistics:
        """Size and counters, e.g. for self-instrumentation (``riemann index size``)."""
        return IndexStatistics(
            size=len(self._events),
            inserts=self._inserts,
            expired=self._expired,
            subscribers=len(self._subscribers),
        )


_HOST_AND_SERVICE = ("host", "service")


class Reaper:
    """Periodically expires an index and sends tombstones into the streams (spec §5.3).

    A tombstone keeps only ``keep_keys`` of the expired event (those it has;
    ``"all"`` keeps everything) and gets ``state="expired"`` and ``time=now``.

    >>> from streams import Runtime
    >>> idx, out = Index(), []
    >>> with Runtime() as runtime:
    ...     idx(Event(host="h", service="s", metric=3, ttl=5, time=0))
    ...     reaper = idx.start_reaper(10, out.append)
    ...     runtime.clock.advance(10)
    >>> reaper
    Reaper(interval=10, keep_keys=('host', 'service'))
    >>> out
    [Event(host='h', service='s', state='expired', time=10)]
    >>> reaper.stop()
    """

    __slots__ = ("_continue", "_sweeping", "index", "interval", "keep_keys", "streams", "task")

    def __init__(
        self,
        index: Index,
        interval: float = 10,
        streams: Callable[[Event], object] | None = None,
        *,
        keep_keys: Iterable[str] | Literal["all"] = ("host", "service"),
    ) -> None:
        caller = "start_reaper(interval, streams=None, *, keep_keys=('host', 'service'))"
        interval = seconds(interval, caller, "interval", "start_reaper(10)")
        if streams is not None:
            stream(streams, caller, "streams")
        if isinstance(keep_keys, str) and keep_keys != "all":
            raise StreamArgumentError(
                f"keep_keys must be field names or \"all\", got the string {keep_keys!r}; "
                f"write keep_keys=({keep_keys!r},)"
            )
        self.index = index
        self.interval = interval
        self.streams = streams
        self.keep_keys: tuple[str, ...] | Literal["all"] = (
            "all" if keep_keys == "all" else tuple(keep_keys))
        self.task: Task | None = None
        # The sweep in progress, one slice of keys per scheduler turn.
        self._sweeping: tuple[float, Iterator[list[Event]]] | None = None
        self._continue: Task | None = None

    def start(self) -> Reaper:
        """Schedule the sweeps on the current scheduler; returns self."""
        if self.task is None:
            self.task = scheduler().every(self.interval, self._begin, delay=self.interval)
        return self

    def stop(self) -> None:
        """Cancel future sweeps, and the rest of one in progress."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self._continue is not None:
            self._continue.cancel()
            self._continue = None
        self._sweeping = None

    def _begin(self) -> None:
        if self._sweeping is not None:
            return  # the previous sweep is still going: it carries on instead
        now = scheduler().now()
        self._sweeping = (now, self.index.expire_slices(now))
        self._step()

    def _step(self) -> None:
        self._continue = None
        if self._sweeping is None:
            return
        now, parts = self._sweeping
        expired = next(parts, None)
        if expired is None:
            self._sweeping = None
            return
        # Scheduled, not looped: the server's scheduler lets the loop run
        # between two turns, so clients are served in the middle of a sweep.
        self._continue = scheduler().after(0, self._step)
        self._send(expired, now)

    def tombstone(self, event: Event, now: float) -> Event:
        """The event the streams see for an expired ``event``."""
        if self.keep_keys == "all":
            return event.evolve(state="expired", time=now)
        if self.keep_keys == _HOST_AND_SERVICE:
            # The default, once per expired event of a sweep: no dict of kwargs.
            return Event(host=event.host, service=event.service, state="expired", time=now)
        kept: dict[str, Any] = {}
        for key in self.keep_keys:
            value = event.get(key)
            if value is not None:
                kept[key] = value
        kept["state"] = "expired"
        kept["time"] = now
        return Event(**kept)

    def sweep(self) -> list[Event]:
        """Expire the whole index at once now; returns the tombstones sent."""
        now = scheduler().now()
        return self._send(self.index.expire(now), now)

    def _send(self, expired: list[Event], now: float) -> list[Event]:
        index = self.index
        sent: list[Event] = []
        for event in expired:
            try:
                tombstone = self.tombstone(event, now)
                if index._subscribers:
                    index._publish(tombstone)
                if self.streams is not None:
                    index._reaping = tombstone
                    try:
                        self.streams(tombstone)
                    finally:
                        index._reaping = None
                sent.append(tombstone)
            except BaseException as error:
                # The event is already out of the index: a failure, even a
                # non-Exception from a user stream, must not cost the other
                # expired events their tombstones.
                if must_propagate(error):
                    raise
                report_failure(error, event)
        return sent

    def __repr__(self) -> str:
        return f"Reaper(interval={self.interval!r}, keep_keys={self.keep_keys!r})"


# The config-level `index` ---------------------------------------------------

def current_index() -> Index:
    """The index of the runtime in effect: the one the config-level ``index`` feeds."""
    return current_runtime().index


class _IndexStream(Stream):
    """``index`` in a config: feeds the :class:`Index` of the runtime in effect.

    Other attributes (``search``, ``lookup``, ...) read through to that index.

    >>> from streams import Runtime
    >>> with Runtime():
    ...     index(Event(host="a", time=1)); index.lookup("a", None)
    Event(host='a', time=1)
    >>> index
    index
    """

    __slots__ = ()

    shared = True

    def __init__(self) -> None:
        self._set_children(())

    def __call__(self, event: Event = None) -> None:  # type: ignore[assignment]
        if event is None:
            raise TypeError("index() takes an event: in a config, use `index`, not `index()` "
                            "(the Clojure habit), e.g. streams(where(...), index)")
        try:
            runtime = _runtime.get()
        except LookupError:
            runtime = current_runtime()
        runtime.index(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(current_runtime().index, name)

    def __repr__(self) -> str:
        return "index"


#: The stream that feeds the running core's index (Riemann's ``index``).
index = _IndexStream()


class delete_from_index(Stream):
    """Remove events from the running index (Riemann's ``delete-from-index``).

    Without fields it removes the entry with the event's host and service.
    With ``fields`` (a name or a list) it removes every indexed event whose
    values for those fields equal the event's.

    >>> from streams import Runtime
    >>> with Runtime() as runtime:
    ...     index(Event(host="a", service="x", state="ok", time=1))
    ...     index(Event(host="a", service="y", state="ok", time=1))
    ...     delete_from_index(["host", "state"])(Event(host="a", state="ok"))
    >>> len(runtime.index)
    0
    """

    __slots__ = ("_getters", "fields")
    shared = True

    def __init__(self, fields: str | Iterable[str] | None = None) -> None:
        from ._match import field_getter

        names = (fields,) if isinstance(fields, str) else tuple(fields or ())
        self.fields = names
        self._getters = tuple(field_getter(name) for name in names)
        self._set_children(())

    def __call__(self, event: Event) -> None:
        target = current_runtime().index
        if not self._getters:
            target.delete(event)
            return
        wanted = tuple(get(event) for get in self._getters)
        for stored in target:
            if tuple(get(stored) for get in self._getters) == wanted:
                target.delete(stored)
