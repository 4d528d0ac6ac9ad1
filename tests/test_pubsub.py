"""Pub/sub channels (spec §6.3): Riemann's pubsub tests, plus the config streams."""

from __future__ import annotations

from typing import Any

import pytest

from streams import Event, Index, PubSub, Runtime, publish, subscribe


def test_one_subscriber_gets_everything_published() -> None:
    hub, seen = PubSub(), []
    hub.subscribe("c", seen.append)
    hub.publish("c", 1)  # type: ignore[arg-type]
    hub.publish("c", 2)  # type: ignore[arg-type]
    assert seen == [1, 2]


def test_two_subscribers_then_unsubscribing_one_by_one() -> None:
    hub, first, second = PubSub(), [], []
    a = hub.subscribe("c", first.append)
    b = hub.subscribe("c", second.append)
    assert b.id > a.id
    hub.publish("c", 1)  # type: ignore[arg-type]
    hub.unsubscribe(a)
    hub.publish("c", 2)  # type: ignore[arg-type]
    hub.unsubscribe(b)
    hub.publish("c", 3)  # type: ignore[arg-type]
    assert (first, second) == ([1], [1, 2])


def test_sweep_removes_transient_subscriptions_of_every_channel() -> None:
    """Riemann's sweep prunes only the last channel (spec §9.1.1); rillet sweeps all."""
    hub = PubSub()
    kept, transient, other = [], [], []
    hub.subscribe("b", kept.append, persistent=True)
    hub.subscribe("b", transient.append)
    hub.subscribe("a", other.append)
    hub.publish("b", 1)  # type: ignore[arg-type]
    hub.publish("a", 1)  # type: ignore[arg-type]
    hub.sweep()
    hub.publish("b", 2)  # type: ignore[arg-type]
    hub.publish("a", 2)  # type: ignore[arg-type]
    assert (kept, transient, other) == ([1, 2], [1], [1])
    assert hub.statistics()["subscriptions"] == 1


def test_channels_are_distinct_and_close_drops_everything() -> None:
    hub, seen = PubSub(), []
    hub.subscribe("index", seen.append)
    hub.publish("Index", 1)  # type: ignore[arg-type]
    hub.close()
    hub.publish("index", 2)  # type: ignore[arg-type]
    assert seen == []


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    hub, seen = PubSub(), []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    hub.subscribe("c", broken)
    hub.subscribe("c", seen.append)
    hub.publish("c", Event(service="x"))
    assert seen == [Event(service="x")]


def test_an_index_subscriber_gets_each_inserted_event() -> None:
    hub, index, seen = PubSub(), Index(), []
    index.subscribe(hub.publisher("index"))
    hub.subscribe("index", seen.append)
    index(Event(host="a", time=1))
    index(Event(host="a", state="expired", time=2))
    assert [e.state for e in seen] == [None, "expired"]


def test_publish_and_subscribe_streams_use_the_runtime_in_effect() -> None:
    with Runtime() as runtime:
        hub = runtime.pubsub
        seen: list[Event] = []
        sub = subscribe("alerts", seen.append)
        sub(Event(service="ignored"))  # as a stream it does nothing
        publish("alerts")(Event(service="disk"))
        assert seen == [Event(service="disk")]
        assert repr(publish("alerts")) == "publish('alerts')"
        hub.sweep()  # a reload drops config subscriptions
        publish("alerts")(Event(service="again"))
        assert len(seen) == 1


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_channel_names_fail_at_load(bad: object) -> None:
    with pytest.raises(ValueError, match=r"publish\(channel=.*non-empty string"):
        publish(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"subscribe\(channel="):
        subscribe(bad, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="function must be callable"):
        subscribe("alerts", "print")  # type: ignore[arg-type]


def test_watchers_hear_when_a_channel_gains_and_loses_listeners() -> None:
    hub, states = PubSub(), []
    stop = hub.watch("index", states.append)
    first = hub.subscribe("index", print)
    second = hub.subscribe("index", print, persistent=True)
    hub.unsubscribe(first)
    hub.sweep()
    hub.close()
    stop()
    hub.subscribe("index", print)
    assert states == [False, True, False]
    assert second.persistent


def test_a_runtime_publishes_its_index_and_a_reload_sweeps_config_subscriptions(
        tmp_path: Any) -> None:
    config = tmp_path / "monitoring.py"
    config.write_text("from streams import *\nseen = []\nsubscribe('index', seen.append)\n"
                      "streams(index)\n")
    with Runtime() as runtime:
        runtime.start(runtime.load(config))
        persistent: list[Event] = []
        runtime.pubsub.subscribe("index", persistent.append, persistent=True)
        runtime.stream([Event(host="a", time=1)])
        assert runtime.pubsub.statistics()["subscriptions"] == 2
        runtime.swap(runtime.load(config))  # a reload: the new config subscribes anew
        assert runtime.pubsub.statistics()["subscriptions"] == 2
        runtime.stream([Event(host="b", time=2)])
    assert [e.host for e in persistent] == ["a", "b"]
