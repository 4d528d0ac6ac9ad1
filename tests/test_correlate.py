"""top, project, coalesce_with_event, clock_skew (spec §3.10)."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Event, Runtime, clock_skew, coalesce_with_event, project, top
from streams.testing import Sink, clock, run, run_intervals

# top ----------------------------------------------------------------------------------------


def brief(events: list[Event]) -> list[tuple[str | None, object, str | None]]:
    return [(e.host, e.metric, e.state) for e in events]


def test_top_recomputes_the_smallest_when_a_member_rises() -> None:
    # Riemann keeps b5 out of sight after a rises, and rejects c6 (quirk §9.1.3).
    tops: list[Event] = []
    s = top(2, "metric", tops.append)
    for host, m in [("a", 1), ("b", 5), ("a", 10), ("c", 6)]:
        s(Event(host=host, metric=m))
    assert sorted((e.host, e.metric) for e in s.members()) == [("a", 10), ("c", 6)]
    assert brief(tops)[-1] == ("c", 6, None)


def test_top_routes_by_membership_without_demotion_by_default() -> None:
    tops: list[Event] = []
    s = top(1, "metric", tops.append)
    for host, m in [("a", 1), ("b", 0), ("b", 3)]:
        s(Event(host=host, metric=m))
    assert brief(tops) == [("a", 1, None), ("b", None, "expired"), ("b", 3, None)]
    assert s.demote is False


def test_top_with_bottom_stream_demotes_by_default() -> None:
    tops: list[Event] = []
    bottoms: list[Event] = []
    s = top(1, "metric", tops.append, bottoms.append)
    for host, m in [("a", 1), ("b", 0), ("b", 3)]:
        s(Event(host=host, metric=m))
    assert brief(tops) == [("a", 1, None), ("b", None, "expired"), ("a", None, "expired"),
                           ("b", 3, None)]
    assert brief(bottoms) == [("a", None, "expired"), ("b", 0, None), ("a", 1, None),
                              ("b", None, "expired")]
    assert top(1, "metric", print, print, demote=False).demote is False


def test_top_expired_and_nil_values_leave_and_go_to_both_streams() -> None:
    tops: list[Event] = []
    bottoms: list[Event] = []
    s = top(2, "metric", tops.append, bottoms.append)
    s(Event(host="a", metric=5))
    s(Event(host="b", metric=7))
    s(Event(host="a", state="expired"))
    assert brief(tops)[-1] == ("a", None, "expired") == brief(bottoms)[-1]
    s(Event(host="b"))
    assert [e.host for e in s.members()] == []
    assert brief(tops)[-1] == ("b", None, "expired")
    assert brief(bottoms)[-1] == ("b", None, None)


def test_top_expired_copy_has_time_now_and_only_host_service() -> None:
    out = run(lambda sink: top(1, "metric", sink),
              [Event(host="a", service="s", metric=5, time=1, ttl=30, tags=("x",)),
               Event(host="b", service="s", metric=1, time=4, region="eu")])
    assert out[-1] == Event(host="b", service="s", state="expired", time=4)


def test_top_accepts_a_function() -> None:
    tops: list[Event] = []
    s = top(1, lambda e: -e.metric, tops.append)
    s(Event(host="a", metric=5))
    s(Event(host="b", metric=1))
    assert [e.host for e in s.members()] == ["b"]


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_top_rejects_bad_k(k: object) -> None:
    with pytest.raises(ValueError, match="k must"):
        top(k, "metric", print)  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 4),
       st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 5)), max_size=40))
def test_top_matches_brute_force_top_k_of_latest_per_key(
        k: int, steps: list[tuple[str, int]]) -> None:
    # Values only rise per key, so nothing leaves the set except by being outranked.
    tops: list[Event] = []
    s = top(k, "metric", tops.append, lambda e: None)
    latest: dict[str, int] = {}
    for host, step in steps:
        latest[host] = latest.get(host, 0) + step
        s(Event(host=host, metric=latest[host]))
        members = s.members()
        assert len(members) <= k
        assert sorted(e.metric for e in members) == sorted(heapq.nlargest(k, latest.values()))
        assert [e.metric for e in members] == [latest[e.host] for e in members]  # type: ignore
        assert {e.host for e in _replay(tops)} == {e.host for e in members}


def _replay(events: list[Event]) -> list[Event]:
    """The members as the top stream has been told: live events in, expired copies out."""
    current: dict[str | None, Event] = {}
    for e in events:
        if e.state == "expired":
            current.pop(e.host, None)
        else:
            current[e.host] = e
    return list(current.values())


# project ------------------------------------------------------------------------------------


def test_project_forwards_the_latest_event_per_condition() -> None:
    out = run(lambda sink: project(['service = "used"', {"service": "total"}], sink),
              [Event(service="used", metric=3, time=0), Event(service="other", time=0),
               Event(service="total", metric=4, time=1), Event(service="used", metric=5, time=2)])
    assert [[e and e.metric for e in v] for v in out] == [[3, None], [3, 4], [5, 4]]


def test_project_event_fills_every_matching_slot() -> None:
    out = run(lambda sink: project([lambda e: e.metric > 1, lambda e: e.metric > 2], sink),
              [Event(metric=3), Event(metric=2)])
    assert [[e.metric for e in v] for v in out] == [[3, 3], [2, 3]]


def test_project_expired_events_appear_once_as_expired_copies() -> None:
    out = run(lambda sink: project(["service = \"a\"", "service = \"b\""], sink),
              [Event(host="h", service="a", metric=1, time=0, ttl=5),
               Event(host="h", service="b", metric=2, time=10),
               Event(host="h", service="b", metric=3, time=11)])
    assert out[1] == [Event(host="h", service="a", state="expired", time=10),
                      Event(host="h", service="b", metric=2, time=10)]
    assert out[2] == [None, Event(host="h", service="b", metric=3, time=11)]


def test_project_rejects_a_bare_condition() -> None:
    with pytest.raises(TypeError, match="list of conditions"):
        project('service = "a"')
    with pytest.raises(TypeError, match="project"):
        project([3])


# coalesce_with_event ------------------------------------------------------------------------


def test_coalesce_with_event_reports_expired_once_then_forgets() -> None:
    calls: list[tuple[str, list[tuple[str, str | None]]]] = []

    def child(event: Event, events: list[Event]) -> None:
        calls.append((event.host or "", [(e.host or "", e.state) for e in events]))

    run(lambda sink: coalesce_with_event("host", child),
        [Event(host="a", time=0), Event(host="b", time=0, ttl=2), Event(host="c", time=5),
         Event(host="a", time=6)])
    assert calls == [
        ("a", [("a", None)]),
        ("b", [("a", None), ("b", None)]),
        ("c", [("b", None), ("a", None), ("c", None)]),
        ("a", [("a", None), ("c", None)]),
    ]


def test_coalesce_with_event_needs_a_function_child() -> None:
    with pytest.raises(TypeError, match="child"):
        coalesce_with_event("host", 3)  # type: ignore[arg-type]


# clock_skew ---------------------------------------------------------------------------------


def test_clock_skew_measures_against_the_median_host_clock() -> None:
    steps = [(Event(host="a", time=10), 1), (Event(host="b", time=16), None),
             (Event(host="c", time=8), 2), (Event(host="a", time=13), None)]
    out = run_intervals(lambda sink: clock_skew(sink), steps, start=10)
    # At 11: a's clock reads 11 by now, b says 16 → upper median 16, b is 0 ahead; with c
    # saying 8 the median is 11, so c is 3 behind. At 13: a 13, b 18, c 10 → median 13.
    assert [(e.host, e.metric) for e in out] == [("a", 0), ("b", 0), ("c", -3), ("a", 0)]
    assert all(not e.attributes for e in out)


def test_clock_skew_forwards_expired_events_unchanged() -> None:
    expired = Event(host="a", state="expired", time=3)
    out = run(lambda sink: clock_skew(sink), [Event(host="a", time=0), expired])
    assert out[-1] == expired
    assert out[-1].attributes == {}


def test_clock_skew_missing_time_raises() -> None:
    with pytest.raises(ValueError, match="no time"):
        run(lambda sink: clock_skew(sink), [Event(host="a")])


def test_clock_skew_forgets_hosts_whose_events_expired(runtime: Runtime) -> None:
    out = run_intervals(lambda sink: clock_skew(sink),
                        [(Event(host="a", time=0, ttl=1), None), (Event(host="c", time=0), 5),
                         (Event(host="b", time=9), None)], runtime=runtime)
    assert clock().now() == 5
    # Still counting a (its clock estimated at 5) would put the median at 5 and b 4 ahead.
    assert [(e.host, e.metric) for e in out] == [("a", 0), ("c", 0), ("b", 0)]


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
