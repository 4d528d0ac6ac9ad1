"""Review findings against the spec (§3, §4): each test failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from streams import (
    Event,
    Runtime,
    VirtualClock,
    apdex,
    batch,
    by,
    coalesce,
    ewma,
    exception_stream,
    fill_in,
    fixed_time_window,
    moving_time_window,
    predict_linear,
    rollup,
    throttle,
    top,
    where,
)
from streams.testing import Sink


@pytest.fixture
def clock() -> Any:
    with Runtime(VirtualClock()) as runtime:
        yield runtime.clock


def test_where_close_stops_timers_of_else_children(clock: VirtualClock) -> None:
    out = Sink()
    s = where(lambda e: True, out, else_=fill_in(1, {"service": "gap"}, out))
    s.close()
    clock.advance(5)
    assert out.events == []


def test_by_template_else_child_timer_does_not_tick(clock: VirtualClock) -> None:
    # by closes its templates; a fill_in under where's else_ must stop too.
    out = Sink()
    by("host", where(lambda e: True, out, else_=fill_in(1, {"service": "gap"}, out)))
    clock.advance(3)
    assert out.events == []


def test_exception_stream_close_stops_the_handler_timers(clock: VirtualClock) -> None:
    out = Sink()
    s = exception_stream(fill_in(1, {"service": "gap"}, out), out)
    s.close()
    clock.advance(5)
    assert out.events == []


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


def test_top_event_without_value_leaves_the_set_and_is_routed_as_not_in_it() -> None:
    # Spec §3.10: a nil f(e) removes the key, then dual routing with "not in top":
    # top gets expire(e), bottom gets e (only incoming expired events go to both).
    tops, bottoms = Sink(), Sink()
    s = top(2, "metric", tops, bottoms)
    s(Event(host="a", metric=1, time=0))
    s(Event(host="a", time=0))
    assert [(e.host, e.metric, e.state) for e in tops.events] == [
        ("a", 1, None), ("a", None, "expired")]
    assert [(e.host, e.state) for e in bottoms.events] == [("a", "expired"), ("a", None)]
    assert s.members() == []


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


def test_by_refuses_a_boolean_max_keys() -> None:
    with pytest.raises(ValueError, match="max_keys=True"):
        by("host", Sink(), max_keys=True)


def test_a_dict_pattern_against_a_missing_value_reads_every_field_as_none() -> None:
    from streams import matches

    assert matches({"host": None}, None)
    assert not matches({"host": "a"}, None)


def test_sreduce_forks_do_not_share_a_mutable_initial_value() -> None:
    from streams import sreduce

    def collect(acc: list[int], event: Event) -> list[int]:
        acc.append(event.metric)  # changes the accumulator in place
        return acc

    out = Sink()
    keyed = by("host", sreduce(collect, out, init=[]))
    keyed(Event(host="a", metric=1))
    keyed(Event(host="b", metric=2))
    assert out.events == [[1], [2]]


def test_a_generator_argument_survives_forking() -> None:
    from streams import tag

    out = Sink()
    keyed = by("host", tag((t for t in ["a", "b"]), out))
    keyed(Event(host="x"))
    keyed(Event(host="y"))
    assert [e.tags for e in out.events] == [("a", "b"), ("a", "b")]
