"""Multi-event correlation: top, project, coalesce_with_event, clock_skew (spec §3.10)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._clock import scheduler
from ._core import Child, Stream, call_isolated, expire_event, is_expired
from ._filters import predicate
from ._partition import key_function
from ._validate import argument_error, count, field_reader, function

__all__ = ["clock_skew", "coalesce_with_event", "project", "top"]


def _discard(event: Any) -> None:
    return None


class top(Stream):
    """Keep the ``k`` (host, service) keys with the largest ``f`` and route events by membership.

    An event whose key is in the top set goes to ``top_stream`` (and an
    expired copy to ``bottom_stream``); otherwise an expired copy (host,
    service, state "expired", time now) goes to ``top_stream`` and the event
    to ``bottom_stream``. An expired event leaves the set and goes to both
    streams as is; one whose ``f`` is None leaves the set and is routed as not
    in it (spec §3.10). A newcomer must beat the current
    smallest member strictly. With ``demote`` (the default when a
    ``bottom_stream`` is given) a member pushed out by a newcomer is announced
    first: expired to ``top_stream``, as is to ``bottom_stream``. ``f`` is a
    field name or a function of the event.

    >>> from streams import Event
    >>> tops, bottoms = [], []
    >>> s = top(2, "metric", tops.append, bottoms.append)
    >>> for host, m in [("a", 1), ("b", 5), ("a", 10), ("c", 6)]: s(Event(host=host, metric=m))
    >>> [(e.host, e.metric, e.state) for e in tops]  # doctest: +NORMALIZE_WHITESPACE
    [('a', 1, None), ('b', 5, None), ('a', 10, None), ('b', None, 'expired'),
     ('c', 6, None)]
    >>> sorted(e.host for e in s.members())
    ['a', 'c']
    """

    __slots__ = ("_bottom", "_f", "_members", "_smallest", "_top", "demote", "f", "k")

    def __init__(self, k: int, f: str | Callable[[Any], Any], top_stream: Child,
                 bottom_stream: Child | None = None, *, demote: bool | None = None) -> None:
        caller = "top(k, f, top_stream, bottom_stream=None, *, demote=None)"
        self.k = count(k, caller, "k", minimum=1, what="events",
                       example="top(3, 'metric', child)")
        self.f = f
        self._f = field_reader(f, caller, "f", "top(3, 'metric', child)")
        self.demote = bottom_stream is not None if demote is None else bool(demote)
        self._set_children((top_stream,) if bottom_stream is None
                           else (top_stream, bottom_stream))
        self._top = top_stream
        self._bottom = _discard if bottom_stream is None else bottom_stream
        self._members: dict[tuple[Any, Any], tuple[Any, Any]] = {}
        self._smallest: tuple[Any, Any] | None = None

    def members(self) -> list[Any]:
        """The events currently in the top set, largest ``f`` first."""
        ranked = sorted(self._members.values(), key=lambda pair: pair[0], reverse=True)
        return [event for _, event in ranked]

    def _rank_smallest(self) -> None:
        members = self._members
        self._smallest = min(members, key=lambda key: members[key][0]) if members else None

    def _update(self, event: Any) -> tuple[bool, Any]:
        """Update the set; returns (event is in the top, the member it pushed out or None)."""
        members = self._members
        key = (event.host, event.service)
        value = self._f(event)
        if value is None or is_expired(event):
            if members.pop(key, None) is not None:
                self._rank_smallest()
            return False, None
        if key not in members and len(members) >= self.k:
            assert self._smallest is not None
            if value <= members[self._smallest][0]:
                return False, None
        members[key] = (value, event)
        evicted = None
        if len(members) > self.k:
            assert self._smallest is not None
            evicted = members.pop(self._smallest)[1]
        # Recomputed on every change, not only when the new value is lower: a
        # member whose value rose must stop counting as the smallest.
        self._rank_smallest()
        return True, evicted

    def __call__(self, event: Any) -> None:
        in_top, evicted = self._update(event)
        if evicted is not None and self.demote:
            call_isolated(self._top, expire_event(evicted))
            call_isolated(self._bottom, evicted)
        if is_expired(event):
            call_isolated(self._top, event)
            call_isolated(self._bottom, event)
        elif in_top:
            call_isolated(self._bottom, expire_event(event))
            call_isolated(self._top, event)
        else:
            call_isolated(self._top, expire_event(event))
            call_isolated(self._bottom, event)


def _condition(condition: Any, caller: str) -> Callable[[Any], Any]:
    if isinstance(condition, Mapping):
        return predicate(None, dict(condition), caller)
    return predicate(condition, {}, caller)


class project(Stream):
    """Keep the latest event matching each condition; on each match forward all of them as a list.

    Slot ``i`` of the list holds the latest event that matched
    ``conditions[i]`` (None until one has); an event goes into every slot
    whose condition it matches, and events matching none are ignored. An
    expired event appears once, as an expired copy (host, service, state
    "expired", time now), and then leaves its slot. Conditions are
    where-style: a function, a query string, or a dict of field patterns.

    >>> from streams import Event
    >>> out = []
    >>> s = project([{"service": "used"}, {"service": "total"}], out.append)
    >>> s(Event(service="used", metric=3)); s(Event(service="total", metric=4)); s(Event())
    >>> [[e and e.metric for e in pair] for pair in out]
    [[3, None], [3, 4]]
    """

    __slots__ = ("_slots", "_tests", "conditions")

    def __init__(self, conditions: Sequence[Any], *children: Child) -> None:
        caller = "project(conditions, *children)"
        if isinstance(conditions, (str, Mapping)) or not isinstance(conditions, Sequence):
            raise argument_error(caller, "conditions", conditions, "a list of conditions",
                                 "project(['service = \"used\"', 'service = \"total\"'], ...)")
        self.conditions = conditions
        self._tests = [_condition(c, caller) for c in conditions]
        self._slots: list[Any] = [None] * len(self._tests)
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        slots = self._slots
        matched = False
        for i, test in enumerate(self._tests):
            if test(event):
                slots[i] = event
                matched = True
        if not matched:
            return
        emitted: list[Any] = []
        for i, held in enumerate(slots):
            if held is not None and is_expired(held):
                emitted.append(expire_event(held))
                slots[i] = None
            else:
                emitted.append(held)
        self._out(emitted)


class coalesce_with_event(Stream):
    """Keep the latest event per key; call ``child(event, events)`` for every event.

    ``events`` lists the expired remembered events (reported this once, then
    forgotten) followed by the live ones. ``keyfn`` is a field name, a
    function, or a list of them. ``child`` takes two arguments, so it is a
    function rather than a stream.

    >>> from streams import Event
    >>> seen = []
    >>> s = coalesce_with_event("host", lambda e, es: seen.append(sorted(x.host for x in es)))
    >>> s(Event(host="a")); s(Event(host="b")); s(Event(host="a", state="expired"))
    >>> seen
    [['a'], ['a', 'b'], ['a', 'b']]
    >>> s(Event(host="c")); seen[-1]
    ['b', 'c']
    """

    __slots__ = ("_key", "_latest", "child", "keyfn")
    childless = True  # its output goes to the child function it is given

    def __init__(self, keyfn: Any, child: Callable[[Any, list[Any]], object]) -> None:
        caller = "coalesce_with_event(keyfn, child)"
        self.keyfn = keyfn
        self._key = key_function(keyfn, caller)
        self.child = function(child, caller, "child", "(event, events)")
        self._latest: dict[Any, Any] = {}
        self._set_children(())

    def __call__(self, event: Any) -> None:
        latest = self._latest
        latest[self._key(event)] = event
        now = scheduler().now()
        expired = [(k, e) for k, e in latest.items() if is_expired(e, now)]
        for key, _ in expired:
            del latest[key]
        self.child(event, [e for _, e in expired] + list(latest.values()))


class clock_skew(Stream):
    """Forward each event with ``metric`` = how far its host's clock is ahead of the others'.

    The latest event of every host is remembered with its arrival time; a
    host's clock now is estimated as ``time + (now − arrival)``. Each live
    event is forwarded with ``metric = time − median`` of those estimates
    (the upper median). Expired events are forwarded unchanged and make their
    host forgotten. Events without a time raise.

    >>> from streams import Event
    >>> from streams.testing import run_intervals
    >>> arrivals = [(Event(host=h, time=t), None) for h, t in [("a", 0), ("b", 3), ("c", -1)]]
    >>> out = run_intervals(lambda sink: clock_skew(sink), arrivals)
    >>> [(e.host, e.metric) for e in out]
    [('a', 0), ('b', 0), ('c', -1)]
    """

    __slots__ = ("_hosts",)

    def __init__(self, *children: Child) -> None:
        self._hosts: dict[Any, tuple[Any, float]] = {}
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        hosts = self._hosts
        now = scheduler().now()
        if is_expired(event, now):
            hosts.pop(event.host, None)
            self._out(event)
            return
        if event.time is None:
            raise ValueError(f"clock_skew(*children): the event has no time, so its host's "
                             f"clock cannot be compared: {event!r}")
        hosts[event.host] = (event, now)
        for host in [h for h, (e, _) in hosts.items() if is_expired(e, now)]:
            del hosts[host]
        clocks = sorted(e.time + (now - arrival) for e, arrival in hosts.values())
        median = clocks[len(clocks) // 2]
        self._out(event.evolve(metric=event.time - median))
