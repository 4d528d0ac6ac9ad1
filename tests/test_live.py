"""WebSocket and SSE subscriptions, pub/sub channels, the HTTP JSON input and tokens.

Real sockets on 127.0.0.1: trio-websocket as the WebSocket client, raw TCP
for SSE and HTTP (a plain streaming read, as curl would do), and Debian's
riemann-client to send the events.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest
import trio
from _helpers import run_serving
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from streams import Config, Event, publish
from streams._index import Index
from transport import Running, SseServer, TcpServer, TrioClient, WsServer, sse_server, ws_server
from transport._http import Tokens

pytestmark = pytest.mark.network


def with_server(body: Callable[[Running], Awaitable[None]], *, streams: list[Any] | None = None,
                ws: WsServer | None = None, sse: SseServer | None = None) -> Running:
    """Run rillet (TCP, WebSocket, SSE on port 0) around ``body``; ports are [tcp, ws, sse]."""
    index = Index()
    config = Config(streams=[index] if streams is None else streams,
                    services=[TcpServer(port=0), ws or WsServer(port=0),
                              sse or SseServer(port=0)])
    return run_serving(config, index, body)  # type: ignore[no-any-return]


async def send_events(port: int, events: list[Event]) -> None:
    async with TrioClient("127.0.0.1", port) as client:
        await client.send(*events)


@contextlib.asynccontextmanager
async def websocket(url: str, **options: Any) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket's client, minus its leak: when the server closes first, it leaves
    the TCP stream open (its reader stops on EOF without closing it)."""
    async with open_websocket_url(url, **options) as socket:
        try:
            yield socket
        finally:
            stream = socket._stream
    await trio.aclose_forcefully(stream)


class SseReader:
    """A plain streaming HTTP GET, read as bytes: what ``curl -N`` would show."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = b""

    @classmethod
    async def open(cls, port: int, target: str, headers: str = "") -> SseReader:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
                              .encode())
        return cls(stream)

    async def until(self, needle: bytes) -> bytes:
        while needle not in self.received:
            data = await self.stream.receive_some(65536)
            assert data, f"the server closed the stream; received {self.received!r}"
            self.received += data
        return self.received

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line[len(b"data: "):]) for line in self.received.split(b"\n")
                if line.startswith(b"data: ")]


async def http(port: int, request: bytes) -> tuple[int, bytes]:
    """One raw HTTP exchange with Connection: close; the status and the body."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request)
        received = b""
        while data := await stream.receive_some(65536):
            received += data
            head, _, body = received.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


