"""A fork behaves like the stream built afresh, for every stream of the registry.

``by`` forks its children per new key, and most streams fork by copying their
template's configuration (``copy_forks``) rather than building themselves
again: these tests hold every registered stream to the same contract however
it forks. A fork made after its siblings saw events starts empty, runs like a
stream built by its constructor at that moment, and leaves the template as it
was built.
"""

from __future__ import annotations

import math
import operator
import re
import types
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import *  # noqa: F403 (every stream of the registry is built below)
from streams import REGISTRY, Event, Runtime, Stream, VirtualClock
from streams._clock import Scheduler
from streams.testing import Sink, timed_events


def witness(out: Sink) -> Stream:
    """A child that shows every event and how many it has seen: a fork wired to
    its template's child (or a sibling's) would count the sibling's events too."""
    return sdo(out, sreduce(lambda n, e: n + 1, out, init=0))  # noqa: F405


# One way to build each stream (with stateful children, so that shared wiring shows).
SAMPLES: dict[str, Callable[[Sink], Any]] = {
    "adjust": lambda o: adjust("state", lambda s: (s or "") + "!", witness(o)),  # noqa: F405
    "apdex": lambda o: apdex(10, "metric < 1", lambda e: e.metric < 4, witness(o)),  # noqa: F405
    "batch": lambda o: batch(3, 10, witness(o)),  # noqa: F405
    "breakout": lambda o: breakout(4, witness(o), warmup=2),  # noqa: F405
    "by": lambda o: by("host", witness(o)),  # noqa: F405
    "by_builder": lambda o: by_builder("host", lambda h: with_(None, witness(o),  # noqa: F405
                                                             service=f"{h} seen")),
    "by_fn": lambda o: by_fn("host", lambda: witness(o)),  # noqa: F405
    "changed": lambda o: changed("state", witness(o)),  # noqa: F405
    "changed_state": lambda o: changed_state(witness(o)),  # noqa: F405
    "clock_skew": lambda o: clock_skew(witness(o)),  # noqa: F405
    "coalesce": lambda o: coalesce(5, witness(o)),  # noqa: F405
    "coalesce_with_event": lambda o: coalesce_with_event(  # noqa: F405
        "host", lambda e, es: o((e, sorted(x.host for x in es)))),
    "combine": lambda o: combine([zscore(4), mad(4)], witness(o)),  # noqa: F405
    "counter": lambda o: counter(witness(o), initial=100),  # noqa: F405
    "ddt": lambda o: ddt(5, witness(o)),  # noqa: F405
    "ddt_events": lambda o: ddt_events(witness(o)),  # noqa: F405
    "ddt_real": lambda o: ddt_real(2, witness(o)),  # noqa: F405
    "default": lambda o: default({"ttl": 60, "state": "ok"}, witness(o)),  # noqa: F405
    "derivative": lambda o: derivative(zscore(4), witness(o)),  # noqa: F405
    "dual": lambda o: dual(lambda e: (e.metric or 0) > 5, witness(o), witness(o)),  # noqa: F405
    "ewma": lambda o: ewma(3, witness(o)),  # noqa: F405
    "ewma_timeless": lambda o: ewma_timeless(0.5, witness(o)),  # noqa: F405
    "exception_stream": lambda o: exception_stream(  # noqa: F405
        smap(lambda e: (e.service, e.tags), witness(o)),  # noqa: F405
        smap(lambda e: e.evolve(metric=1 / e.metric), witness(o))),  # noqa: F405
    "expired": lambda o: expired(witness(o)),  # noqa: F405
    "fill_in": lambda o: fill_in(7, {"service": "x", "metric": 0}, witness(o)),  # noqa: F405
    "fill_in_last": lambda o: fill_in_last(7, {"state": "stale"}, witness(o)),  # noqa: F405
    "fixed_event_window": lambda o: fixed_event_window(3, witness(o)),  # noqa: F405
    "fixed_offset_time_window": lambda o: fixed_offset_time_window(  # noqa: F405
        10, witness(o)),
    "fixed_time_window": lambda o: fixed_time_window(10, witness(o)),  # noqa: F405
    "fold_interval": lambda o: fold_interval(  # noqa: F405
        5, "metric", lambda ms: sum(m for m in ms if m is not None), witness(o)),
    "fold_interval_metric": lambda o: fold_interval_metric(  # noqa: F405
        5, lambda ms: max(ms, default=None), witness(o)),
    "holt_winters": lambda o: holt_winters(4, witness(o)),  # noqa: F405
    "interpolate_constant": lambda o: interpolate_constant(3, witness(o)),  # noqa: F405
    "mad": lambda o: mad(5, witness(o)),  # noqa: F405
    "match": lambda o: match("state", re.compile("^c"), witness(o)),  # noqa: F405
    "mean_over_time": lambda o: mean_over_time(witness(o)),  # noqa: F405
    "moving_event_window": lambda o: moving_event_window(3, witness(o)),  # noqa: F405
    "moving_time_window": lambda o: moving_time_window(10, witness(o)),  # noqa: F405
    "not_expired": lambda o: not_expired(witness(o)),  # noqa: F405
    "over": lambda o: over(5, witness(o)),  # noqa: F405
    "percentiles": lambda o: percentiles(10, [0, 0.5, 1], witness(o)),  # noqa: F405
    "pipe": lambda o: pipe(lambda nxt: changed("state", nxt), witness(o)),  # noqa: F405
    "predict_linear": lambda o: predict_linear(3, 10, witness(o)),  # noqa: F405
    "project": lambda o: project([{"service": "cpu"}, {"service": "memory"}],  # noqa: F405
                                 witness(o)),
    "rate": lambda o: rate(5, witness(o)),  # noqa: F405
    "rollup": lambda o: rollup(2, 10, witness(o)),  # noqa: F405
    "runs": lambda o: runs(2, "state", witness(o)),  # noqa: F405
    "scale": lambda o: scale(100, where(lambda e: e.metric is not None,  # noqa: F405
                                        witness(o))),
    "sdo": lambda o: sdo(witness(o), changed("host", witness(o))),  # noqa: F405
    "sflatten": lambda o: smap(lambda e: [e, e], sflatten(witness(o))),  # noqa: F405
    "smap": lambda o: smap(lambda e: e.evolve(service="x"), witness(o)),  # noqa: F405
    "smap_all": lambda o: smap_all(lambda x: x, witness(o)),  # noqa: F405
    "smapcat": lambda o: smapcat(lambda x: [x, x], witness(o)),  # noqa: F405
    "split": lambda o: split(lambda e: (e.metric or 0) > 10, witness(o),  # noqa: F405
                             "metric > 1", witness(o), witness(o)),
    "splitp": lambda o: splitp(operator.lt, lambda e: e.metric or 0, 0.9,  # noqa: F405
                               witness(o), 0.5, witness(o), witness(o)),
    "sreduce": lambda o: sreduce(lambda acc, e: [*acc, e.host], witness(o),  # noqa: F405
                                 init=[]),
    "stable": lambda o: stable(3, "state", witness(o)),  # noqa: F405
    "sum_over_time": lambda o: sum_over_time(witness(o)),  # noqa: F405
    "sustained": lambda o: sustained(5, "metric > 0", witness(o),  # noqa: F405
                                     else_=witness(o)),
    "tag": lambda o: tag(["x", "web"], witness(o)),  # noqa: F405
    "tagged": lambda o: tagged("web", witness(o)),  # noqa: F405
    "tagged_all": lambda o: tagged_all(["web", "prod"], witness(o)),  # noqa: F405
    "tagged_any": lambda o: tagged_any(["web", "db"], witness(o)),  # noqa: F405
    "throttle": lambda o: throttle(2, 10, witness(o)),  # noqa: F405
    "top": lambda o: top(2, "metric", witness(o), witness(o)),  # noqa: F405
    "under": lambda o: under(5, witness(o)),  # noqa: F405
    "untag": lambda o: untag(["web"], witness(o)),  # noqa: F405
    "where": lambda o: where(lambda e: (e.metric or 0) > 3, witness(o),  # noqa: F405
                             else_=witness(o)),
    "window": lambda o: window(3, witness(o)),  # noqa: F405
    "with_": lambda o: with_({"state": "critical"}, witness(o)),  # noqa: F405
    "zscore": lambda o: zscore(4, witness(o)),  # noqa: F405
}


