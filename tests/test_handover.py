"""Stream state carried from one worker to the next owner of a partition (transport._handover).

Each test runs a config in one runtime, exports a partition's state, restores
it into a fresh copy of the config in another runtime (another worker), and
checks that the copy goes on as the first would have: the pickled bytes go
through ``dumps``/``loads`` as they do through the object store.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import (
    Event,
    Runtime,
    VirtualClock,
    by,
    changed,
    changed_state,
    rate,
    runs,
    throttle,
    where,
)
from transport._handover import drop, dumps, export, loads, restore
from transport._jetstream import ScaleOut

SETTINGS = ScaleOut(partitions=4)


def moved(build: Any, before: list[Event], after: list[Event], *, at: float = 0,
          later: float = 0) -> tuple[list[Any], list[Any]]:
    """What the second worker emits for ``after`` once the partitions of ``before``'s
    hosts moved to it, and what one process running everything would have emitted."""
    one: list[Any] = []
    with Runtime(VirtualClock(at)) as runtime:
        single = build(one.append)
        for event in before:
            single[0](event)
        del one[:]
        runtime.clock.advance(later)
        for event in after:
            single[0](event)
    first: list[Any] = []
    with Runtime(VirtualClock(at)):
        streams = build(first.append)
        for event in before:
            streams[0](event)
        state = loads(dumps(export(streams, SETTINGS)))
    second: list[Any] = []
    with Runtime(VirtualClock(at)) as runtime:
        runtime.clock.advance(later)
        streams = build(second.append)
        for partition in state.values():
            restore(streams, partition)
        for event in after:
            streams[0](event)
    return second, one


def test_changed_state_goes_on_from_the_last_state_of_each_host_and_service() -> None:
    before = [Event(host=h, service=s, state="critical") for h in "abc" for s in ("x", "y")]
    after = [Event(host="a", service="x", state="critical"),
             Event(host="b", service="y", state="ok"), Event(host="d", service="x", state="ok")]
    second, one = moved(lambda out: [changed_state(out)], before, after)
    assert [(e.host, e.state) for e in second] == [("b", "ok"), ("d", "ok")] \
        == [(e.host, e.state) for e in one]


def test_throttle_keeps_its_count_within_the_window_the_move_happened_in() -> None:
    before = [Event(host="a", time=t) for t in (0, 1)]
    after = [Event(host="a", time=t) for t in (2, 3)]
    build = lambda out: [by("host", throttle(3, 10, out))]
    second, one = moved(build, before, after, later=5)
    assert [e.time for e in second] == [e.time for e in one] == [2]
    # Once the window the old owner counted in is over, the count starts again.
    second, one = moved(build, before, after, later=12)
    assert [e.time for e in second] == [e.time for e in one] == [2, 3]


def test_runs_and_changed_under_by_go_on() -> None:
    before = [Event(host="a", state="bad"), Event(host="b", metric=1)]
    after = [Event(host="a", state="bad"), Event(host="b", metric=1),
             Event(host="b", metric=2)]
    build = lambda out: [by("host", runs(2, "state", out), changed("metric", out))]
    second, one = moved(build, before, after)
    assert second == one
    assert [(e.host, e.state, e.metric) for e in second] == [
        ("a", "bad", None), ("b", None, 1), ("b", None, 2), ("b", None, 2)]


def test_only_keys_of_the_partition_move_and_mixed_state_stays() -> None:
    # `rate` sees every host of a worker: its state is not any one partition's.
    build = lambda out: [where(lambda e: True, by("host", changed_state(out)),
                               rate(5, out))]
    with Runtime(VirtualClock(0)):
        streams = build([].append)
        for host in ("a", "b", "c", "d", "e"):
            streams[0](Event(host=host, service="s", state="ok", metric=1))
        state = export(streams, SETTINGS, {SETTINGS.partition(Event(host="a"))})
    seen: list[Any] = []
    with Runtime(VirtualClock(0)):
        streams = build(seen.append)
        assert restore(streams, next(iter(state.values()))) >= 1
        for host in ("a", "b", "c", "d", "e"):
            streams[0](Event(host=host, service="s", state="ok"))
    alerting = {e.host for e in seen if e.state == "ok"}
    same_partition = {h for h in "abcde"
                      if SETTINGS.partition(Event(host=h)) == SETTINGS.partition(Event(host="a"))}
    assert alerting == set("abcde") - same_partition


def test_a_by_whose_keys_span_partitions_is_not_carried() -> None:
    with Runtime(VirtualClock(0)):
        streams = [by("service", changed_state([].append))]
        streams[0](Event(host="a", service="s", state="ok"))
        assert export(streams, SETTINGS) == {}


def test_dropping_a_partition_forgets_its_keys_only() -> None:
    with Runtime(VirtualClock(0)):
        outer = by("host", changed_state([].append))
        for host in "abcdef":
            outer(Event(host=host, state="ok"))
        gone = {SETTINGS.partition(Event(host="a"))}
        assert drop([outer], SETTINGS, gone) >= 1
        assert sorted(outer.keys()) == sorted(
            h for h in "abcdef" if SETTINGS.partition(Event(host=h)) not in gone)


def test_a_node_of_another_class_is_left_fresh() -> None:
    with Runtime(VirtualClock(0)):
        streams = [by("host", changed("state", [].append))]
        streams[0](Event(host="a", state="x"))
        state = export(streams, SETTINGS)
    seen: list[Any] = []
    with Runtime(VirtualClock(0)):
        other = [by("host", runs(1, "state", seen.append))]
        for partition in state.values():
            restore(other, partition)
        other[0](Event(host="a", state="x"))
    assert len(seen) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from(["ok", "warning", "crit"])),
                max_size=30), st.integers(0, 30))
def test_a_move_anywhere_in_a_sequence_gives_the_alerts_of_one_process(
        sequence: list[tuple[str, str]], cut: int) -> None:
    events = [Event(host=h, service="s", state=s) for h, s in sequence]
    build = lambda out: [by("host", changed_state(out))]
    second, one = moved(build, events[:cut], events[cut:])
    assert second == one


def test_state_is_keyed_by_node_id_and_carries_its_format() -> None:
    with Runtime(VirtualClock(0)):
        streams = [where(lambda e: True, by("host", changed_state([].append)))]
        streams[0](Event(host="a", service="s", state="ok"))
        state = export(streams, SETTINGS)
    (partition,) = state.values()
    assert partition["format"] == "rillet.handover/2"
    name, own, keys = partition["nodes"]["streams[0]/where/by('host')"]
    assert (name, own, list(keys)) == ("by", None, ["a"])
    # the key's forks are named as the templates they copy; changed_state's own by
    # forks a changed per host and service
    forks = keys["a"]["streams[0]/where/by('host')/changed_state"][2]
    assert forks[("a", "s")] == {"streams[0]/where/by('host')/changed_state/changed": (
        "changed", ("ok", Event(host="a", service="s", state="ok")), None)}


def test_a_snapshot_of_the_first_format_restores_no_stream_state_and_says_so(
        caplog: Any) -> None:
    import logging

    # What the first format (children by argument position) held for by("host", changed):
    first = [("by", None, [], {"a": [("changed", ("x", None), [], None)]})]
    with Runtime(VirtualClock(0)):
        streams = [by("host", changed("state", [].append))]
        with caplog.at_level(logging.WARNING, "rillet.handover"):
            assert restore(streams, first) == 0
        assert streams[0].keys() == []
    assert "rillet.handover/1" in caplog.text and "start fresh" in caplog.text
