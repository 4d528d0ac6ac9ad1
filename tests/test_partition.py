"""Partitioning and change detection (spec §3.4, §3.5): by, changed, changed_state."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Event, Runtime, Stream, by, changed, changed_state, rate
from streams.testing import Sink, clock, run, timed_events

relaxed = settings(deadline=None, max_examples=60)


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


# changed ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("options", "states", "expected"),
    [
        ({}, ["ok", "bad", "bad", "ok", "ok", "ok", "evil", "bad"],
         ["ok", "bad", "ok", "evil", "bad"]),
        ({"init": "ok"}, ["ok", "bad", "bad", "ok", "ok", "evil", "bad"],
         ["bad", "ok", "evil", "bad"]),
        ({}, [None, "ok", None], ["ok", None]),  # a first None is no change from init None
    ],
)
def test_changed_table(options: dict[str, Any], states: list[str | None],
                       expected: list[str | None]) -> None:
    out = run(lambda sink: changed("state", sink, **options), [Event(state=s) for s in states])
    assert [e.state for e in out] == expected


def test_changed_pairs_gives_the_immediately_preceding_event() -> None:
    states = ["ok", "bad", "bad", "ok", "ok", "ok", "evil", "bad"]
    inputs = [Event(state=s, metric=i) for i, s in enumerate(states)]
    out = run(lambda sink: changed("state", sink, pairs=True), inputs)
    assert [(p and p.metric, e.metric) for p, e in out] == [
        (None, 0), (0, 1), (2, 3), (5, 6), (6, 7)
    ]


def test_changed_on_a_function_and_python_equality() -> None:
    inputs = [Event(metric=m) for m in [1, 1.0, 2, 2.5]]
    out = run(lambda sink: changed(lambda e: e.metric, sink), inputs)
    assert [e.metric for e in out] == [1, 2, 2.5]  # 1 == 1.0 in Python (not in Clojure)
    out = run(lambda sink: changed(lambda e: e.metric > 1.5, sink), inputs)
    assert [e.metric for e in out] == [1, 2]


@relaxed
@given(st.lists(st.sampled_from(["ok", "warning", None])), st.sampled_from(["ok", None]))
def test_changed_equals_the_model(states: list[str | None], init: str | None) -> None:
    out = run(lambda sink: changed("state", sink, init=init), [Event(state=s) for s in states])
    expected: list[str | None] = []
    previous = init
    for s in states:
        if s != previous:
            expected.append(s)
        previous = s
    assert [e.state for e in out] == expected


# changed_state ---------------------------------------------------------------------

def test_changed_state_per_host_and_service() -> None:
    inputs = [Event(host=h, service=s, state=st) for h, s, st in [
        ("a", "x", "ok"), ("b", "x", "ok"), ("a", "y", "ok"), ("a", "x", "ok"),
        ("a", "x", "critical"), ("b", "x", "ok"), ("a", "x", "ok"),
    ]]
    out = run(lambda sink: changed_state(sink), inputs)
    assert [(e.host, e.service, e.state) for e in out] == [
        ("a", "x", "ok"), ("b", "x", "ok"), ("a", "y", "ok"), ("a", "x", "critical"),
        ("a", "x", "ok"),
    ]


def test_changed_state_with_init_and_bounded_keys() -> None:
    s = changed_state(sink := Sink(), init="ok", max_keys=1)
    s(Event(host="a", state="ok"))
    s(Event(host="b", state="critical"))
    assert [e.host for e in sink.events] == ["b"]
    assert len(s) == 1


@relaxed
@given(timed_events(states=["ok", "warning", "critical"]))
def test_changed_state_never_emits_the_same_state_twice_in_a_row_per_key(
    inputs: list[Event],
) -> None:
    out = run(lambda sink: changed_state(sink), inputs)
    last: dict[Any, Any] = {}
    for e in out:
        key = (e.host, e.service)
        assert last.get(key) != e.state
        last[key] = e.state
    # and every change of a key's state is reported
    expected: dict[Any, list[str | None]] = defaultdict(list)
    previous: dict[Any, Any] = {}
    for e in inputs:
        key = (e.host, e.service)
        if previous.get(key) != e.state:
            expected[key].append(e.state)
        previous[key] = e.state
    reported: dict[Any, list[str | None]] = defaultdict(list)
    for e in out:
        reported[(e.host, e.service)].append(e.state)
    assert reported == expected
