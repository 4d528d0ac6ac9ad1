"""Routing: match, splitp, dual (spec §3.2)."""

from __future__ import annotations

import logging
import operator
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import (
    Event,
    dual,
    exception_stream,
    match,
    split,
    splitp,
    with_,
)
from streams._routing import expire_event
from streams.testing import Sink, events, run


def passed(stream_factory: Any, inputs: list[Event]) -> list[Event]:
    sink = Sink()
    stream = stream_factory(sink)
    for e in inputs:
        stream(e)
    return sink.events


# match -----------------------------------------------------------------------

@pytest.mark.parametrize(("field", "pattern", "inputs", "expected"), [
    ("service", "foo",
     [Event(service="foo"), Event(service="bar")], [Event(service="foo")]),
    ("metric", {0, 2},
     [Event(metric=1), Event(metric=2), Event(metric=0)], [Event(metric=2), Event(metric=0)]),
    ("state", re.compile("^mi"),
     [Event(state="migration"), Event(state="other"), Event()], [Event(state="migration")]),
    (lambda e: e, {"state": re.compile("^mi"), "host": "other"},
     [Event(state="migration", host="other"), Event(state="migration", host="a"),
      Event(state="x", host="other")],
     [Event(state="migration", host="other")]),
    ("host", None,
     [Event(), Event(host=None), Event(host="foo")], [Event(), Event(host=None)]),
    ("metric", lambda m: m is not None and m > 2,
     [Event(metric=3), Event(metric=1), Event()], [Event(metric=3)]),
    ("env", "prod", [Event(env="prod"), Event(env="dev"), Event()], [Event(env="prod")]),
])
def test_match_spec_examples(field: Any, pattern: Any, inputs: list[Event],
                             expected: list[Event]) -> None:
    assert passed(lambda sink: match(field, pattern, sink), inputs) == expected


def test_match_numbers_follow_python_equality() -> None:
    # Riemann: match(5, 5.0) is false (Clojure categories); rillet: 5 == 5.0.
    assert passed(lambda sink: match("metric", 5, sink), [Event(metric=5.0)]) == [
        Event(metric=5.0)]


def test_match_rejects_a_bad_field() -> None:
    with pytest.raises(TypeError, match="field name or a function"):
        match(3, "x")  # type: ignore[arg-type]


@given(st.lists(events(), max_size=20))
def test_match_is_filter(inputs: list[Event]) -> None:
    pattern = {"ok", "warning"}
    out = passed(lambda sink: match("state", pattern, sink), inputs)
    assert out == [e for e in inputs if e.state in pattern]


# splitp ----------------------------------------------------------------------

def test_splitp_spec_example_first_clause_wins() -> None:
    crit, warn, ok = Sink(), Sink(), Sink()
    s = splitp(operator.lt, "metric", 0.9, crit, 0.5, warn, ok)
    for m in [0.95, 0.7, 0.5, 0.1, 1.0]:
        s(Event(metric=m))
    assert [e.metric for e in crit.events] == [0.95, 1.0]
    assert [e.metric for e in warn.events] == [0.7]
    assert [e.metric for e in ok.events] == [0.5, 0.1]


def test_splitp_no_match_and_no_default_raises_value_error() -> None:
    s = splitp(operator.eq, "state", "ok", Sink(), "warning", Sink())
    with pytest.raises(ValueError, match="no default"):
        s(Event(state="critical"))


def test_splitp_none_value_with_arithmetic_pred_raises() -> None:
    s = splitp(operator.lt, "metric", 0.9, Sink(), Sink())
    with pytest.raises(TypeError):
        s(Event())


def test_splitp_calls_the_branch_directly_so_failures_propagate() -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("boom")

    s = splitp(operator.eq, lambda e: e.service, "x", broken, Sink())
    with pytest.raises(RuntimeError, match="boom"):
        s(Event(service="x"))


@pytest.mark.parametrize(("args", "error", "message"), [
    ((3, "metric", 1, print), TypeError, "pred must be a function"),
    ((operator.lt, "metric"), TypeError, "at least one test"),
    ((operator.lt, "metric", 1, "not a stream", print), TypeError, "must be a stream"),
    ((operator.lt, 3.5, 1, print), TypeError, "field must be"),
])
def test_splitp_config_errors(args: tuple[Any, ...], error: type[Exception],
                              message: str) -> None:
    with pytest.raises(error, match=message):
        splitp(*args)


