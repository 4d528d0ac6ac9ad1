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


def _pipelined(child: Any, size: int, messages: int, per_message: int) -> async_queue:
    """Send ``messages`` requests of ``per_message`` events at once; every one is acked."""
    from test_server import read_reply

    from transport._codec import FrameDecoder, encode_request

    with declaring(Config()) as declared:
        queue = async_queue("q", child, size=size)
    config = Config(streams=[queue], services=[TcpServer(port=0), *declared.services])
    payload = b"".join(
        encode_request([Event(service="q", metric=m * per_message + i, time=1)
                        for i in range(per_message)]) for m in range(messages))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(functools.partial(serve, config,
                                                                     index=Index()))
            with trio.fail_after(30):
                async with await trio.open_tcp_stream("127.0.0.1", running.ports[0]) as stream:
                    nursery.start_soon(stream.send_all, payload)
                    decoder = FrameDecoder()
                    for _ in range(messages):
                        assert (await read_reply(stream, decoder)).ok
                while queue.statistics()["queued"]:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return queue


def test_a_queue_whose_consumer_keeps_up_never_drops() -> None:
    # Before: the drain task took one event per turn while a connection put a
    # whole read on the queue, so a no-op child saw 0.1 % of a full-speed load.
    seen = [0]

    def count(event: Any) -> None:
        seen[0] += 1

    queue = _pipelined(count, size=1000, messages=300, per_message=100)
    stats = queue.statistics()
    assert (stats["dropped"], stats["completed"], seen[0]) == (0, 30_000, 30_000)


def test_a_slow_consumer_pauses_tcp_clients_instead_of_dropping() -> None:
    import time

    order: list[int] = []

    def slow(event: Any) -> None:
        deadline = time.perf_counter() + 0.00005
        while time.perf_counter() < deadline:
            pass
        order.append(event.metric)

    queue = _pipelined(slow, size=1000, messages=100, per_message=100)
    stats = queue.statistics()
    assert stats["dropped"] == 0 and stats["paused"] > 0
    assert order == list(range(10_000))


def test_events_still_queued_at_shutdown_reach_the_children() -> None:
    import time

    seen: list[int] = []

    def slow(event: int) -> None:
        time.sleep(0.001)  # a turn of the drain task ends long before the queue is empty
        seen.append(event)

    with declaring(Config()):
        queue = async_queue("q", slow, size=100)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.serve, None)
            for i in range(50):
                queue(i)
            nursery.cancel_scope.cancel()  # before the drain task ran once

    trio.run(main)
    assert seen == list(range(50))
    assert queue.statistics()["dropped"] == 0
