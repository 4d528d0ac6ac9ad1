"""No client holds the loop (issue 10): pipelined requests, huge messages and queries over a
large index are worked through in turns, and a bystander client is answered meanwhile."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
import trio
from test_server import read_reply, request, with_server

from streams import Event
from transport import Running
from transport._codec import FrameDecoder, encode_request

pytestmark = pytest.mark.network

PING = encode_request([Event(host="bystander", service="ping", time=1)])


async def longest_stall(port: int, load: Callable[[], Awaitable[None]]) -> float:
    """Run ``load`` while a second client pings; the longest ping, in seconds."""
    worst = 0.0
    done = trio.Event()

    async def run_load() -> None:
        await load()
        done.set()

    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        decoder = FrameDecoder()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_load)
            while not done.is_set():
                started = time.perf_counter()
                await stream.send_all(PING)
                assert (await read_reply(stream, decoder)).ok
                worst = max(worst, time.perf_counter() - started)
    return worst


def fill(running: Running, n: int) -> None:
    for i in range(n):
        running.index(Event(host=f"h{i}", service="s", metric=i, time=time.time()))


def test_pipelined_cheap_queries_that_are_never_read_do_not_freeze_other_clients() -> None:
    # Each query scans the whole index and its reply is tiny, so the replies
    # never reach the flush point: before, the loop ran all of them in one go.
    async def body(running: Running) -> None:
        fill(running, 5_000)
        port = running.ports[0]
        queries = encode_request(query="metric < -1") * 2_000

        async def load() -> None:
            async with await trio.open_tcp_stream("127.0.0.1", port) as greedy:
                await greedy.send_all(queries)
                decoder = FrameDecoder()
                for _ in range(2_000):
                    assert (await read_reply(greedy, decoder)).ok

        started = time.perf_counter()
        stall = await longest_stall(port, load)
        total = time.perf_counter() - started
        assert total > 0.3, "the load is too light to show a stall"
        assert stall < max(0.25, total / 4)

    with_server(body)


def test_one_huge_message_is_streamed_in_slices() -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        events = [Event(host=f"h{i}", service="huge", metric=i, time=1) for i in range(150_000)]
        payload = encode_request(events)

        async def load() -> None:
            reply = await request(port, payload)
            assert reply.ok

        started = time.perf_counter()
        stall = await longest_stall(port, load)
        total = time.perf_counter() - started
        assert len(running.index) >= 150_000
        assert stall < max(0.25, total / 3)

    with_server(body)


def test_a_query_over_a_large_index_is_answered_in_slices() -> None:
    async def body(running: Running) -> None:
        fill(running, 100_000)
        port = running.ports[0]

        async def load() -> None:
            for _ in range(3):
                reply = await request(port, encode_request(query='service =~ "%x%y%"'))
                assert reply.ok and not reply.events
            reply = await request(port, encode_request(query="metric >= 99990"))
            assert sorted(e.metric_sint64 for e in reply.events) == list(range(99_990, 100_000))

        started = time.perf_counter()
        stall = await longest_stall(port, load)
        total = time.perf_counter() - started
        assert stall < max(0.1, total / 4)

    with_server(body)
