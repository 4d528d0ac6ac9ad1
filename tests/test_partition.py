"""Partitioning (spec §3.4): by, by_builder, by_fn."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from _helpers import relaxed
from hypothesis import given
from hypothesis import strategies as st

from streams import (
    Event,
    Runtime,
    Stream,
    VirtualClock,
    by,
    by_builder,
    by_fn,
    changed,
    changed_state,
    fill_in,
    rate,
    sdo,
    sreduce,
    throttle,
    where,
    with_,
)
from streams.testing import Sink, clock, events, run, timed_events


class counted(Stream):
    """A pass-through stream that counts how many instances were built."""

    __slots__ = ()
    built: ClassVar[list[int]] = [0]

    def __init__(self, *children: Any) -> None:
        counted.built[0] += 1
        self._set_children(children)


# by --------------------------------------------------------------------------------

def test_by_builds_the_children_once_per_distinct_key() -> None:
    # spec: by(:metric, child) builds the child once per distinct metric.
    counted.built[0] = 0
    sink = Sink()
    s = by("metric", counted(sink))
    assert counted.built[0] == 1  # the template
    s(Event(metric=1))
    s(Event(metric=2))
    assert counted.built[0] == 3
    s(Event(metric=1))
    assert counted.built[0] == 3
    assert len(sink.events) == 3 and len(s) == 2


def test_by_host_rate_spec_example() -> None:
    out = run(lambda sink: by("host", rate(1, sink)),
              [Event(host="a", metric=1, time=0), Event(host="b", metric=2, time=0),
               Event(host="a", metric=3, time=0)], until=1)
    assert sorted((e.host, e.metric, e.time) for e in out) == [("a", 4.0, 1), ("b", 2.0, 1)]


@pytest.mark.parametrize(
    ("fields", "inputs", "keys"),
    [
        ("host", [Event(host="a"), Event(), Event(host="a")], ["a", None]),  # None is a key
        (["host", "service"], [Event(host="a", service="x"), Event(host="a", service="y")],
         [("a", "x"), ("a", "y")]),
        (["host", "region"], [Event(host="a", region="eu")], [("a", "eu")]),
        (lambda e: e.metric > 1, [Event(metric=1), Event(metric=5), Event(metric=3)],
         [False, True]),
        ("region", [Event(region="eu"), Event(region="us")], ["eu", "us"]),
    ],
)
def test_by_keys(fields: Any, inputs: list[Event], keys: list[Any]) -> None:
    s = by(fields, Sink())
    for e in inputs:
        s(e)
    assert s.keys() == keys


def test_by_shares_sinks_and_plain_functions_and_forks_stateful_streams() -> None:
    sink = Sink()
    seen: list[Any] = []
    template = changed("state", sink)
    s = by("host", template, seen.append)
    for host in "abab":
        s(Event(host=host, state="ok"))
    # each host has its own changed: the first "ok" of each host passes
    assert [e.host for e in sink.events] == ["a", "b"]
    assert len(seen) == 4
    assert template._previous_value is None  # the template itself never runs


def test_by_max_keys_evicts_the_oldest_key_and_closes_its_timers() -> None:
    def build(sink: Sink) -> Any:
        global keyed
        keyed = by("host", rate(1, sink), max_keys=2)
        return keyed

    out = run(build, [Event(host=h, metric=1, time=0) for h in "abc"], until=2)
    assert keyed.keys() == ["b", "c"]
    assert keyed.statistics() == {"keys": 2, "evicted": 1, "max_keys": 2}
    # a's rate was closed on eviction: only b and c tick
    assert sorted(e.host for e in out) == ["b", "b", "c", "c"]


keyed: Any = None


def test_by_idle_drops_keys_after_one_to_two_idle_periods() -> None:
    sink = Sink()
    s = by("host", changed("state", sink), idle=10)
    s(Event(host="a", state="ok"))
    clock().advance(5)
    s(Event(host="b", state="ok"))
    clock().advance(10)  # first sweep: both keys are now "previous"
    assert len(s) == 2
    s(Event(host="b", state="ok"))  # b comes back in time and keeps its state
    clock().advance(20)  # second sweep: a saw nothing for a whole period
    assert s.keys() == ["b"]
    assert s.statistics()["evicted"] == 1
    s(Event(host="a", state="ok"))  # a starts afresh: "ok" is a change again
    assert [e.host for e in sink.events] == ["a", "b", "a"]


def test_by_close_cancels_forked_timers(runtime: Runtime) -> None:
    def build(sink: Sink) -> Any:
        global keyed
        keyed = by("host", rate(1, sink))
        return keyed

    run(build, [Event(host="a", metric=1, time=0)], runtime=runtime)
    assert len(clock()) == 1
    keyed.close()
    clock().advance(5)
    assert len(keyed) == 0 and len(clock()) == 0


def test_nested_by_forks_the_inner_by_per_outer_key() -> None:
    sink = Sink()
    s = by("host", by("service", changed("state", sink)))
    for host, service in [("a", "x"), ("a", "y"), ("b", "x"), ("a", "x")]:
        s(Event(host=host, service=service, state="ok"))
    assert [(e.host, e.service) for e in sink.events] == [("a", "x"), ("a", "y"), ("b", "x")]


def test_a_nested_keyed_stream_is_forked_without_copying_its_templates() -> None:
    # The inner by only forks its templates per key, so a fork of it per outer
    # key shares them: one template plus one counted per (host, service).
    counted.built[0] = 0
    sink = Sink()
    s = by("host", by("service", counted(sink)))
    for host, service in [("a", "x"), ("b", "x"), ("a", "y"), ("a", "x")]:
        s(Event(host=host, service=service))
    assert counted.built[0] == 1 + 3
    assert len(sink.events) == 4


@relaxed
@given(timed_events(hosts=["a", "b", "c"], services=["x", "y"], states=["ok", "warning"]))
def test_nested_keyed_streams_equal_one_fresh_instance_per_outer_key(
        inputs: list[Event]) -> None:
    # Forks of by and changed_state copy their configuration rather than
    # rebuild it; with timers (throttle windows anchored when built, rate
    # ticks) they must still behave as instances built at the key's first event.
    def nested(sink: Any) -> Any:
        return sdo(changed_state(throttle(1, 5, sink)), by("service", rate(2, sink)))

    got = run(lambda sink: by("host", nested(sink)), inputs, until=60)

    def per_host(sink: Any) -> Any:
        instances: dict[Any, Any] = {}

        def dispatch(event: Event) -> None:
            if event.host not in instances:
                instances[event.host] = nested(sink)
            instances[event.host](event)
        return dispatch

    assert got == run(per_host, inputs, until=60)


@relaxed
@given(timed_events(hosts=["a", "b", "c"], states=["ok", "warning", None]))
def test_by_equals_one_instance_per_key(inputs: list[Event]) -> None:
    got = run(lambda sink: by("host", changed("state", sink)), inputs)
    expected: list[Event] = []
    per_key: dict[Any, changed] = {}
    for e in inputs:
        if e.host not in per_key:
            per_key[e.host] = changed("state", expected.append)
        per_key[e.host](e)
    assert got == expected


# by_builder / by_fn ----------------------------------------------------------

def test_by_builder_passes_the_key_to_the_factory() -> None:
    built: list[Any] = []

    def per_host(host: str) -> Any:
        built.append(host)
        return with_(None, sink, service=f"{host} cpu")

    sink = Sink()
    s = by_builder("host", per_host)
    for h in ["a", "b", "a", None]:
        s(Event(host=h))
    assert built == ["a", "b", None]
    assert [e.service for e in sink.events] == ["a cpu", "b cpu", "a cpu", "None cpu"]
    assert sorted(map(str, s.keys())) == ["None", "a", "b"]


def test_by_builder_gives_one_argument_per_field_and_accepts_lists_of_streams() -> None:
    first, second = Sink(), Sink()
    s = by_builder(["host", "env"],
                   lambda host, env: [with_(None, first, description=f"{host}/{env}"), second])
    s(Event(host="a", env="prod"))
    s(Event(host="a", env="dev"))
    assert [e.description for e in first.events] == ["a/prod", "a/dev"]
    assert len(second.events) == 2
    assert len(s) == 2


def test_by_builder_per_key_state_like_by() -> None:
    # by(host, rate(1)) example of spec §3.4, built through the factory.
    out = run(lambda sink: by_builder("host", lambda host: rate(1, sink)),
              [Event(host="a", metric=1, time=0), Event(host="b", metric=2, time=0),
               Event(host="a", metric=3, time=0), Event(time=1)])
    assert sorted((e.host, e.metric, e.time) for e in out if e.host) == [
        ("a", 4.0, 1), ("b", 2.0, 1)]


def test_by_builder_bounds_keys_and_closes_evicted_streams(runtime: Runtime) -> None:
    built: list[Any] = []

    def build(sink: Sink) -> Any:
        built.append(by_builder("host", lambda host: rate(1, sink), max_keys=2))
        return built[0]

    run(build, [Event(host=h, metric=1, time=0) for h in ["a", "b", "c"]], runtime=runtime)
    s = built[0]
    assert sorted(s.keys()) == ["b", "c"]
    assert s.statistics()["evicted"] == 1
    assert len(runtime.clock) == 2  # the evicted key's rate timer was cancelled
    s.close()
    assert len(s) == 0
    assert len(clock()) == 0


def test_by_fn_builds_once_per_distinct_key() -> None:
    # Riemann's by test: by(:metric, child) builds once per distinct metric.
    builds = [0]
    sink = Sink()

    def factory() -> Any:
        builds[0] += 1
        return sreduce(lambda n, e: n + 1, sink, init=0)

    s = by_fn("metric", factory)
    s(Event(metric=1))
    s(Event(metric=2))
    assert builds[0] == 2
    s(Event(metric=1))
    assert builds[0] == 2
    assert sink.events == [1, 1, 2]


@pytest.mark.parametrize(("build", "message"), [
    (lambda: by_builder("host", "not a function"),  # type: ignore[arg-type]
     "factory must be a function"),
    (lambda: by_fn("host", Sink()), "factory must be a function"),
    (lambda: by_builder(3, lambda h: print), "fields must be"),  # type: ignore[arg-type]
    (lambda: by_fn("host", lambda: print, max_keys=0), "max_keys"),
])
def test_by_builder_config_errors(build: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        build()


def test_by_builder_factory_must_return_a_stream() -> None:
    s = by_fn("host", lambda: 42)
    with pytest.raises(TypeError, match="must return a stream"):
        s(Event(host="a"))


def test_by_builder_forks_are_independent_under_a_parent_fork() -> None:
    sink = Sink()
    template = by_fn("host", lambda: sreduce(lambda n, e: n + 1, sink, init=0))
    one, two = template.fork(), template.fork()
    one(Event(host="a"))
    two(Event(host="a"))
    assert sink.events == [1, 1]


@given(st.lists(events(), max_size=30))
def test_by_fn_equals_one_instance_per_key(inputs: list[Event]) -> None:
    sink = Sink()
    s = by_fn(["host", "service"], lambda: sreduce(lambda n, e: n + 1, sink, init=0))
    for e in inputs:
        s(e)
    seen: dict[tuple[Any, Any], int] = {}
    expected = []
    for e in inputs:
        key = (e.host, e.service)
        seen[key] = seen.get(key, 0) + 1
        expected.append(seen[key])
    assert sink.events == expected


def test_by_template_else_child_timer_does_not_tick(clock: VirtualClock) -> None:
    # by closes its templates; a fill_in under where's else_ must stop too.
    out = Sink()
    by("host", where(lambda e: True, out, else_=fill_in(1, {"service": "gap"}, out)))
    clock.advance(3)
    assert out.events == []


def test_by_refuses_a_boolean_max_keys() -> None:
    with pytest.raises(ValueError, match=r"max_keys must be .*got True"):
        by("host", Sink(), max_keys=True)
