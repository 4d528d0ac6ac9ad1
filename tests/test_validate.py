"""Stream arguments: one error type, one message style, numbers as numbers.Real has them."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import streams
from streams import (
    Event,
    StreamArgumentError,
    apdex,
    batch,
    coalesce,
    ewma,
    fixed_time_window,
    moving_time_window,
    predict_linear,
    rollup,
    throttle,
)
from streams.testing import run

# Constructors called with deliberately wrong types, past the type checker.
untyped: Any = streams


@pytest.mark.parametrize(("build", "events", "expected"), [
    (lambda sink: streams.under(Fraction(1, 2), sink),
     [Event(metric=0.25), Event(metric=0.75)], [0.25]),
    (lambda sink: streams.over(Fraction(1, 2), sink),
     [Event(metric=0.25), Event(metric=0.75)], [0.75]),
    (lambda sink: streams.scale(Fraction(1, 4), sink), [Event(metric=2)], [0.5]),
    (lambda sink: streams.ewma_timeless(Fraction(1, 2), sink),
     [Event(metric=1), Event(metric=1)], [0.5, 0.75]),
    (lambda sink: streams.counter(sink, initial=Fraction(3, 2)), [Event(metric=1)], [2.5]),
    (lambda sink: streams.rate(Fraction(2), sink),
     [Event(metric=4, time=0)], [2.0]),
])
def test_fractions_are_numbers(build: Any, events: list[Event], expected: list[float]) -> None:
    out = run(build, events, until=2)
    assert [e.metric for e in out] == expected
    # Metrics stay int or float: a Fraction threshold or factor does not leak into events.
    assert all(type(e.metric) in (int, float) for e in out)


def test_percentile_points_may_be_fractions_and_name_the_output_as_floats() -> None:
    out = run(lambda sink: streams.percentiles(1, [Fraction(1, 2)], sink),
              [Event(service="lat", metric=m, time=0) for m in [1, 2, 3]], until=1)
    assert [(e.service, e.metric) for e in out] == [("lat 0.5", 2)]


@pytest.mark.parametrize(("build", "message"), [
    (lambda: untyped.scale(Decimal("1.5"), print),
     r"scale\(factor, \*children\): factor must be a finite number, got Decimal\('1.5'\) "
     r"\(a Decimal does not mix with float metrics; write float\(...\) or a Fraction\)"),
    (lambda: untyped.under(True, print), r"under\(threshold.*threshold must be .*got True"),
    (lambda: untyped.over(float("nan"), print), r"over\(threshold.*got nan"),
    (lambda: untyped.ewma_timeless(Fraction(3, 2), print),
     r"ewma_timeless\(r, \*children\): r must be the weight of the newest metric, a number "
     r"from 0 to 1, got Fraction\(3, 2\); e.g. ewma_timeless\(0.5, child\)"),
    (lambda: untyped.percentiles(1, [True], print), r"every point of \[True\] must be"),
    (lambda: untyped.rate(float("inf"), print), r"interval must be a positive number.*inf"),
    (lambda: untyped.stable(-1, "state", print), r"dt must be a number of seconds >= 0"),
    (lambda: untyped.top(0, "metric", print), r"top\(k.*k must be a whole number.*>= 1, got 0"),
    (lambda: untyped.runs(2.0, "state", print), r"runs\(n.*n must be a whole number.*got 2.0"),
])
def test_bad_arguments_name_the_call_the_argument_the_value_and_the_fix(
        build: Any, message: str) -> None:
    with pytest.raises(StreamArgumentError, match=message):
        build()


def test_stream_argument_error_reads_as_the_public_name() -> None:
    assert repr(StreamArgumentError("x")) == "StreamArgumentError('x')"
    assert StreamArgumentError.__module__ == "streams"
    assert issubclass(StreamArgumentError, TypeError)
    assert issubclass(StreamArgumentError, ValueError)
    assert streams.ddt(Fraction(1), print).interval == 1


@pytest.mark.parametrize(("build", "fix"), [
    (lambda: streams.where(None, print, servce="cpu"), "did you mean 'service'?"),
    (lambda: streams.where(None, print, hots="web1"), "did you mean 'host'?"),
    (lambda: streams.where(None, print, metrics=1), "did you mean 'metric'?"),
    (lambda: streams.with_(None, print, stat="ok"), "did you mean 'state'?"),
    (lambda: streams.default(None, print, tl=60), "did you mean 'ttl'?"),
    (lambda: streams.where(None, print, tag="web"), "did you mean 'tags'?"),
])
def test_a_misspelled_field_keyword_fails_at_load_naming_the_fields(build: Any, fix: str) -> None:
    # where(None, print, servce="cpu") matched nothing: any unknown name read an attribute.
    with pytest.raises(StreamArgumentError, match="is not a field") as raised:
        build()
    message = str(raised.value)
    assert fix in message
    assert "host, service, state, description, metric, tags, time, ttl" in message
    assert "lambda e: e.get(" in message


def test_attribute_keywords_far_from_any_field_still_read_attributes() -> None:
    out = run(lambda sink: streams.where(None, sink, env="prod", team="db", cost=1, type="x"),
              [Event(env="prod", team="db", cost=1, type="x"),
               Event(env="dev", team="db", cost=1, type="x")])
    assert len(out) == 1
    assert run(lambda sink: streams.with_(None, sink, region="eu"), [Event()])[0].get(
        "region") == "eu"


@pytest.mark.parametrize(("build", "name"), [
    (lambda: throttle(1, 0, print), "dt"),
    (lambda: rollup(1, -1, print), "dt"),
    (lambda: batch(1, 0, print), "dt"),
    (lambda: apdex(0, "true", "true", print), "dt"),
    (lambda: coalesce(0, print), "dt"),
    (lambda: ewma(0, print), "halflife"),
    (lambda: moving_time_window(0, print), "dt"),
    (lambda: fixed_time_window(-2, print), "dt"),
    (lambda: predict_linear(3, 1, print, rebuild_every=0), "rebuild_every"),
])
def test_interval_errors_name_the_argument(build: Any, name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name} must be a positive number of seconds"):
        build()
