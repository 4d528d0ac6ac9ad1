"""The compiled hops (streams/_speedups.c) against the pure-Python streams they stand for.

Every test builds the same streams twice, once with the extension and once
without, feeds both the same events and requires the same outputs, the same
failures reported with the same events, the same exception raised to the
caller, and for the expiry sweep the same tombstones and the same index left.
"""

from __future__ import annotations

import os
import pickle
from fractions import Fraction
from typing import Any

import pytest
from conftest import require_extension
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import Event, Index, Runtime, _compiled, by, where
from streams._config import Config
from streams._core import entry_point
from streams._event import LazyEvent

compiled = _compiled.speedups


@pytest.fixture(scope="module", autouse=True)
def extension_built() -> None:
    require_extension(compiled, "streams/_speedups.c")


class Truthless:
    """A predicate's verdict whose truth cannot be told."""

    def __bool__(self) -> bool:
        raise RuntimeError("no truth")


def predicate(kind: str, limit: int) -> Any:
    if kind == "above":
        return lambda e: e.metric > limit
    if kind == "odd":  # a verdict that is not a bool
        return lambda e: e.metric % 2
    if kind == "raises":
        return lambda e: 1 // (e.metric - limit) > 0
    return lambda e: Truthless() if e.metric == limit else e.metric < limit


def key(kind: str) -> Any:
    if kind in ("host", "metric"):
        return kind
    if kind == "pair":
        return ["host", "metric"]
    # Unhashable for metric 7: TypeError out of the table lookup.
    return lambda e: [e.host] if e.metric == 7 else e.host


# A plan is a nested tuple: ("sink", name), ("fails", name), ("where", kind, limit,
# children, else_children), ("by", kind, children).
sinks = st.one_of(st.tuples(st.just("sink"), st.sampled_from("abc")),
                  st.tuples(st.just("fails"), st.sampled_from("xy")))


def streams_plan(inner: Any) -> Any:
    return st.one_of(
        st.tuples(st.just("where"), st.sampled_from(["above", "odd", "raises", "truthless"]),
                  st.integers(0, 9), st.lists(inner, min_size=1, max_size=3),
                  st.lists(inner, max_size=2)),
        st.tuples(st.just("by"), st.sampled_from(["host", "metric", "pair", "unhashable"]),
                  st.lists(inner, min_size=1, max_size=3)))


plans = st.recursive(sinks, streams_plan, max_leaves=8)
events = st.lists(st.builds(Event, host=st.sampled_from(["a", "b", "c"]),
                            metric=st.integers(0, 9)), max_size=25)


def build(plan: Any, out: list[Any]) -> Any:
    kind = plan[0]
    if kind == "sink":
        return lambda e, name=plan[1]: out.append((name, e.host, e.metric))

    if kind == "fails":
        def fails(e: Any, name: str = plan[1]) -> None:
            out.append((name, e.host, e.metric))
            if e.metric % 3 == 0:
                raise ValueError(f"{name} refuses {e.metric}")
        return fails
    if kind == "where":
        _, test, limit, kids, otherwise = plan
        return where(predicate(test, limit), *(build(k, out) for k in kids),
                     else_=[build(k, out) for k in otherwise])
    _, field, kids = plan
    return by(key(field), *(build(k, out) for k in kids))


