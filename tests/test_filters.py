"""Filters and routing (spec §3.2, §3.0.3): where, split, tagged*, expired, over, under."""

from __future__ import annotations

import re
from typing import Any

import pytest
from _helpers import relaxed, through
from hypothesis import given
from hypothesis import strategies as st

from streams import (
    Event,
    VirtualClock,
    expired,
    fill_in,
    matches,
    not_expired,
    over,
    split,
    tagged,
    tagged_all,
    tagged_any,
    under,
    where,
)
from streams.testing import Sink, events, run

# where ---------------------------------------------------------------------------

WHERE_TABLE = [
    # (condition, field patterns, inputs, expected passing)
    (lambda e: e.metric > 3, {}, [Event(metric=m) for m in [1, 5, 3, 9]], [5, 9]),
    (None, {"service": "foo"}, [Event(service=s) for s in ["foo", "bar"]], ["foo"]),
    (None, {"metric": {0, 2}}, [Event(metric=m) for m in [0, 1, 2]], [0, 2]),
    (None, {"state": re.compile("^mi")}, [Event(state=s) for s in ["minor", "admin", None]],
     ["minor"]),
    (None, {"host": None}, [Event(), Event(host="foo")], [None]),
    (None, {"metric": lambda m: m is not None and m % 2 == 0},
     [Event(metric=m) for m in [1, 2, None, 4]], [2, 4]),
    # Riemann's (service "a" "b") is an OR: a set of values here.
    (None, {"service": {"a", "b"}}, [Event(service=s) for s in "abc"], ["a", "b"]),
    # several conditions all have to hold
    (lambda e: e.metric > 1, {"host": "h"},
     [Event(host="h", metric=2), Event(host="x", metric=2), Event(host="h", metric=0)], [2]),
    # attributes are fields too
    (None, {"region": "eu"}, [Event(region="eu", metric=1), Event(metric=2)], [1]),
]


@pytest.mark.parametrize(("condition", "fields", "inputs", "expected"), WHERE_TABLE)
def test_where_table(condition: Any, fields: dict[str, Any], inputs: list[Event],
                     expected: list[Any]) -> None:
    out = through(lambda sink: where(condition, sink, **fields), inputs)
    shown = "metric" if condition is not None or "region" in fields else next(iter(fields))
    assert [e.get(shown) for e in out] == expected


def test_where_with_a_query_string() -> None:
    inputs = [Event(service="api req", metric=m) for m in [1, 5]] + [Event(service="db", metric=9)]
    out = through(lambda sink: where('service =~ "api%" and metric > 3', sink), inputs)
    assert out == [Event(service="api req", metric=5)]


def test_where_query_string_and_field_patterns_combine() -> None:
    inputs = [Event(host=h, metric=5) for h in "ab"]
    out = through(lambda sink: where("metric > 3", sink, host="a"), inputs)
    assert out == [Event(host="a", metric=5)]


def test_where_sends_the_rest_to_else() -> None:
    hits, misses, also = Sink(), Sink(), Sink()
    s = where(lambda e: e.metric > 1, hits, else_=[misses, also])
    for m in [1, 2, 0]:
        s(Event(metric=m))
    assert [e.metric for e in hits.events] == [2]
    assert [e.metric for e in misses.events] == [e.metric for e in also.events] == [1, 0]
    single = Sink()
    where(lambda e: False, else_=single)(Event(metric=7))
    assert single.events == [Event(metric=7)]


def test_where_uses_python_truthiness_and_numbers() -> None:
    # Riemann: 0 and "" are truthy and 5 != 5.0; rillet follows Python.
    assert through(lambda sink: where(lambda e: e.metric, sink), [Event(metric=0)]) == []
    assert through(lambda sink: where(None, sink, metric=5), [Event(metric=5.0)]) == [
        Event(metric=5.0)
    ]


def test_where_lets_predicate_errors_propagate() -> None:
    with pytest.raises(TypeError):
        where(lambda e: e.metric > 1, Sink())(Event())


def test_the_matching_rule() -> None:
    # spec §3.2.1
    assert matches(re.compile("^mi"), "minor") and not matches(re.compile("^mi"), 5)
    assert matches({"state": re.compile("^mi"), "host": "other"},
                   Event(state="minor", host="other"))
    assert not matches({"state": re.compile("^mi"), "host": "other"}, Event(state="minor"))
    assert matches(None, None) and not matches(None, 0)
    assert matches({1, 2}, 2) and not matches({1, 2}, [1])  # unhashable: in no set
    assert matches(5, 5.0)


