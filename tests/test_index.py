"""The index (spec §5.1–5.3): insert, delete, search, expiry, reaper, subscribers."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import Runtime, VirtualClock
from streams._core import exception_stream
from streams._event import Event
from streams._index import (
    Index,
    IndexStatistics,
    Reaper,
    current_index,
    index,
)
from streams._query import compile_query


def ev(**fields: Any) -> Event:
    return Event(**fields)


# §5.1 insert / update / delete ------------------------------------------------

def test_insert_replaces_the_whole_event() -> None:
    idx = Index()
    idx(ev(host=1, service=3, state="ok", time=0))
    idx(ev(host=1, service=3, description="new", time=0))
    assert list(idx) == [ev(host=1, service=3, description="new", time=0)]


def test_event_without_time_is_an_error() -> None:
    idx = Index()
    with pytest.raises(ValueError, match="cannot index event with no time"):
        idx(ev(host="a", service="b"))
    assert len(idx) == 0


def test_expired_state_deletes_the_key() -> None:
    idx = Index()
    idx(ev(host="a", service="b", time=1))
    idx(ev(host="a", service="c", time=1))
    idx(ev(host="a", service="b", state="expired", time=2))
    assert idx.lookup("a", "b") is None
    assert [e.service for e in idx] == ["c"]


def test_lookup_delete_delete_exactly_clear() -> None:
    idx = Index()
    first = ev(host="h", service="s", metric=1, time=0)
    idx(first)
    idx(ev(host=None, service="s", time=0))
    assert idx.lookup("h", "s") == first
    assert idx.lookup(None, "s") == ev(service="s", time=0)
    assert idx.lookup("h", "nope") is None

    assert not idx.delete_exactly(first.evolve(metric=2))
    assert idx.lookup("h", "s") == first
    assert idx.delete_exactly(ev(host="h", service="s", metric=1, time=0))  # equal by value
    assert idx.lookup("h", "s") is None

    idx(first)
    assert idx.delete(ev(host="h", service="s")) == first  # by key alone
    assert idx.delete(ev(host="h", service="s")) is None
    idx.clear()
    assert len(idx) == 0 and list(idx) == []


def test_iteration_is_a_snapshot() -> None:
    idx = Index()
    for n in range(3):
        idx(ev(host=str(n), time=0))
    for event in idx:
        idx.delete(event)
        idx(ev(host=f"new {event.host}", time=0))
    assert sorted(e.host for e in idx) == ["new 0", "new 1", "new 2"]  # type: ignore[type-var]


def test_shared_and_config_like() -> None:
    idx = Index()
    assert idx.fork() is idx
    assert repr(idx) == "Index()"
    assert Index.shared is True
    assert bool(idx) is True  # even when empty


def test_statistics() -> None:
    idx = Index()
    idx(ev(host="a", time=0, ttl=1))
    idx(ev(host="a", time=0, ttl=1))
    idx(ev(host="b", time=0))
    handle = idx.subscribe(lambda e: None)
    idx.expire(now=5)
    assert idx.statistics() == IndexStatistics(size=1, inserts=3, expired=1, subscribers=1)
    idx.unsubscribe(handle)
    assert idx.statistics().subscribers == 0


# Subscribers (pubsub channel "index") ------------------------------------------

def test_subscribers_see_every_insert_and_tombstone() -> None:
    idx = Index()
    first: list[Event] = []
    second: list[Event] = []
    one = idx.subscribe(first.append)
    two = idx.subscribe(second.append)
    a, b, c = (ev(service=str(n), time=n) for n in range(3))
    idx(a)
    assert idx.unsubscribe(one)
    idx(b)
    assert idx.unsubscribe(two)
    idx(c)
    assert first == [a]
    assert second == [a, b]
    assert not idx.unsubscribe(two)  # repeating is harmless

    seen: list[Event] = []
    idx.subscribe(seen.append)
    tombstone = ev(service="0", state="expired", time=5)
    idx(tombstone)
    assert seen == [tombstone]


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    idx = Index()
    seen: list[Event] = []
    errors: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("socket gone")

    idx.subscribe(broken)
    idx.subscribe(seen.append)
    event = ev(host="a", time=0)
    exception_stream(errors.append, idx)(event)
    assert seen == [event]
    assert idx.lookup("a", None) == event
    assert errors[0].tags == ("exception", "RuntimeError")


def test_subscriber_may_unsubscribe_itself_while_notified() -> None:
    idx = Index()
    seen: list[Event] = []
    handles: list[int] = []

    def once(event: Event) -> None:
        seen.append(event)
        idx.unsubscribe(handles[0])

    handles.append(idx.subscribe(once))
    idx(ev(time=0))
    idx(ev(time=1))
    assert len(seen) == 1


def test_subscribe_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        Index().subscribe("not a function")  # type: ignore[arg-type]


# §5.2 search ------------------------------------------------------------------

def test_search_scans_and_uses_the_fast_path() -> None:
    idx = Index()
    events = [
        ev(host="a", service="cpu", metric=1, time=0),
        ev(host="a", service="mem", metric=5, time=0),
        ev(host=None, service="ser", metric=2, time=0),
    ]
    for event in events:
        idx(event)
    assert idx.search('host = "a" and service = "cpu"') == [events[0]]
    assert idx.search('service = "mem" and host = "a"') == [events[1]]
    assert idx.search('host = nil and service = "ser"') == [events[2]]
    assert idx.search('host = "z" and service = "cpu"') == []
    assert sorted(e.metric for e in idx.search("metric > 1")) == [2, 5]  # type: ignore[type-var]
    assert len(idx.search("true")) == 3
    assert idx.search(compile_query('host = "a" and metric = 5')) == [events[1]]


def test_search_fast_path_equals_the_scan() -> None:
    idx = Index()
    for host in ("a", "b", None):
        for service in ("x", "y"):
            idx(ev(host=host, service=service, time=0))
    for host in ('"a"', '"b"', "nil", '"c"'):
        for service in ('"x"', '"y"', "nil"):
            fast = idx.search(f"host = {host} and service = {service}")
            scanned = idx.search(f"(host = {host}) and service = {service} and true")
            assert fast == scanned


def test_search_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="query string or compile_query"):
        Index().search(42)  # type: ignore[arg-type]


# §5.3 expiry --------------------------------------------------------------------

def test_expire_index_test_example() -> None:
    t = 1000.0
    idx = Index()
    expiring = [
        ev(host=1, ttl=0, time=t - 1),
        ev(host=3, ttl=20, time=t - 21),
        ev(host=5, ttl=None, time=t - 61),
    ]
    staying = [ev(host=2, ttl=10, time=t), ev(host=4, time=t)]
    for event in expiring + staying:
        idx(event)
    assert set(idx.expire(now=t)) == set(expiring)
    assert set(idx) == set(staying)
    assert idx.expire(now=t) == []


def test_expiry_is_strict(clock: VirtualClock) -> None:
    idx = Index()
    idx(ev(host="edge", ttl=10, time=0))
    idx(ev(host="default", time=0))
    clock.set(10)
    assert idx.expire() == []
    clock.set(10.5)
    assert [e.host for e in idx.expire()] == ["edge"]
    clock.set(60)
    assert idx.expire() == []
    clock.set(60.001)
    assert [e.host for e in idx.expire()] == ["default"]


def test_broken_ttl_is_removed_logged_and_not_returned(caplog: pytest.LogCaptureFixture) -> None:
    idx = Index()
    idx(ev(host="bad", ttl="0", time=0))  # type: ignore[arg-type]
    idx(ev(host="good", ttl=1, time=0))
    with caplog.at_level(logging.WARNING, logger="rillet.index"):
        expired = idx.expire(now=100)
    assert [e.host for e in expired] == ["good"]
    assert len(idx) == 0
    assert "ttl or time is broken" in caplog.text
    assert idx.statistics().expired == 2


# §5.3 reaper -------------------------------------------------------------------------

@pytest.mark.parametrize(("keep_keys", "expected"), [
    (("host", "service"), ev(service=1, time=0.1, state="expired")),
    (("tags",), ev(tags=["hi"], time=0.1, state="expired")),
    ("all", ev(service=1, tags=["hi"], ttl=0.05, time=0.1, state="expired")),
])
def test_reaper(clock: VirtualClock, keep_keys: Any, expected: Event) -> None:
    idx = Index()
    out: list[Event] = []
    idx(ev(service=1, tags=["hi"], ttl=0.05, time=0))
    idx.start_reaper(0.1, out.append, keep_keys=keep_keys)
    clock.advance(0.09)
    assert out == []
    clock.advance(0.1)
    assert out == [expected]
    assert len(idx) == 0
    clock.advance(1)
    assert out == [expected]
    idx.close()


def test_reaper_runs_every_interval(clock: VirtualClock) -> None:
    idx = Index()
    out: list[Event] = []
    reaper = idx.start_reaper(10, out.append)
    idx(ev(host="a", ttl=5, time=0))
    idx(ev(host="b", ttl=15, time=0))
    clock.advance(10)
    assert [(e.host, e.time) for e in out] == [("a", 10)]
    clock.advance(20)
    assert [(e.host, e.time) for e in out] == [("a", 10), ("b", 20)]
    reaper.stop()
    idx(ev(host="c", ttl=1, time=20))
    clock.advance(100)
    assert len(out) == 2


def test_reaper_publishes_once_even_when_streams_feed_the_index(clock: VirtualClock) -> None:
    idx = Index()
    published: list[Event] = []
    idx.subscribe(published.append)
    downstream: list[Event] = []

    def core_streams(event: Event) -> None:
        downstream.append(event)
        idx(event)

    idx(ev(host="a", service="s", ttl=1, time=0))
    idx.start_reaper(5, core_streams)
    clock.advance(5)
    tombstone = ev(host="a", service="s", state="expired", time=5)
    assert downstream == [tombstone]
    assert published == [ev(host="a", service="s", ttl=1, time=0), tombstone]


def test_reaper_without_streams_still_publishes(clock: VirtualClock) -> None:
    idx = Index()
    published: list[Event] = []
    idx(ev(host="a", ttl=1, time=0))
    idx.subscribe(published.append)
    reaper = idx.start_reaper(2)
    clock.advance(2)
    assert published == [ev(host="a", state="expired", time=2)]
    reaper.stop()


def test_reaper_errors_are_per_event(clock: VirtualClock,
                                     caplog: pytest.LogCaptureFixture) -> None:
    idx = Index()
    seen: list[Event] = []

    def streams(event: Event) -> None:
        if event.host == "boom":
            raise RuntimeError("downstream failed")
        seen.append(event)

    idx(ev(host="boom", ttl=1, time=0))
    idx(ev(host="fine", ttl=1, time=0))
    idx.start_reaper(5, streams)
    with caplog.at_level(logging.ERROR):
        clock.advance(5)
    assert [e.host for e in seen] == ["fine"]
    assert "downstream failed" in caplog.text


def test_starting_a_reaper_replaces_the_previous_one(clock: VirtualClock) -> None:
    idx = Index()
    old: list[Event] = []
    new: list[Event] = []
    first = idx.start_reaper(1, old.append)
    idx.start_reaper(1, new.append)
    assert first.task is None
    idx(ev(host="a", ttl=0, time=0))
    clock.advance(1)
    assert old == [] and len(new) == 1
    idx.close()
    assert len(clock) == 0


def test_reaper_validates_its_configuration() -> None:
    idx = Index()
    with pytest.raises(ValueError, match=r"interval must be a positive number of seconds, got 0"):
        Reaper(idx, 0)
    with pytest.raises(TypeError, match=r"write keep_keys=\('host',\)"):
        Reaper(idx, 1, keep_keys="host")
    with pytest.raises(TypeError, match="must be a stream"):
        Reaper(idx, 1, "streams")  # type: ignore[arg-type]
    assert repr(Reaper(idx, 5, keep_keys="all")) == "Reaper(interval=5, keep_keys='all')"


# The config-level `index` -------------------------------------------------------------

def test_config_index_feeds_the_runtimes_index() -> None:
    mine = Index()
    with Runtime(index=mine):
        assert current_index() is mine
        index(ev(host="a", service="b", time=1))
        assert mine.lookup("a", "b") == ev(host="a", service="b", time=1)
        assert index.search('host = "a"') == [ev(host="a", service="b", time=1)]
        assert index.lookup("a", "b") is mine.lookup("a", "b")
        assert index.statistics().size == 1
        assert repr(index) == "index"
        assert index.fork() is index
    assert current_index() is not mine
    with pytest.raises(TypeError, match=r"index must be an Index\(\)"):
        Runtime(index="index")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"use `index`, not `index\(\)`"):
        index()  # type: ignore[call-arg]


# Properties ---------------------------------------------------------------------------

keys = st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(["x", "y", None]))
inserts = st.lists(
    st.tuples(keys, st.integers(0, 100), st.sampled_from([None, "ok", "expired"])),
    max_size=30,
)


@given(inserts)
def test_index_holds_the_latest_event_per_key(steps: list[Any]) -> None:
    idx = Index()
    model: dict[Any, Event] = {}
    for (host, service), time, state in steps:
        event = ev(host=host, service=service, time=time, state=state)
        idx(event)
        if state == "expired":
            model.pop((host, service), None)
        else:
            model[(host, service)] = event
    assert len(idx) == len(model)
    assert set(idx) == set(model.values())
    for (host, service), event in model.items():
        assert idx.lookup(host, service) is event


@given(st.lists(st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(0, 10))),
                max_size=20),
       st.integers(0, 30))
def test_expire_partitions_by_age(specs: list[tuple[int, int | None]], now: int) -> None:
    idx = Index()
    events = [ev(host=str(n), time=time, ttl=ttl) for n, (time, ttl) in enumerate(specs)]
    for event in events:
        idx(event)
    expired = idx.expire(now=now)
    should = {e for e in events if (60 if e.ttl is None else e.ttl) < now - e.time}  # type: ignore[operator]
    assert set(expired) == should
    assert set(idx) == set(events) - should