def outcome(top: list[Any], inputs: list[Event], speedups: Any,
            monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Build the plans with or without the extension, stream ``inputs``: what happened."""
    monkeypatch.setattr(_compiled, "speedups", speedups)
    out: list[Any] = []
    reported: list[Any] = []
    with Runtime(exception_stream=reported.append):
        dispatch = Config(streams=[build(plan, out) for plan in top]).dispatcher()
        for event in inputs:
            try:
                dispatch(event)
            except Exception as error:  # what the caller gets (a TCP client's error reply)
                out.append(("raised", type(error).__name__, str(error), event.metric))
    # The exception stream gets an event naming the failure and the event it failed on,
    # with the traceback: rillet's own frames differ (the compiled hops have none),
    # the message and the innermost frame of the config's code do not.
    out += [("reported", e.description.splitlines()[0], _innermost_own_frame(e.description),
             e.get("event")) for e in reported]
    monkeypatch.undo()
    return out


def _innermost_own_frame(traceback: str) -> str | None:
    frames = [line for line in traceback.splitlines()
              if line.lstrip().startswith("File ") and f"{os.sep}streams{os.sep}" not in line]
    return frames[-1] if frames else None


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=st.lists(plans, min_size=1, max_size=3), inputs=events)
def test_compiled_streams_behave_as_the_python_ones(
        top: list[Any], inputs: list[Event], monkeypatch: pytest.MonkeyPatch) -> None:
    assert outcome(top, inputs, compiled, monkeypatch) == \
        outcome(top, inputs, None, monkeypatch)


def test_the_entry_points_are_compiled_unless_the_call_is_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = where(lambda e: True, print)
    b = by("host", print)
    assert type(entry_point(w)) is compiled.Where
    assert type(entry_point(b)) is compiled.By
    assert type(Config(streams=[w, b]).dispatcher()) is compiled.Dispatch
    # Replaced on the class (the per-stream counters do): the replacement is called.
    calls: list[Any] = []

    def counted(self: Any, event: Any) -> None:
        calls.append(event)

    monkeypatch.setattr(where, "__call__", counted)
    entry_point(where(lambda e: True, print))(Event())
    assert calls == [Event()]


def test_a_base_exception_stops_the_broadcast_at_once() -> None:
    seen: list[str] = []

    def interrupt(event: Any) -> None:
        seen.append("interrupt")
        raise KeyboardInterrupt

    with Runtime():
        dispatch = Config(streams=[where(lambda e: True, interrupt, seen.append),
                                   seen.append]).dispatcher()
        with pytest.raises(KeyboardInterrupt):
            dispatch(Event(host="a"))
    assert seen == ["interrupt"]


def test_a_failure_is_reported_with_the_line_that_raised() -> None:
    reported: list[Event] = []

    def broken(event: Any) -> None:
        raise ZeroDivisionError("broken")

    with Runtime(exception_stream=reported.append):
        Config(streams=[where(lambda e: True, broken, print), print]).dispatcher()(Event())
    [failure] = reported
    assert "ZeroDivisionError" in failure.description
    assert "in broken" in failure.description  # the traceback reaches the failing child


def test_compiled_entries_pickle_as_their_constructor_call() -> None:
    w = entry_point(where(lambda e: True, print))
    for entry in (compiled.Where(len, print, None), compiled.By(by("host", print), len),
                  compiled.Broadcast((print, len), print), compiled.Dispatch((len,), print)):
        again = pickle.loads(pickle.dumps(entry))
        assert type(again) is type(entry)
        assert again.__reduce__()[1][1:] == entry.__reduce__()[1][1:]
    assert type(w) is compiled.Where


# The expiry sweep ------------------------------------------------------------


class Lazy(LazyEvent):
    """A lazily read event (like a decoded wire event): judged in Python."""

    __slots__ = ("_fields",)

    def __init__(self, **fields: Any) -> None:
        object.__setattr__(self, "_fields", fields)

    def _load(self, name: str) -> Any:
        return self._fields.get(name, () if name == "tags" else None)


times = st.one_of(st.floats(-1e3, 1e3), st.integers(-1000, 1000),
                  st.integers(2**53, 2**60), st.fractions(-1000, 1000, max_denominator=7))
ttls = st.one_of(st.none(), st.floats(0, 500), st.integers(0, 500), st.just(Fraction(1, 3)),
                 st.integers(2**60, 2**61))
stored = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 3),
                            times, ttls, st.booleans()), max_size=30)


def swept(entries: list[Any], now: float, n: int, speedups: Any,
          monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any]]:
    monkeypatch.setattr(_compiled, "speedups", speedups)
    index = Index()
    for host, service, time, ttl, lazy in entries:
        kind = Lazy if lazy else Event
        index(kind(host=host, service=str(service), time=time, ttl=ttl))
    parts = [[(e.host, e.service) for e in part] for part in index.expire_slices(now, n)]
    monkeypatch.undo()
    return parts, sorted((e.host, e.service) for e in index)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=stored, now=st.one_of(st.floats(-2e3, 2e3), st.integers(-2000, 2000)),
       n=st.integers(1, 8))
def test_the_compiled_sweep_expires_what_the_python_one_does(
        entries: list[Any], now: float, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert swept(entries, now, n, compiled, monkeypatch) == \
        swept(entries, now, n, None, monkeypatch)


def test_the_compiled_sweep_skips_only_fresh_plain_events() -> None:
    events = {("a", "x"): Event(host="a", service="x", time=0.0, ttl=10.0),
              ("b", "x"): Event(host="b", service="x", time=0.0),
              ("c", "x"): Event(host="c", service="x", time=95.0, ttl=10),
              ("d", "x"): Lazy(host="d", service="x", time=99.0, ttl=10.0),
              ("e", "x"): Event(host="e", service="x", time=Fraction(99), ttl=10.0)}
    keys = [*events, ("gone", "x")]
    # a: 100 s old, ttl 10; b: the default ttl 60; c is fresh; d and e go to Python.
    assert compiled.stale(events, keys, 100.0) == [("a", "x"), ("b", "x"), ("d", "x"),
                                                   ("e", "x")]