UPGRADE = (b"GET TARGET HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


# Subscriptions ----------------------------------------------------------------------


@pytest.mark.usefixtures("riemann_client")
def test_websocket_and_sse_both_receive_an_event_sent_afterwards_with_riemann_client() -> None:
    async def body(running: Running) -> None:
        tcp, ws, sse = running.ports
        query = quote('service = "api latency"')
        async with websocket(
                f"ws://127.0.0.1:{ws}/index?subscribe=true&query={query}") as socket:
            reader = await SseReader.open(sse, f"/index?query={query}")
            await reader.until(b"\r\n\r\n")  # subscribed: the headers came
            assert reader.received.startswith(b"HTTP/1.1 200")
            assert b"content-type: text/event-stream" in reader.received.lower()
            client = shutil.which("riemann-client")
            assert client is not None
            await trio.run_process([client, "send", "-h", "web1", "-S", "api latency",
                                    "-s", "warning", "-i", "250", "-t", "prod",
                                    "127.0.0.1", str(tcp)])
            got = json.loads(await socket.get_message())
            await reader.until(b"api latency")
            await reader.stream.aclose()
        assert got["host"] == "web1" and got["service"] == "api latency"
        assert got["state"] == "warning" and got["metric"] == 250 and got["tags"] == ["prod"]
        assert got["time"].endswith("Z") and set(got) >= {"description", "ttl"}
        assert reader.events() == [got]

    with_server(body)


def test_index_without_subscribe_sends_current_matches_then_closes() -> None:
    async def body(running: Running) -> None:
        tcp, ws, _ = running.ports
        await send_events(tcp, [Event(host="a", service="cpu", metric=1, time=10),
                                Event(host="b", service="cpu", metric=2, time=10),
                                Event(host="c", service="disk", metric=3, time=10)])
        async with websocket(
                f"ws://127.0.0.1:{ws}/index?query=service+%3D+%22cpu%22") as socket:
            first = json.loads(await socket.get_message())
            second = json.loads(await socket.get_message())
            with pytest.raises(ConnectionClosed) as closed:
                await socket.get_message()
        assert {first["host"], second["host"]} == {"a", "b"}
        assert closed.value.reason.code == 1000

        async with websocket(
                f"ws://127.0.0.1:{ws}/index?subscribe=true&query=service+%3D+%22cpu%22") as live:
            current = {json.loads(await live.get_message())["host"] for _ in range(2)}
            await send_events(tcp, [Event(host="c", service="disk", metric=4, time=11),
                                    Event(host="d", service="cpu", metric=5, time=11)])
            later = json.loads(await live.get_message())
        assert current == {"a", "b"} and later["host"] == "d"

    with_server(body)


def test_expired_events_reach_subscribers_as_tombstones() -> None:
    async def body(running: Running) -> None:
        tcp, ws, _ = running.ports
        async with websocket(f"ws://127.0.0.1:{ws}/index?subscribe=true&query=true"
                                      ) as socket:
            await send_events(tcp, [Event(host="a", service="s", state="ok", time=1)])
            running.index(Event(host="a", service="s", state="expired", time=2))
            states = [json.loads(await socket.get_message())["state"] for _ in range(2)]
        assert states == ["ok", "expired"]

    with_server(body)


def test_pubsub_channel_from_a_config_stream_filtered_by_query() -> None:
    index = Index()

    async def body(running: Running) -> None:
        tcp, ws, _ = running.ports
        async with websocket(
                f"ws://127.0.0.1:{ws}/pubsub/alerts/?query=state+%3D+%22critical%22") as socket:
            await send_events(tcp, [Event(host="a", service="disk", state="ok", time=1),
                                    Event(host="a", service="disk", state="critical", time=2)])
            got = json.loads(await socket.get_message())
        assert got["state"] == "critical" and got["time"] == "1970-01-01T00:00:02.000Z"

    with_server(body, streams=[publish("alerts"), index])


def test_bad_or_missing_query_closes_the_websocket_with_the_reason() -> None:
    async def body(running: Running) -> None:
        _, ws, sse = running.ports
        for target, expected in [("/index?subscribe=true&query=oh+no+not+again", "no"),
                                 ("/index?subscribe=true", "query parameter is required"),
                                 ("/nowhere?query=true", "no such path")]:
            async with websocket(f"ws://127.0.0.1:{ws}{target}") as socket:
                with pytest.raises(ConnectionClosed) as closed:
                    await socket.get_message()
            assert closed.value.reason.code == 1008
            assert expected in (closed.value.reason.reason or "")
        status, reply = await http(sse, b"GET /index?query=%28 HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
        assert status == 400 and b"error" in reply
        status, _ = await http(sse, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404

    with_server(body)


def test_a_stuck_subscriber_is_dropped_and_never_slows_ingest(
        caplog: pytest.LogCaptureFixture) -> None:
    """One subscriber never reads; ingest goes on, a reading one gets everything."""
    total = 20_000

    async def body(running: Running) -> None:
        tcp, ws, _ = running.ports
        wsserver = running.services[1]
        # A raw WebSocket handshake, then never a read: the kernel buffers fill up.
        stuck = await trio.open_tcp_stream("127.0.0.1", ws)
        await stuck.send_all(UPGRADE.replace(b"TARGET", b"/index?subscribe=true&query=true"))
        async with websocket(f"ws://127.0.0.1:{ws}/index?subscribe=true&query=true",
                                      max_message_size=1 << 20) as reader:
            while wsserver.statistics()["subscribers"] < 2:
                await trio.sleep(0.01)
            received = 0

            async def read_all() -> None:
                nonlocal received
                while received < total:
                    await reader.get_message()
                    received += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                padding = "x" * 200
                async with TrioClient("127.0.0.1", tcp) as client:
                    for start in range(0, total, 500):
                        await client.send(*[Event(host="h", service=f"s{i}", time=1,
                                                  description=padding)
                                            for i in range(start, start + 500)])
                        # The reading subscriber parses frames in Python, slower than the
                        # server indexes; it is let catch up so that only the stuck one lags.
                        while received < start - 1_000:
                            await trio.sleep(0.001)
            assert received == total
        assert running.index.statistics().size == total
        stats = wsserver.statistics()
        assert stats["dropped_subscribers"] == 1
        await stuck.aclose()

    with caplog.at_level(logging.WARNING, logger="rillet.live"):
        with_server(body, ws=WsServer(port=0, max_behind=2_000))
    assert any("events behind" in r.getMessage() and "max_behind=2000" in r.getMessage()
               for r in caplog.records)


# The HTTP JSON input ----------------------------------------------------------------


def test_http_input_takes_one_event_a_list_or_lines_and_counts_them() -> None:
    async def body(running: Running) -> None:
        _, ws, _ = running.ports
        status, reply = await http(ws, post("/events", b'{"host":"a","service":"one",'
                                                       b'"metric":1.5,"tags":["x"],"env":"p"}'))
        assert (status, json.loads(reply)) == (200, {"ok": True, "count": 1})
        status, reply = await http(ws, post("/events", json.dumps([
            {"host": "b", "service": "two", "time": "2013-04-15T18:06:58-07:00"},
            {"host": "b", "service": "three", "time": 1700000000.5}]).encode()))
        assert (status, json.loads(reply)["count"]) == (200, 2)
        status, reply = await http(ws, post("/events/", b'{"host":"c","service":"4"}\r\n'
                                                        b'{"host":"c","service":"5"}\n'))
        assert (status, json.loads(reply)["count"]) == (200, 2)
        one = running.index.lookup("a", "one")
        assert one is not None and one.metric == 1.5 and one.tags == ("x",)
        assert one.get("env") == "p"
        two = running.index.lookup("b", "two")
        assert two is not None and two.time == 1366074418
        three = running.index.lookup("b", "three")
        assert three is not None and three.time == 1700000000.5
        assert len(running.index) == 5

    with_server(body)


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"host":"a"', "event 0: bad JSON"),
    (b'[{"service":"ok"},{"service":"x","metric":"high"}]', 'event 1: field "metric"'),
    (b'[{"service":"ok"},{"service":"ok"},{"tags":"prod"}]', 'event 2: field "tags"'),
    (b'{"time":"xkcd"}', 'field "time": Invalid format'),
    (b'{"host":5}', 'event 0: field "host" must be a string'),
    (b'{"a":1}\n{"b":\n', "event 1: bad JSON"),
    (b'[1]', "event 0: must be a JSON object"),
    (b'\xff\xfe', "not UTF-8"),
])
def test_http_input_rejects_bad_bodies_naming_field_and_index(body: bytes,
                                                              expected: str) -> None:
    async def run(running: Running) -> None:
        _, ws, _ = running.ports
        status, reply = await http(ws, post("/events", body))
        assert status == 400
        assert expected in json.loads(reply)["error"]
        assert len(running.index) == 0  # all or nothing

    with_server(run)


def test_http_input_size_limit_and_paths() -> None:
    async def body(running: Running) -> None:
        _, ws, _ = running.ports
        big = json.dumps([{"service": "s" * 100}] * 20).encode()
        status, reply = await http(ws, post("/events", big))
        assert status == 413 and b"max_body=1000" in reply
        status, _ = await http(ws, b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")
        assert status == 404
        status, _ = await http(ws, b"GET /index?query=true HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")
        assert status == 426
        status, _ = await http(ws, b"BROKEN\r\n\r\n")
        assert status == 400
        assert len(running.index) == 0

    with_server(body, ws=WsServer(port=0, max_body=1000))


def test_websocket_events_input_replies_per_message() -> None:
    async def body(running: Running) -> None:
        _, ws, _ = running.ports
        async with websocket(f"ws://127.0.0.1:{ws}/events") as socket:
            await socket.send_message('{"host":"w","service":"ws","metric":3}')
            assert await socket.get_message() == "{}"
            await socket.send_message('{"metric":[1]}')
            assert "metric" in json.loads(await socket.get_message())["error"]
        stored = running.index.lookup("w", "ws")
        assert stored is not None and stored.metric == 3

    with_server(body)


# Tokens -----------------------------------------------------------------------------


def test_tokens_are_required_and_limit_what_each_subscriber_sees() -> None:
    tokens = {"all-secret": "true", "web-secret": 'host = "web1"'}

    async def body(running: Running) -> None:
        tcp, ws, sse = running.ports
        for token in ("", "&token=nope"):
            status, reply = await http(ws, UPGRADE.replace(b"TARGET", f"/index?query=true{token}"
                                                                      .encode()))
            assert status == 401 and b"a token is required" in reply
        status, _ = await http(ws, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 401
        status, page = await http(ws, b"GET /?token=web-secret HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
        assert status == 200 and b"<script>" in page
        status, _ = await http(ws, post("/events", b'{"host":"x"}'))
        assert status == 401
        status, _ = await http(ws, post("/events", b'{"host":"x","service":"in"}',
                                        "Authorization: Bearer all-secret\r\n"))
        assert status == 200
        status, _ = await http(sse, b"GET /index?query=true HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 401

        url = f"ws://127.0.0.1:{ws}/index?subscribe=true&query=true&token="
        async with websocket(url + "web-secret") as web_only, \
                websocket(url + "all-secret") as everything:
            reader = await SseReader.open(sse, "/index?query=true",
                                          "Authorization: Bearer web-secret\r\n")
            await reader.until(b"\r\n\r\n")
            await send_events(tcp, [Event(host="db1", service="s", time=1),
                                    Event(host="web1", service="s", time=2)])
            assert json.loads(await everything.get_message())["host"] == "x"  # the snapshot
            hosts = [json.loads(await everything.get_message())["host"] for _ in range(2)]
            seen = json.loads(await web_only.get_message())
            await reader.until(b"web1")
            await reader.stream.aclose()
        assert hosts == ["db1", "web1"] and seen["host"] == "web1"
        assert [e["host"] for e in reader.events()] == ["web1"]
        assert running.services[1].statistics()["unauthorized"] == 4

    with_server(body, ws=WsServer(port=0, tokens=tokens),  # type: ignore[arg-type]
                sse=SseServer(port=0, tokens=Tokens(tuple(tokens.items()))))


def test_listening_beyond_loopback_without_tokens_fails_at_load() -> None:
    with pytest.raises(ValueError, match=r"ws_server\(host='0.0.0.0'\): listening beyond "
                                         r"loopback needs tokens"):
        ws_server(host="0.0.0.0")
    with pytest.raises(ValueError, match="bad query for a token"):
        sse_server(tokens={"t": "host = "})
    with pytest.raises(ValueError, match="max_behind"):
        ws_server(max_behind=0)


def test_the_index_feeds_its_channel_only_while_someone_listens() -> None:
    async def body(running: Running) -> None:
        _, ws, _ = running.ports
        assert running.index.statistics().subscribers == 0
        async with websocket(f"ws://127.0.0.1:{ws}/index?subscribe=true&query=true") as socket:
            while running.index.statistics().subscribers == 0:
                await trio.sleep(0.005)
            running.index(Event(host="a", time=1))
            assert json.loads(await socket.get_message())["host"] == "a"
        while running.index.statistics().subscribers:
            await trio.sleep(0.005)

    with_server(body)


def test_http_input_byte_by_byte_chunked_and_keep_alive() -> None:
    async def body(running: Running) -> None:
        _, ws, _ = running.ports
        chunked = (b"POST /events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"e\r\n{\"service\":\"a\"\r\n1\r\n}\r\n0\r\n\r\n")
        second = post("/events", b'{"service":"b"}')
        async with await trio.open_tcp_stream("127.0.0.1", ws) as stream:
            for byte in chunked:
                await stream.send_all(bytes([byte]))
            received = b""
            while b'"count": 1' not in received:
                received += await stream.receive_some(4096)
            await stream.send_all(second)  # the same connection, kept alive
            while received.count(b'"count": 1') < 2:
                data = await stream.receive_some(4096)
                assert data
                received += data
        assert received.startswith(b"HTTP/1.1 200")
        assert {e.service for e in running.index} == {"a", "b"}

    with_server(body)


def test_sse_headers_option_adds_or_overrides_response_headers() -> None:
    async def body(running: Running) -> None:
        _, _, sse = running.ports
        reader = await SseReader.open(sse, "/index?query=true")
        head = (await reader.until(b"\r\n\r\n")).lower()
        await reader.stream.aclose()
        assert b"access-control-allow-origin: *" in head
        assert b"cache-control: no-store" in head and b"no-cache" not in head

    with_server(body, sse=SseServer(port=0, headers={"Access-Control-Allow-Origin": "*",
                                                     "Cache-Control": "no-store"}))


def test_a_reload_keeps_subscribers_unless_their_server_changed(tmp_path: Any) -> None:
    """Riemann keeps WS/SSE subscriptions across reloads; rillet too, and a server whose
    settings changed (tokens, max_behind) restarts with them."""
    from streams import Runtime
    from transport import TrioScheduler, serve

    path = tmp_path / "monitoring.py"
    head = "from streams import *\nfrom transport import tcp_server, ws_server\n" \
           "tcp_server(port=0)\n"
    path.write_text(head + "ws_server(port=0)\nstreams(index)\n")

    async def main() -> None:
        runtime = Runtime(TrioScheduler())
        config = runtime.load(path)
        with trio.fail_after(30):
            await run(runtime, config)

    async def run(runtime: Runtime, config: Any) -> None:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(serve, config, runtime=runtime))
            tcp, ws = running.ports
            url = f"ws://127.0.0.1:{ws}/index?subscribe=true&query=true"
            async with websocket(url) as socket:
                path.write_text(head + "ws_server(port=0)\nstreams(index)  # edited\n")
                assert await running.reload()
                await send_events(tcp, [Event(host="after", service="reload", time=1)])
                assert json.loads(await socket.get_message())["host"] == "after"
                path.write_text(head + "ws_server(port=0, max_behind=500)\nstreams(index)\n")
                assert await running.reload()
                with pytest.raises(ConnectionClosed):
                    await socket.get_message()
            nursery.cancel_scope.cancel()

    trio.run(main)