_SCALARS = [None, True, False, 0, 1, -1, 0.0, 1.0, 2.5, "1", "ok", ""]
_QUERY_LITERALS = {None: "nil", True: "true", False: "false", "1": '"1"', "ok": '"ok"', "": '""'}


def _query_literal(value: Any) -> str:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return _QUERY_LITERALS[value]
    return repr(value)


@given(st.sampled_from(_SCALARS), st.sampled_from(_SCALARS),
       st.sampled_from(["metric", "state", "env"]))
def test_field_patterns_and_the_query_language_share_one_equality(
        pattern: Any, value: Any, field: str) -> None:
    # where(None, child, metric=1) matched metric=True while the query
    # "metric = 1" did not: booleans are never numbers, in both.
    event = Event(**{field: value})
    by_keyword = through(lambda sink: where(None, sink, **{field: pattern}), [event])
    by_query = through(lambda sink: where(f"{field} = {_query_literal(pattern)}", sink), [event])
    assert by_keyword == by_query
    assert matches({pattern}, value) == bool(by_query)


def test_a_number_pattern_never_matches_a_bool() -> None:
    flags = [Event(metric=True), Event(metric=1), Event(metric=1.0), Event(metric=False)]
    assert through(lambda sink: where(None, sink, metric=1), flags) == flags[1:3]
    assert through(lambda sink: where(None, sink, metric={0, 1}), flags) == flags[1:3]
    assert through(lambda sink: where(None, sink, metric=True), flags) == flags[:1]
    assert through(lambda sink: where(None, sink, metric={True}), flags) == flags[:1]


@relaxed
@given(st.lists(events()), st.integers(-1000, 1000))
def test_where_equals_filter(inputs: list[Event], threshold: int) -> None:
    def p(e: Event) -> bool:
        return e.metric is not None and e.metric > threshold

    hits, misses = Sink(), Sink()
    s = where(p, hits, else_=misses)
    for e in inputs:
        s(e)
    assert hits.events == list(filter(p, inputs))
    assert misses.events == [e for e in inputs if not p(e)]


@relaxed
@given(st.lists(events()), st.sampled_from(["a", "b", "c"]), st.sampled_from(["ok", "critical"]))
def test_where_field_patterns_equal_filter(inputs: list[Event], host: str, state: str) -> None:
    out = through(lambda sink: where(None, sink, host=host, state=state), inputs)
    assert out == [e for e in inputs if e.host == host and e.state == state]


@relaxed
@given(st.lists(events()), st.integers(-1000, 1000))
def test_where_query_equals_filter(inputs: list[Event], threshold: int) -> None:
    out = through(lambda sink: where(f"metric > {threshold}", sink), inputs)
    assert out == [e for e in inputs if e.metric is not None and e.metric > threshold]


# split ---------------------------------------------------------------------------

def test_split_first_match_wins_with_a_default() -> None:
    big, small, other = Sink(), Sink(), Sink()
    s = split(lambda e: e.metric > 10, big, "metric > 1", small, other)
    for m in [50, 5, 0, 11]:
        s(Event(metric=m))
    assert [e.metric for e in big.events] == [50, 11]
    assert [e.metric for e in small.events] == [5]
    assert [e.metric for e in other.events] == [0]


def test_split_without_default_drops_unmatched_and_tests_each_predicate_once() -> None:
    calls: list[str] = []

    def first(e: Event) -> bool:
        calls.append("first")
        return False

    def second(e: Event) -> bool:
        calls.append("second")
        return e.metric == 1

    hit = Sink()
    s = split(first, Sink(), second, hit)
    s(Event(metric=1))
    s(Event(metric=2))
    assert [e.metric for e in hit.events] == [1]
    assert calls == ["first", "second", "first", "second"]


def test_split_with_only_a_default_sends_everything_there() -> None:
    assert through(lambda sink: split(sink), [1, 2]) == [1, 2]


@relaxed
@given(st.lists(events()))
def test_split_partitions_the_input(inputs: list[Event]) -> None:
    big, small, rest = Sink(), Sink(), Sink()
    s = split(lambda e: (e.metric or 0) > 100, big, lambda e: (e.metric or 0) > 0, small, rest)
    for e in inputs:
        s(e)
    assert big.events == [e for e in inputs if (e.metric or 0) > 100]
    assert small.events == [e for e in inputs if 0 < (e.metric or 0) <= 100]
    assert rest.events == [e for e in inputs if (e.metric or 0) <= 0]


