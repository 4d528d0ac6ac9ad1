"""The stream contract: child isolation, exception_stream, reprs, fork(), constructor errors."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streams
from streams import (
    REGISTRY,
    Event,
    Stream,
    VirtualClock,
    by,
    changed,
    changed_state,
    exception_stream,
    fill_in,
    moving_event_window,
    rate,
    sdo,
    smap,
    throttle,
    where,
    with_,
)
from streams.testing import Sink, run, tap

# Constructors called with deliberately wrong types, past the type checker.
untyped: Any = streams


def broken(event: Any) -> None:
    raise RuntimeError("boom")


def divide_by_zero(event: Any) -> None:
    event.metric / 0


# Child isolation (spec §3.0.1) ------------------------------------------------

def test_a_failing_child_never_stops_its_siblings(caplog: pytest.LogCaptureFixture) -> None:
    first, last = Sink(), Sink()
    with caplog.at_level(logging.ERROR, logger="rillet.streams"):
        sdo(first, broken, last)(Event(service="x"))
    assert first.events == last.events == [Event(service="x")]
    assert "stream failed" in caplog.text and "boom" in caplog.text


@pytest.mark.parametrize(
    "build",
    [
        lambda a, b: where(lambda e: True, a, broken, b),
        lambda a, b: where(lambda e: False, else_=[a, broken, b]),
        lambda a, b: by("host", a, broken, b),
        lambda a, b: with_({"state": "ok"}, a, broken, b),
        lambda a, b: smap(lambda e: e, a, broken, b),
        lambda a, b: changed("state", a, broken, b),
        lambda a, b: moving_event_window(1, smap(lambda w: w[0], a, broken, b)),
        lambda a, b: exception_stream(Sink(), a, broken, b),
    ],
    ids=["where", "where-else", "by", "with_", "smap", "changed", "window", "exception_stream"],
)
def test_isolation_holds_for_every_stream_with_several_children(build: Any) -> None:
    a, b = Sink(), Sink()
    stream = build(a, b)
    logging.disable(logging.ERROR)
    try:
        stream(Event(host="h", state="ok"))
        stream(Event(host="h", state="bad"))
    finally:
        logging.disable(logging.NOTSET)
    assert a.events and a.events == b.events


def test_a_single_child_failure_travels_up_to_the_nearest_protector() -> None:
    # With one child the call is direct; the sibling protection happens higher up.
    survivor = Sink()
    errors = Sink()
    stream = exception_stream(errors, sdo(where(lambda e: True, smap(lambda e: e, broken)),
                                          survivor))
    stream(Event(service="s"))
    assert survivor.events == [Event(service="s")]
    assert len(errors.events) == 1
    with pytest.raises(RuntimeError):
        where(lambda e: True, smap(lambda e: e, broken))(Event())


@settings(deadline=None, max_examples=50)
@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_every_healthy_child_sees_every_event(failing: list[bool]) -> None:
    sinks = [Sink() for _ in failing]
    children = [broken if bad else sink for bad, sink in zip(failing, sinks, strict=True)]
    errors = Sink()
    stream = exception_stream(errors, *children)
    stream(Event(metric=1))
    stream(Event(metric=2))
    for bad, sink in zip(failing, sinks, strict=True):
        assert sink.events == ([] if bad else [Event(metric=1), Event(metric=2)])
    assert len(errors.events) == 2 * sum(failing)


# exception_stream (spec §3.0.2) --------------------------------------------------

def test_exception_stream_spec_example() -> None:
    # The child records its input, then raises; collect gets one error event.
    seen: list[Any] = []

    def child(event: Any) -> None:
        seen.append(event)
        raise RuntimeError("foo")

    collected = run(lambda sink: exception_stream(sink, child), ["hi"])
    assert seen == ["hi"]
    [error] = collected
    assert error.service == "rillet exception"
    assert error.state == "error"
    assert error.time == 0
    assert error.tags == ("exception", "RuntimeError")
    assert error.description.startswith("RuntimeError: foo\n\n")
    assert "Traceback" in error.description
    assert error.get("event") == "hi"
    assert isinstance(error.get("exception"), RuntimeError)


def test_exception_class_names_outside_builtins_are_qualified() -> None:
    class Custom(Exception):
        pass

    def raise_custom(event: Any) -> None:
        raise Custom("x")

    [error] = run(lambda sink: exception_stream(sink, raise_custom), [Event()])
    assert error.tags[1] == f"{__name__}.{Custom.__qualname__}"


def test_exception_stream_catches_scheduled_callbacks_of_rate() -> None:
    # spec test "scheduled fn": rate's child divides by zero; the error event
    # arrives at the first tick, not when the event is delivered.
    errors = run(lambda sink: exception_stream(sink, rate(1, divide_by_zero)),
                 [Event(metric=1, time=0)], until=0.5)
    assert errors == []
    errors = run(lambda sink: exception_stream(sink, rate(1, divide_by_zero)),
                 [Event(metric=1, time=0)], until=1)
    [error] = errors
    assert error.time == 1
    assert error.tags == ("exception", "ZeroDivisionError")


@pytest.mark.parametrize("children", [1, 2])
@pytest.mark.parametrize(("build", "until"), [
    pytest.param(lambda *c: streams.rate(1, *c), 1, id="rate"),
    pytest.param(lambda *c: streams.ddt_real(1, *c), 2, id="ddt_real"),
    pytest.param(lambda *c: streams.fill_in(1, {"service": "gap"}, *c), 2, id="fill_in"),
    pytest.param(lambda *c: streams.fill_in_last(1, {"state": "gap"}, *c), 2,
                 id="fill_in_last"),
    pytest.param(lambda *c: streams.interpolate_constant(1, *c), 2, id="interpolate_constant"),
    pytest.param(lambda *c: streams.stable(1, "service", *c), 1, id="stable"),
    pytest.param(lambda *c: streams.percentiles(1, [0.5], *c), 1, id="percentiles"),
    pytest.param(lambda *c: streams.fold_interval(1, "metric", sum, *c), 1,
                 id="fold_interval"),
    pytest.param(lambda *c: streams.rollup(1, 1, *c), 1, id="rollup"),
    pytest.param(lambda *c: streams.batch(5, 1, *c), 1, id="batch"),
    pytest.param(lambda *c: streams.apdex(1, "true", "false", *c), 1, id="apdex"),
    pytest.param(lambda *c: streams.coalesce(1, *c), 1, id="coalesce"),
])
def test_a_failure_inside_a_timer_carries_the_event_it_failed_on(
        build: Any, until: float, children: int) -> None:
    # Riemann's exception event carries the event; with one child the call is
    # direct, and the failure reached the timer's wrapper without it.
    errors = run(lambda sink: exception_stream(sink, build(*[broken] * children)),
                 [Event(service="s", metric=1, time=0), Event(service="s", metric=2, time=0.1)],
                 until=until)
    assert errors, "the timer's child should have failed"
    assert all(error.get("event") is not None for error in errors), errors


def test_scheduled_callbacks_keep_the_exception_stream_of_their_scope() -> None:
    outer, inner = Sink(), Sink()

    def build(sink: Sink) -> Stream:
        return exception_stream(outer, sdo(exception_stream(inner, rate(1, broken)),
                                           rate(1, divide_by_zero)))

    run(build, [Event(metric=1, time=0)], until=2)
    assert [e.tags[1] for e in inner.events] == ["RuntimeError", "RuntimeError"]
    assert [e.tags[1] for e in outer.events] == ["ZeroDivisionError", "ZeroDivisionError"]


def test_without_an_exception_stream_scheduled_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="rillet.streams"):
        run(lambda sink: rate(1, broken), [Event(metric=1, time=0)], until=1)
    assert "boom" in caplog.text


def test_a_failing_exception_stream_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="rillet.streams"):
        exception_stream(broken, broken)(Event())
    assert "exception stream itself failed" in caplog.text


# sdo (spec §3.1) -------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3])
def test_sdo_forwards_to_all_children(n: int) -> None:
    sinks = [Sink() for _ in range(n)]
    sdo(*sinks)(1)
    assert [s.events for s in sinks] == [[1]] * n


@pytest.mark.parametrize(("build", "fix"), [
    (lambda: streams.throttle(1, 60), "throttle(1, 60, index)"),
    (lambda: streams.rate(10), "rate(10, index)"),
    (lambda: streams.where('service = "cpu"'), """where('service = "cpu"', index)"""),
    (lambda: streams.where(None, service="cpu"), "where(None, service='cpu', index)"),
    (lambda: streams.sdo(), "sdo(index)"),
    (lambda: streams.by("host", streams.changed_state()), "changed_state(index)"),
    (lambda: streams.exception_stream(print), "exception_stream(print, index)"),
    (lambda: streams.moving_time_window(60), "moving_time_window(60, index)"),
])
def test_a_stream_without_children_fails_at_load_with_the_fix(build: Any, fix: str) -> None:
    # It used to load and silently discard everything.
    with pytest.raises(streams.StreamArgumentError) as raised:
        build()
    message = str(raised.value)
    assert "has no child stream" in message
    assert fix in message and "bit_bucket()" in message


def test_sinks_and_side_effect_streams_build_without_children() -> None:
    seen: list[Any] = []
    for stream in [streams.index, streams.bit_bucket(), streams.append(seen), tap("t"),
                   streams.register(), streams.reinject(), streams.delete_from_index(),
                   streams.smap(seen.append), Sink()]:
        assert callable(stream)
    streams.smap(seen.append)(1)
    assert seen == [1]
    # where with only an else_ branch has an output.
    misses: list[Any] = []
    streams.where(lambda e: False, else_=misses.append)(Event())
    assert len(misses) == 1


# Reprs read like config -------------------------------------------------------------

def named_function(event: Any) -> None:
    return None


def test_reprs_read_like_the_config_line() -> None:
    sink = Sink()
    assert repr(by("host", rate(5, sink))) == "by('host', rate(5, Sink(<0 events>)))"
    assert repr(where(None, sink, service=re.compile("^api"))) == (
        "where(None, Sink(<0 events>), service=re.compile('^api'))"
    )
    assert repr(smap(lambda e: e)) == "smap(<lambda>)"
    assert repr(sdo(named_function)) == f"sdo({__name__}.named_function)"
    assert repr(sdo(print)) == "sdo(print)"
    assert repr(throttle(1, 60, tap("pager"))) == "throttle(1, 60, tap('pager'))"
    assert repr(changed_state(sink, init="ok")) == "changed_state(Sink(<0 events>), init='ok')"
    assert repr(exception_stream(sink, print)) == "exception_stream(Sink(<0 events>), print)"


# fork() --------------------------------------------------------------------------------

def test_fork_gives_fresh_state_and_keeps_shared_sinks() -> None:
    sink = Sink()
    original = changed("state", sink)
    original(Event(state="ok"))
    copy = original.fork()
    assert copy is not original and type(copy) is changed
    assert copy.children[0] is sink
    copy(Event(state="ok"))  # fresh state: "ok" is a change again for the copy
    original(Event(state="ok"))  # but not for the original
    assert sink.events == [Event(state="ok"), Event(state="ok")]


def test_fork_shares_plain_functions_and_taps() -> None:
    seen: list[Any] = []
    t = tap("alerts")
    template = sdo(seen.append, t, changed("state", seen.append))
    copy = template.fork()
    assert copy.children[0] is template.children[0]  # the same bound method
    assert copy.children[1] is t
    assert copy.children[2] is not template.children[2]


def test_fork_keeps_a_diamond_a_diamond() -> None:
    shared_child = changed("state", Sink())
    template = sdo(where(lambda e: True, shared_child), shared_child)
    copy = template.fork()
    left = copy.children[0].children[0]
    assert left is copy.children[1]
    assert left is not shared_child


def test_fork_forks_streams_inside_list_arguments() -> None:
    other = changed("state", Sink())
    template = where(lambda e: False, else_=[other])
    copy = template.fork()
    assert copy._kwargs["else_"][0] is not other
    assert type(copy._kwargs["else_"][0]) is changed


def test_fork_does_not_touch_the_template_state() -> None:
    template = rate(1, Sink())
    template(Event(metric=5))
    template.close()
    copy = template.fork()
    assert copy._sum == 0 and template._sum == 5


# Constructor errors name the argument ---------------------------------------------

@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: untyped.where(5, Sink()), r"where\(condition.*got 5"),
        (lambda: untyped.where(None, Sink()), r"where\(condition.*give a condition"),
        (lambda: untyped.where(lambda e: True, "not a stream"), r"where\(.*'not a stream'"),
        (lambda: untyped.split(lambda e: True, 5), r"split\(.*got 5"),
        (lambda: untyped.over("5", Sink()), r"over\(threshold.*'5'"),
        (lambda: untyped.under(None, Sink()), r"under\(threshold.*None"),
        (lambda: untyped.tagged(5, Sink()), r"tagged\(tags.*5"),
        (lambda: untyped.tagged_all([1], Sink()), r"tagged_all\(tags.*1"),
        (lambda: untyped.tagged_any(5, Sink()), r"tagged_any\(tags.*5"),
        (lambda: untyped.expired(5), r"expired\(.*got 5"),
        (lambda: untyped.smap(5, Sink()), r"smap\(function.*got 5"),
        (lambda: untyped.with_(Sink(), state="ok"), r"with_\(fields.*with_\(None, child"),
        (lambda: untyped.default("ttl", 60), r"default\(fields.*'ttl'"),
        (lambda: untyped.tag(5, Sink()), r"tag\(tags.*5"),
        (lambda: untyped.by([], Sink()), r"by\(.*at least one field"),
        (lambda: untyped.by(5, Sink()), r"by\(fields.*got 5"),
        (lambda: untyped.by("host"), r"by\(fields.*give the streams"),
        (lambda: untyped.by("host", Sink(), max_keys=0), r"max_keys must be .*got 0"),
        (lambda: untyped.by("host", Sink(), idle=-1), r"idle must be .*got -1"),
        (lambda: untyped.changed(5, Sink()), r"changed\(field.*got 5"),
        (lambda: untyped.changed_state(5), r"changed_state\(.*got 5"),
        (lambda: untyped.moving_event_window(-1, Sink()), r"moving_event_window\(n.*-1"),
        (lambda: untyped.fixed_event_window(1.5, Sink()), r"fixed_event_window\(n.*1.5"),
        (lambda: untyped.moving_time_window(0, Sink()), r"moving_time_window\(dt.*got 0"),
        (lambda: untyped.fixed_time_window(0, Sink()), r"fixed_time_window\(dt.*got 0"),
        (lambda: untyped.rate(0, Sink()), r"rate\(interval.*got 0"),
        (lambda: untyped.rate("5", Sink()), r"rate\(interval.*'5'"),
        (lambda: untyped.throttle(-1, 1, Sink()), r"throttle\(n.*-1"),
        (lambda: untyped.throttle(1, 0, Sink()), r"throttle\(n, dt.*got 0"),
        (lambda: untyped.exception_stream(5), r"exception_stream\(handler.*5"),
    ],
)
def test_constructor_errors_name_the_argument_and_show_the_value(build: Any,
                                                                expected: str) -> None:
    # One error type for every bad stream argument; it is both a TypeError and a
    # ValueError, so code catching either keeps working.
    with pytest.raises(streams.StreamArgumentError, match=expected) as raised:
        build()
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, ValueError)


def test_every_registered_stream_is_a_stream_or_registered_function() -> None:
    for name, constructor in REGISTRY.items():
        assert constructor.__name__ == name


# Failures at a bounded cost (issue 10) ------------------------------------------------

def test_a_stream_failing_on_every_event_is_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: a traceback per event (13 MiB in 10 s, ingest 59x slower).
    def always_broken(event: Any) -> None:
        raise ValueError("bad metric")

    with caplog.at_level(logging.ERROR, logger="rillet.streams"):
        stream = sdo(always_broken, Sink())
        for n in range(1000):
            stream(Event(metric=n))
    assert len(caplog.records) == 1
    assert "bad metric" in caplog.text
    errors = Sink()
    stream = exception_stream(errors, always_broken)
    for n in range(1000):
        stream(Event(metric=n))
    assert len(errors.events) == 1000  # the exception stream still sees every failure


def test_exception_stream_close_stops_the_handler_timers(clock: VirtualClock) -> None:
    out = Sink()
    s = exception_stream(fill_in(1, {"service": "gap"}, out), out)
    s.close()
    clock.advance(5)
    assert out.events == []


def test_a_generator_argument_survives_forking() -> None:
    from streams import tag

    out = Sink()
    keyed = by("host", tag((t for t in ["a", "b"]), out))
    keyed(Event(host="x"))
    keyed(Event(host="y"))
    assert [e.tags for e in out.events] == [("a", "b"), ("a", "b")]