@given(st.lists(events(metrics=st.integers(-10, 10)), max_size=20))
def test_splitp_equals_split_with_the_same_tests(inputs: list[Event]) -> None:
    by_splitp = [Sink(), Sink(), Sink()]
    by_split = [Sink(), Sink(), Sink()]
    a = splitp(operator.le, "metric", 5, by_splitp[0], 0, by_splitp[1], by_splitp[2])
    b = split(lambda e: e.metric >= 5, by_split[0], lambda e: e.metric >= 0, by_split[1],
              by_split[2])
    for e in inputs:
        a(e)
        b(e)
    assert [s.events for s in by_splitp] == [s.events for s in by_split]


# dual ------------------------------------------------------------------------

def test_dual_spec_semantics() -> None:
    # At now=10: a live event goes as itself to one side and as expire(e) to the other;
    # an expired event goes to both unchanged.
    live_high = Event(host="h", service="s", metric=9, time=10, ttl=5, description="d")
    live_low = Event(host="h", service="s", metric=1, time=10)
    stale = Event(host="h", service="s", metric=9, time=1, ttl=5)
    tombstone = Event(host="h", service="s", state="expired", time=10)
    order: list[tuple[str, Event]] = []
    out = run(
        lambda sink: dual(lambda e: (e.metric or 0) > 5,
                          lambda e: order.append(("true", e)),
                          lambda e: order.append(("false", e))),
        [live_high, live_low, stale, tombstone],
    )
    assert out == []
    expired_marker = Event(host="h", service="s", state="expired", time=10)
    assert order == [
        ("false", expired_marker), ("true", live_high),
        ("true", expired_marker), ("false", live_low),
        ("true", stale), ("false", stale),
        ("true", tombstone), ("false", tombstone),
    ]


def test_dual_accepts_a_query_string_and_field_patterns() -> None:
    up, down = Sink(), Sink()
    s = dual(None, up, down, service="api")
    s(Event(service="api", time=0))
    s(Event(service="db", time=0))
    assert [(e.service, e.state) for e in up.events] == [("api", None), ("db", "expired")]
    assert [(e.service, e.state) for e in down.events] == [("api", "expired"), ("db", None)]


def test_dual_isolates_its_two_streams(caplog: pytest.LogCaptureFixture) -> None:
    errors, down = Sink(), Sink()

    def broken(event: Any) -> None:
        raise RuntimeError("boom")

    s = exception_stream(errors, dual(lambda e: True, broken, down))
    with caplog.at_level(logging.ERROR):
        s(Event(service="x", time=0))
    assert [e.state for e in down.events] == ["expired"]
    assert [e.service for e in errors.events] == ["rillet exception"]


def test_expire_event_keeps_only_host_and_service() -> None:
    out = run(lambda sink: with_(None, lambda e: sink(expire_event(e))),
              [Event(host="a", metric=1, tags=("x",), ttl=3, time=7, env="prod")])
    assert out == [Event(host="a", state="expired", time=7)]


@given(st.lists(events(), max_size=25))
def test_dual_sends_each_event_live_to_exactly_one_stream(inputs: list[Event]) -> None:
    trues, falses = Sink(), Sink()
    out = run(lambda sink: dual(lambda e: e.metric is not None and e.metric > 0, trues, falses),
              inputs)
    assert out == []
    assert len(trues.events) == len(falses.events) == len(inputs)
    now = 0.0
    for e, t, f in zip(inputs, trues.events, falses.events, strict=True):
        assert e.time is not None
        now = max(now, e.time)  # run() moves the clock forward to each event's time
        tombstone = Event(host=e.host, service=e.service, state="expired", time=now)
        if e.state == "expired" or now - e.time > (e.ttl or 60):
            assert t == f == e
        elif e.metric is not None and e.metric > 0:
            assert (t, f) == (e, tombstone)
        else:
            assert (t, f) == (tombstone, e)


def test_split_and_splitp_defaults_and_branches_still_route_after_entry_point_binding() -> None:
    import operator

    from streams import split, splitp

    big, small, other = Sink(), Sink(), Sink()
    s = split(lambda e: e.metric > 10, big, lambda e: e.metric > 1, small, other)
    for m in [50, 5, 0]:
        s(Event(metric=m))
    assert [len(big.events), len(small.events), len(other.events)] == [1, 1, 1]
    crit, ok = Sink(), Sink()
    p = splitp(operator.lt, "metric", 0.9, crit, ok)
    p(Event(metric=0.95))
    p(Event(metric=0.5))
    assert [e.metric for e in crit.events] == [0.95] and [e.metric for e in ok.events] == [0.5]