def _forkable() -> list[str]:
    return sorted(name for name, constructor in REGISTRY.items()
                  if not (isinstance(constructor, type) and constructor.shared))


def test_every_forkable_stream_of_the_registry_has_a_sample() -> None:
    # A new stream (or one that starts copying its forks) is covered once it has one.
    assert sorted(SAMPLES) == _forkable()


def _fingerprint(value: Any, seen: set[int]) -> Any:
    """What a stream tree holds, comparable across time: everything but the
    shared streams' contents (a sink fills up, legitimately)."""
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return value
    if isinstance(value, float):
        return "nan" if math.isnan(value) else value
    if isinstance(value, Event):
        return ("event", repr(value))
    if (isinstance(value, Stream) and value.shared) or isinstance(value, (Runtime, Scheduler)):
        return ("shared", id(value))
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)) or (
            callable(value) and not hasattr(value, "__slots__")
            and not isinstance(value, (types.MethodType, Stream))):
        return ("function", id(value))
    if id(value) in seen:
        return ("seen", id(value))
    seen.add(id(value))
    if isinstance(value, types.MethodType):
        return ("method", id(value.__func__), _fingerprint(value.__self__, seen))
    if isinstance(value, (list, tuple, deque)):
        return (type(value).__name__, tuple(_fingerprint(v, seen) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, tuple(sorted(repr(v) for v in value)))
    if isinstance(value, dict):
        return ("dict", tuple((_fingerprint(k, seen), _fingerprint(v, seen))
                              for k, v in value.items()))
    names = [n for cls in type(value).__mro__ for n in getattr(cls, "__slots__", ())
             if n != "__weakref__"]
    if not names and not hasattr(value, "__dict__"):
        return (type(value).__name__, repr(value))
    names += list(getattr(value, "__dict__", {}))
    return (type(value).__name__, tuple((n, _fingerprint(getattr(value, n, "<unset>"), seen))
                                        for n in names))


def fingerprint(stream: Any) -> Any:
    return _fingerprint(stream, set())


def _drive(streams: list[tuple[Any, Sink]], events: list[Any], clock: VirtualClock,
           offset: float) -> None:
    """Deliver each event (times shifted by ``offset``) to every stream, the clock
    first advanced to its time; a stream's failure goes to its own sink."""
    for event in events:
        event = event.evolve(time=event.time + offset)
        clock.advance(event.time)
        for stream, out in streams:
            try:
                stream(event)
            except Exception as error:
                out(("raised", type(error).__name__))


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=timed_events(), after=timed_events(), end=st.floats(0, 60))
def test_a_fork_made_after_its_siblings_saw_events_is_a_fresh_stream(
        name: str, before: list[Any], after: list[Any], end: float) -> None:
    build = SAMPLES[name]
    with Runtime(VirtualClock(0)) as runtime:
        clock = runtime.clock
        assert isinstance(clock, VirtualClock)
        forks_out, fresh_out = Sink(), Sink()
        template = build(forks_out)
        template.close()  # as by closes its templates: they never see an event
        built = fingerprint(template)
        # A sibling fork sees events beside a stream built afresh ...
        sibling, reference = template.fork(), build(fresh_out)
        _drive([(sibling, forks_out), (reference, fresh_out)], before, clock, 0)
        clock.advance(100)
        assert forks_out.events == fresh_out.events
        # ... and a fork made then is what the constructor builds then (the
        # siblings' timers go on firing into their sinks meanwhile).
        fork, fresh = template.fork(), build(fresh_out)
        _drive([(fork, forks_out), (fresh, fresh_out)], after, clock, 100)
        clock.advance(200 + end)
        assert forks_out.events == fresh_out.events
        assert fingerprint(template) == built, "the template's state changed"
        for stream in (sibling, reference, fork, fresh):
            stream.close()


