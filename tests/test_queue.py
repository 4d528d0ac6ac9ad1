"""async_queue: events reach slow children through a bounded queue; overflow is counted."""

from __future__ import annotations

import functools
from typing import Any

import trio

from streams import Config, Event, Index
from streams._config import declaring
from streams.testing import Sink
from transport import Running, TcpServer, TrioClient, serve
from transport._queue import async_queue


def test_queued_events_reach_the_children_in_order_through_the_server() -> None:
    sink = Sink()
    with declaring(Config()) as declared:
        queue = async_queue("slow", sink, size=100)
    index = Index()
    config = Config(streams=[queue, index], services=[TcpServer(port=0), *declared.services])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(functools.partial(serve, config,
                                                                     index=index))
            with trio.fail_after(10):
                async with await TrioClient.connect("127.0.0.1", running.ports[0]) as client:
                    for i in range(20):
                        await client.send(Event(service="q", metric=i, time=i))
                while len(sink.events) < 20:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert [e.metric for e in sink.events] == list(range(20))
    assert queue.statistics()["completed"] == 20


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    seen: list[Any] = []
    with declaring(Config()):
        queue = async_queue("tiny", seen.append, size=3)
    for i in range(10):
        queue(i)  # nothing drains it: the 4th and later events are dropped, never blocking
    stats = queue.statistics()
    assert (stats["accepted"], stats["dropped"], stats["queued"]) == (3, 7, 3)


def test_a_failing_child_is_reported_and_the_queue_keeps_draining() -> None:
    seen: list[Any] = []

    def flaky(event: Any) -> None:
        if event == 1:
            raise RuntimeError("boom")
        seen.append(event)

    with declaring(Config()):
        queue = async_queue("flaky", flaky, size=10)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.serve, None)
            for i in range(3):
                queue(i)
            with trio.fail_after(5):
                while queue.statistics()["completed"] < 3:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen == [0, 2]


def test_config_errors_name_the_argument() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"size=0"):
        async_queue("q", print, size=0)
