"""The TCP server's limits (issue 10): connections, idle time, partial-frame memory, events per
message, and running out of file descriptors."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import start_rillet
from test_server import is_closed, read_reply, request, still_serves, with_server

from streams import Event, Index
from transport import Running, tcp_server
from transport._codec import encode_request

pytestmark = pytest.mark.network


def with_limits(body: Callable[[Running], Awaitable[None]], **limits: Any) -> Index:
    return with_server(body, **limits)


PING = encode_request([Event(host="p", service="p", time=1)])


def test_at_max_connections_accept_waits_until_one_closes(
        caplog: pytest.LogCaptureFixture) -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        first = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
        for stream in first:
            await stream.send_all(PING)
            assert (await read_reply(stream)).ok
        waiting = await trio.open_tcp_stream("127.0.0.1", port)  # in the kernel's backlog
        await waiting.send_all(PING)
        with trio.move_on_after(0.3) as early:
            await read_reply(waiting)
        assert early.cancelled_caught, "served past max_connections=3"
        await first[0].aclose()
        assert (await read_reply(waiting)).ok
        for stream in [*first[1:], waiting]:
            await stream.aclose()

    with caplog.at_level(logging.WARNING, logger="rillet.server"):
        with_limits(body, max_connections=3)
    assert len([r for r in caplog.records if "max_connections=3" in r.getMessage()]) == 1


def test_a_silent_connection_is_closed_after_idle_timeout() -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        async with await trio.open_tcp_stream("127.0.0.1", port) as silent:
            started = trio.current_time()
            assert await is_closed(silent)
            assert 0.25 < trio.current_time() - started < 3
        assert running.services[0].statistics()["idle_closed"] == 1
        await still_serves(port)

    with_limits(body, idle_timeout=0.3)


def test_partial_frames_beyond_max_buffered_close_the_connection_that_grows_them() -> None:
    # Before: 10 connections x 60 MiB partial frames took RSS from 31 to 633 MB.
    big = encode_request([Event(service="x" * 600_000, time=1)])

    async def body(running: Running) -> None:
        port = running.ports[0]
        async with await trio.open_tcp_stream("127.0.0.1", port) as first, \
                await trio.open_tcp_stream("127.0.0.1", port) as second:
            await first.send_all(big[:-10])
            with trio.fail_after(5):
                while running.services[0].statistics()["buffered"] < 500_000:
                    await trio.sleep(0.01)
            # Closed while it still sends, or with the frame unread: the
            # kernel may reset it instead of a clean end of stream.
            with trio.fail_after(5), contextlib.suppress(trio.BrokenResourceError):
                await second.send_all(big[:-10])
                assert await second.receive_some(10) == b""
            await first.send_all(big[-10:])
            assert (await read_reply(first)).ok
        assert running.services[0].statistics()["buffered"] == 0

    with_limits(body, max_buffered=1_000_000)


@pytest.mark.parametrize("events", [11, 5000])  # decoded whole, and cut into pieces
def test_a_message_with_more_than_max_events_is_refused_whole(events: int) -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        reply = await request(port, encode_request(
            [Event(host=str(n), service="many", time=1) for n in range(events)]))
        assert not reply.ok
        assert f"has {events} events, more than max_events=10" in reply.error
        assert running.index.search('service = "many"') == []
        assert (await request(port, encode_request([Event(service="few", time=1)]))).ok

    with_limits(body, max_events=10)


@pytest.mark.parametrize(("argument", "value"), [
    ("max_connections", 0), ("idle_timeout", -1.0), ("max_buffered", 1.5), ("max_events", True),
])
def test_limits_are_checked_when_the_config_loads(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"tcp_server\({argument}={value!r}\): {argument} must"):
        tcp_server(port=0, **{argument: value})


CONFIG = """
from streams import *
from transport import tcp_server

tcp_server(port=0)
streams(index)
"""


def test_out_of_file_descriptors_accept_pauses_with_one_log_line(tmp_path: Path) -> None:
    # Before: trio logged an EMFILE traceback 10 times a second and new clients hung.
    import resource

    config = tmp_path / "monitoring.py"
    config.write_text(CONFIG)

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    process, port, _ = start_rillet(config, preexec_fn=few_descriptors)
    clients: list[socket.socket] = []
    try:
        for _ in range(60):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(1.0)  # the server keeps retrying accept meanwhile; nothing to poll for
        for client in clients[:30]:
            client.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as late:
            late.sendall(PING)
            assert late.recv(100)
    finally:
        for client in clients:
            client.close()
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert err.count("cannot accept a TCP connection") == 1
    assert "Traceback" not in err


def test_datagrams_the_kernel_drops_are_counted() -> None:
    # Before: 87 % of a flood was lost in the kernel and nothing said so.
    from test_server import with_server

    async def body(running: Running) -> None:
        udp_port = running.ports[1]
        datagram = encode_request([Event(service="flood", time=1)], framed=False)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.connect(("127.0.0.1", udp_port))
            for _ in range(5000):  # the loop is not running: the socket's buffer overflows
                sender.send(datagram)
            udp = running.services[1]
            with trio.fail_after(5):
                # The count comes with the next datagram queued after the drops.
                while udp.statistics()["kernel_dropped"] == 0:
                    sender.send(datagram)
                    await trio.sleep(0.01)
        stats = udp.statistics()
        assert stats["datagrams"] + stats["kernel_dropped"] >= 5000

    with_server(body)