# tagged ----------------------------------------------------------------------------

TAGGED_TABLE = [
    (tagged_all, ["web", "prod"], [("prod", "web", "eu"), ("web",), ()], [0]),
    (tagged, "web", [("web",), ("db",), ("db", "web")], [0, 2]),
    (tagged_any, ["a", "b"], [("b",), ("c",), ("a", "b")], [0, 2]),
    (tagged_all, [], [("x",), ()], [0, 1]),  # no tags required: everything passes
    (tagged_any, [], [("x",), ()], []),
]


@pytest.mark.parametrize(("stream", "wanted", "tag_sets", "expected"), TAGGED_TABLE)
def test_tagged_table(stream: Any, wanted: Any, tag_sets: list[tuple[str, ...]],
                      expected: list[int]) -> None:
    inputs = [Event(tags=tags, metric=i) for i, tags in enumerate(tag_sets)]
    assert [e.metric for e in through(lambda sink: stream(wanted, sink), inputs)] == expected


@relaxed
@given(st.lists(events()), st.lists(st.sampled_from(["web", "db", "prod"]), max_size=3))
def test_tagged_equals_set_tests(inputs: list[Event], wanted: list[str]) -> None:
    assert through(lambda sink: tagged_all(wanted, sink), inputs) == [
        e for e in inputs if set(wanted) <= set(e.tags)
    ]
    assert through(lambda sink: tagged_any(wanted, sink), inputs) == [
        e for e in inputs if set(wanted) & set(e.tags)
    ]


# expired / not_expired -------------------------------------------------------------

@pytest.mark.parametrize(
    ("now", "event", "is_expired"),
    [
        (10, Event(time=1, ttl=5), True),
        (10, Event(time=6, ttl=2), True),
        (10, Event(time=10, ttl=2), False),
        (100, Event(time=39), True),  # 61 > 60, the default ttl
        (100, Event(time=40), False),  # strictly greater
        (100, Event(state="expired", time=100), True),
        (100, Event(), False),  # no time: never expired by age
    ],
)
def test_expired_and_not_expired(now: float, event: Event, is_expired: bool) -> None:
    # _at(now) moves the clock to `now` before the event is delivered.
    got = run(lambda sink: expired(sink), [_at(now), event])
    kept = run(lambda sink: not_expired(sink), [_at(now), event])
    assert (event in got) == is_expired
    assert (event in kept) == (not is_expired)


def _at(now: float) -> Event:
    # A marker that moves the clock to `now`; it is itself never expired.
    return Event(service="clock", time=now, state="ok", ttl=1e9)


@relaxed
@given(st.lists(events()), st.floats(0, 300))
def test_expired_and_not_expired_partition(inputs: list[Event], now: float) -> None:
    got = run(lambda sink: expired(sink), [_at(now), *inputs])
    kept = run(lambda sink: not_expired(sink), [_at(now), *inputs])
    assert len(got) + len(kept) == len(inputs) + 1


# over / under ----------------------------------------------------------------------

def test_over_and_under_are_strict_and_drop_missing_metrics() -> None:
    inputs = [Event(metric=m) for m in [3, 5, 7, None, 5.0]]
    assert [e.metric for e in through(lambda s: over(5, s), inputs)] == [7]
    assert [e.metric for e in through(lambda s: under(5, s), inputs)] == [3]
    assert [e.metric for e in through(lambda s: over(4.5, s), inputs)] == [5, 7, 5.0]


@relaxed
@given(st.lists(events()), st.integers(-1000, 1000))
def test_over_under_equal_filter(inputs: list[Event], x: int) -> None:
    assert through(lambda s: over(x, s), inputs) == [
        e for e in inputs if e.metric is not None and e.metric > x
    ]
    assert through(lambda s: under(x, s), inputs) == [
        e for e in inputs if e.metric is not None and e.metric < x
    ]


def test_where_close_stops_timers_of_else_children(clock: VirtualClock) -> None:
    out = Sink()
    s = where(lambda e: True, out, else_=fill_in(1, {"service": "gap"}, out))
    s.close()
    clock.advance(5)
    assert out.events == []


def test_a_dict_pattern_against_a_missing_value_reads_every_field_as_none() -> None:
    from streams import matches

    assert matches({"host": None}, None)
    assert not matches({"host": "a"}, None)
