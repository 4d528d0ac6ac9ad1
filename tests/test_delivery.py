"""The delivery layer: a sink's queue never blocks the streams; its task retries, backs off,
counts what it drops and flushes at shutdown.

The sink under test delivers to an in-process peer the test switches between up, down,
slow and rejecting; the sinks' own tests run the same situations against real servers.
Backoff sleeps run on trio's MockClock, which jumps time forward when every task waits.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from _peers import until as poll_until

from streams import Config, Event
from streams._config import declaring
from transport import Running, TcpServer, TrioClient, serve
from transport._delivery import HttpSink, NetworkSink, Rejected, backoff_delays


class Peer:
    """Where the test sink delivers: ``mode`` is "up", "down", "slow" or "reject"."""

    def __init__(self, mode: str = "up") -> None:
        self.mode = mode
        self.batches: list[list[Any]] = []

    @property
    def received(self) -> list[Any]:
        return [event for batch in self.batches for event in batch]


class recording(NetworkSink):
    __slots__ = ("disconnects", "peer")

    def __init__(self, peer: Peer, **options: Any) -> None:
        self.peer = peer
        self.disconnects = 0
        super().__init__(**options)

    async def send_batch(self, batch: list[Any]) -> None:
        await trio.lowlevel.checkpoint()
        mode = self.peer.mode
        if mode == "down":
            raise ConnectionRefusedError("connection refused")
        if mode == "slow":
            await trio.sleep(3600)
        if mode == "reject":
            raise Rejected("HTTP 400: bad payload")
        self.peer.batches.append(list(batch))

    async def disconnect(self) -> None:
        self.disconnects += 1


class alerting(recording):
    __slots__ = ()
    overflow = "drop_newest"


def sink_for(peer: Peer, cls: type[recording] = recording, **options: Any) -> recording:
    with declaring(Config()) as config:
        sink = cls(peer, **options)
    assert config.services == [sink]  # declared as a service of the config being loaded
    return sink


def run_mocked(body: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await body(nursery)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def until(condition: Callable[[], bool]) -> None:
    await poll_until(condition, 600)  # virtual seconds, on the MockClock


# The stream half -------------------------------------------------------------


def test_enqueueing_never_blocks_and_drop_oldest_keeps_the_newest() -> None:
    sink = sink_for(Peer(), queue_size=3)
    for i in range(10):
        assert sink(Event(metric=i)) is None  # nothing drains it: the queue overflows
    assert [e.metric for e in sink._queue] == [7, 8, 9]
    stats = sink.statistics()
    assert (stats["queued"], stats["dropped"], stats["overflow"]) == (3, 7, "drop_oldest")


def test_drop_newest_keeps_the_queued_alerts_and_logs_every_drop(
        caplog: pytest.LogCaptureFixture) -> None:
    sink = sink_for(Peer(), alerting, queue_size=2)
    with caplog.at_level(logging.ERROR, "rillet.delivery"):
        for host in "abcd":
            sink(Event(host=host, service="http", state="critical"))
    assert [e.host for e in sink._queue] == ["a", "b"]
    assert sink.statistics()["dropped"] == 2
    drops = [r.getMessage() for r in caplog.records]
    assert len(drops) == 2
    assert "host='c'" in drops[0] and "2 dropped so far" in drops[1]


def test_lists_of_events_are_queued_one_by_one() -> None:
    sink = sink_for(Peer())
    sink([Event(metric=1), Event(metric=2)])
    sink(Event(metric=3))
    assert [e.metric for e in sink._queue] == [1, 2, 3]


def test_repr_reads_like_the_config_line_and_forks_share_the_sink() -> None:
    peer = Peer()
    sink = sink_for(peer, queue_size=5)
    assert repr(sink).startswith("recording(") and repr(sink).endswith("queue_size=5)")
    assert sink.fork() is sink


@pytest.mark.parametrize(("options", "message"), [
    ({"queue_size": 0}, r"recording\(queue_size=0\): queue_size must be an int >= 1"),
    ({"batch_size": 2.5}, r"batch_size=2.5"),
    ({"overflow": "block"}, r"overflow='block'.*'drop_oldest', 'drop_newest'"),
    ({"timeout": 0}, r"timeout=0"),
    ({"backoff": 5, "max_backoff": 1}, r"max_backoff=1\): max_backoff must be a number >= 5"),
    ({"flush_timeout": float("nan")}, r"flush_timeout=nan"),
])
def test_config_mistakes_name_the_argument(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message), declaring(Config()):
        recording(Peer(), **options)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = [d for _, d in zip(range(12), backoff_delays(0.5, 8), strict=False)]
    caps = [0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) > 1


# The trio half ---------------------------------------------------------------


def test_queued_events_go_out_in_order_in_batches_of_at_most_batch_size() -> None:
    peer = Peer()
    sink = sink_for(peer, batch_size=4)
    for i in range(10):
        sink(Event(metric=i))

    async def body(nursery: trio.Nursery) -> None:
        await nursery.start(sink.serve, None)
        await until(lambda: len(peer.received) == 10)
        sink(Event(metric=10))  # the idle task wakes up for a new event
        await until(lambda: len(peer.received) == 11)

    run_mocked(body)
    assert [e.metric for e in peer.received] == list(range(11))
    assert [len(b) for b in peer.batches] == [4, 4, 2, 1]
    stats = sink.statistics()
    assert (stats["sent"], stats["queued"], stats["retries"]) == (11, 0, 0)
    assert stats["last_success"] is not None


def test_a_peer_down_at_start_is_retried_with_backoff_until_it_comes_up() -> None:
    peer = Peer("down")
    sink = sink_for(peer, backoff=1, max_backoff=8)
    sink(Event(metric=1))

    async def body(nursery: trio.Nursery) -> None:
        await nursery.start(sink.serve, None)
        started = trio.current_time()
        await until(lambda: sink.retries >= 6)
        # 1 + 2 + 4 + 8 + 8 + 8 seconds at most, half that at least (jitter)
        assert 15 <= trio.current_time() - started <= 31 + 1
        assert [e.metric for e in sink._batch] == [1]
        sink(Event(metric=2))  # the streams keep queueing meanwhile
        peer.mode = "up"
        await until(lambda: len(peer.received) == 2)

    run_mocked(body)
    assert [e.metric for e in peer.received] == [1, 2]
    stats = sink.statistics()
    assert stats["last_error"] == "ConnectionRefusedError: connection refused"
    assert stats["sent"] == 2 and stats["dropped"] == 0
    assert sink.disconnects >= 6  # each retry reconnects


def test_a_slow_peer_times_out_and_is_retried() -> None:
    peer = Peer("slow")
    sink = sink_for(peer, timeout=2, backoff=1)
    sink(Event(metric=1))

    async def body(nursery: trio.Nursery) -> None:
        await nursery.start(sink.serve, None)
        await until(lambda: sink.retries >= 1)
        peer.mode = "up"
        await until(lambda: len(peer.received) == 1)

    run_mocked(body)
    assert sink.statistics()["last_error"] == "TimeoutError: no answer within timeout=2 s"


def test_a_rejected_batch_is_counted_as_failed_and_delivery_goes_on() -> None:
    peer = Peer("reject")
    sink = sink_for(peer, batch_size=2)
    for i in range(3):
        sink(Event(metric=i))

    async def body(nursery: trio.Nursery) -> None:
        await nursery.start(sink.serve, None)
        await until(lambda: sink.failed == 3)
        peer.mode = "up"
        sink(Event(metric=3))
        await until(lambda: len(peer.received) == 1)

    run_mocked(body)
    assert [e.metric for e in peer.received] == [3]
    stats = sink.statistics()
    assert (stats["failed"], stats["retries"], stats["sent"]) == (3, 0, 1)
    assert stats["last_error"] == "rejected: HTTP 400: bad payload"


def test_overflow_while_the_peer_is_down_then_recovery() -> None:
    peer = Peer("down")
    sink = sink_for(peer, queue_size=5, batch_size=2)

    async def body(nursery: trio.Nursery) -> None:
        await nursery.start(sink.serve, None)
        for i in range(20):
            sink(Event(metric=i))
            await trio.sleep(1)
        peer.mode = "up"
        await until(lambda: sink.statistics()["queued"] == 0)

    run_mocked(body)
    received = [e.metric for e in peer.received]
    # the first event was in hand (a batch of one) when the peer went down; the queue
    # kept the newest five
    assert received == [0, 15, 16, 17, 18, 19]
    assert sink.statistics()["dropped"] == 14


def test_shutdown_flushes_what_is_queued() -> None:
    peer = Peer()
    sink = sink_for(peer, batch_size=3)

    async def body(nursery: trio.Nursery) -> None:
        await nursery.start(sink.serve, None)
        for i in range(10):
            sink(Event(metric=i))  # queued, and the task gets no turn before the cancel

    run_mocked(body)
    assert [e.metric for e in peer.received] == list(range(10))
    assert sink.statistics()["dropped"] == 0


def test_shutdown_gives_up_after_flush_timeout_and_says_what_it_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer("down")
    sink = sink_for(peer, flush_timeout=5, backoff=1)
    elapsed: list[float] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(sink.serve, None)
                for i in range(7):
                    sink(Event(metric=i))
                await trio.sleep(30)
                started = trio.current_time()
                scope.cancel()
        elapsed.append(trio.current_time() - started)

    with caplog.at_level(logging.ERROR, "rillet.delivery"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 5 <= elapsed[0] <= 6
    assert sink.statistics()["dropped"] == 7 and sink.statistics()["queued"] == 0
    [message] = [r.getMessage() for r in caplog.records]
    assert "dropped 7 undelivered events after trying for 5 s" in message
    assert "ConnectionRefusedError" in message


def test_a_sink_in_a_config_is_started_with_the_server() -> None:
    """Events sent to a running rillet reach the peer; the client never waits for the sink."""
    peer = Peer("slow")
    with declaring(Config()) as declared:
        sink = recording(peer, timeout=3600)
    config = Config(streams=[sink], services=[TcpServer(port=0), *declared.services])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(functools.partial(serve, config))
            assert repr(sink) in running.statistics()
            with trio.fail_after(10):
                async with await TrioClient.connect("127.0.0.1", running.ports[0]) as client:
                    for i in range(5):  # acknowledged although the peer hangs
                        await client.send(Event(service="s", metric=i))
                peer.mode = "up"
                await sink.disconnect()
                nursery.cancel_scope.cancel()

    trio.run(main)
    # the hung attempt was cancelled at shutdown; the flush delivered everything
    assert [e.metric for e in peer.received] == list(range(5))


# HttpSink: status codes decide between retrying and giving up --------------------


class posting(HttpSink):
    __slots__ = ()

    async def send_batch(self, batch: list[Any]) -> None:
        await self.post(json=[e.metric for e in batch])


def test_http_sink_retries_5xx_and_gives_up_on_4xx() -> None:
    answers = [503, 200, 400, 200]
    bodies: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            bodies.append((self.headers["X-Token"], json.loads(self.rfile.read(length))))
            self.send_response(answers.pop(0))
            self.end_headers()
            self.wfile.write(b"answer")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with declaring(Config()):
            sink = posting(f"http://127.0.0.1:{server.server_port}/in",
                           headers={"X-Token": "t"}, backoff=0.01)

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(sink.serve, None)
                sink(Event(metric=1))
                await poll_until(lambda: sink.sent == 1, 10)
                sink(Event(metric=2))
                await poll_until(lambda: sink.failed == 1, 10)
                sink(Event(metric=3))
                await poll_until(lambda: sink.sent == 2, 10)
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        server.shutdown()
        server.server_close()
    assert bodies == [("t", [1]), ("t", [1]), ("t", [2]), ("t", [3])]
    stats = sink.statistics()
    assert (stats["retries"], stats["failed"], stats["sent"]) == (1, 1, 2)
    assert stats["last_error"].startswith("rejected: HTTP 400 from http://127.0.0.1:")


def test_http_sink_needs_an_http_url() -> None:
    with pytest.raises(ValueError, match=r"posting\(url='127.0.0.1:80'\): the url must start"), \
            declaring(Config()):
        posting("127.0.0.1:80")