def _streams_in(value: Any, found: dict[int, Any], seen: set[int]) -> None:
    """Every unshared stream reachable from ``value`` through slots, containers
    and bound methods (not through plain functions' closures)."""
    if id(value) in seen or value is None or isinstance(value, (int, float, str, bytes)):
        return
    seen.add(id(value))
    if isinstance(value, Stream):
        if value.shared:
            return
        found[id(value)] = value
    if isinstance(value, types.MethodType):
        _streams_in(value.__self__, found, seen)
    elif isinstance(value, (list, tuple, deque, set, frozenset)):
        for item in value:
            _streams_in(item, found, seen)
    elif isinstance(value, dict):
        for item in value.values():
            _streams_in(item, found, seen)
    elif not isinstance(value, (types.FunctionType, Event, type)):
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name != "__weakref__":
                    _streams_in(getattr(value, name, None), found, seen)
        for item in getattr(value, "__dict__", {}).values():
            _streams_in(item, found, seen)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_fork_reaches_none_of_its_templates_streams(name: str) -> None:
    # Wiring is where a copied fork could go wrong without a visible difference
    # until two keys meet: an entry point (a bound method) kept from the template.
    with Runtime(VirtualClock(0)):
        template = SAMPLES[name](Sink())
        fork = template.fork()
        in_template: dict[int, Any] = {}
        _streams_in(template, in_template, set())
        in_fork: dict[int, Any] = {}
        _streams_in(fork, in_fork, set())
        # by's children are templates it shares on purpose (it never calls them).
        shared = {i: s for i, s in in_fork.items() if i in in_template}
        allowed = {id(s) for s in in_template.values()
                   for owner in in_template.values() if owner.templates
                   for s in _tree(owner.children)}
        assert set(shared) <= allowed, [shared[i] for i in set(shared) - allowed]
        fork.close()
        template.close()


def _tree(streams: tuple[Any, ...]) -> list[Any]:
    found: dict[int, Any] = {}
    for stream in streams:
        _streams_in(stream, found, set())
    return list(found.values())


def test_a_stream_given_where_a_function_goes_is_forked_with_its_user() -> None:
    # smap(f) takes any callable; a stream there has state of its own per key,
    # as the constructor called again on the forked arguments gave it.
    out = Sink()
    with Runtime(VirtualClock(0)):
        template = smap(changed("state", out), Sink())  # noqa: F405
        one, two = template.fork(), template.fork()
        assert one.function is not template.function is not two.function
        assert type(one.function) is changed  # noqa: F405
        one(Event(state="ok"))
        two(Event(state="ok"))
        assert out.events == [Event(state="ok"), Event(state="ok")]


def test_a_copying_class_needs_slots_to_know_what_to_copy() -> None:
    class Loose(Stream):  # no __slots__: its objects keep a __dict__
        pass

    with pytest.raises(TypeError, match=r"Tight.copy_forks: Loose has no __slots__"):
        class Tight(Loose):
            __slots__ = ()
            copy_forks = True
