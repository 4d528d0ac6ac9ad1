"""rillet's clients and CLI against the real server on 127.0.0.1 (and Debian's riemann-client).

Trio tests start the server in their own trio run; the blocking client, the
CLI and riemann-client talk to a server running in a background thread.
Every server listens on port 0 unless a test restarts one on the same port.
"""

from __future__ import annotations

import functools
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from streams._config import Config
from streams._event import Event
from streams._index import Index
from transport import (
    Client,
    RiemannConnectionError,
    RiemannError,
    RiemannTimeout,
    TrioClient,
    UdpClient,
)
from transport._cli_client import main as cli
from transport._run import Running, serve
from transport._server import TcpServer, UdpServer

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parent.parent
RIEMANN_CLIENT = shutil.which("riemann-client")
# Fails under CI, skips elsewhere, when riemann-c-client is missing (tests/conftest.py).
needs_riemann_client = pytest.mark.usefixtures("riemann_client")

# Every field, with an integer and with a float metric; the float is exact
# in float32 too, so every precedence rule reads it back unchanged.
FULL_INT = Event(host="web1", service="cpu", state="warning", description="load is high",
                 metric=42, tags=("prod", "eu"), time=1714564800.25, ttl=30.0,
                 attributes={"env": "prod", "rack": "r7"})
FULL_FLOAT = Event(host="web2", service="latency", state="ok", description="p99",
                   metric=0.125, tags=("canary",), time=1714564801, ttl=12.5,
                   attributes={"region": "eu-west"})
BASE = ("host", "service", "state", "description", "metric", "tags", "time", "ttl")


def fields(event: Event) -> dict[str, Any]:
    out = {name: getattr(event, name) for name in BASE}
    out["attributes"] = dict(event.attributes)
    return out


def fails_on_bad(event: Event) -> None:
    """A stream that rejects one service, so the server answers ok=false."""
    if event.service == "bad":
        raise ValueError(f"refusing {event.host}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def by_service(events: list[Event]) -> dict[str | None, Event]:
    return {event.service: event for event in events}


# A server inside a trio test ---------------------------------------------------


@asynccontextmanager
async def trio_server(index: Index | None = None, *, tcp_port: int = 0,
                      streams: list[Any] | None = None) -> AsyncIterator[Running]:
    index = index if index is not None else Index()
    config = Config(streams=[index] if streams is None else [index, *streams],
                    services=[TcpServer(port=tcp_port), UdpServer(port=0)])
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(functools.partial(serve, config, index=index))
        yield running
        nursery.cancel_scope.cancel()


def run_trio(body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        with trio.fail_after(60):
            await body()

    trio.run(main)


# A server in a background thread -------------------------------------------------


class ServerThread:
    """rillet in a thread of its own, for the blocking client, the CLI and riemann-client."""

    def __init__(self, tcp_port: int = 0, streams: list[Any] | None = None) -> None:
        self.index = Index()
        self._config = Config(streams=[self.index, *(streams or [])],
                              services=[TcpServer(port=tcp_port), UdpServer(port=0)])
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.running: Running | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the server did not start within 10 s"
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self.running = await nursery.start(
                    functools.partial(serve, self._config, index=self.index))
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as error:
            self._error = error
        finally:
            self._ready.set()

    @property
    def tcp_port(self) -> int:
        assert self.running is not None
        return self.running.ports[0]

    @property
    def udp_port(self) -> int:
        assert self.running is not None
        return self.running.ports[1]

    def stop(self) -> None:
        if self._thread.is_alive():
            assert self._scope is not None
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
            self._thread.join(10)
        if self._error is not None:
            raise self._error


@pytest.fixture
def server() -> Iterator[ServerThread]:
    running = ServerThread(streams=[fails_on_bad])
    try:
        yield running
    finally:
        running.stop()


# TrioClient --------------------------------------------------------------------


def test_trio_round_trip_of_every_field() -> None:
    async def body() -> None:
        async with trio_server() as running, \
                await TrioClient.connect(port=running.ports[0]) as client:
            before = time.time()
            await client.send(FULL_INT, FULL_FLOAT)
            await client.send([Event(host="web3", service="untimed", metric=-7)])
            found = by_service(await client.query("true"))
        assert fields(found["cpu"]) == fields(FULL_INT)
        assert type(found["cpu"].metric) is int
        assert fields(found["latency"]) == fields(FULL_FLOAT)
        assert type(found["latency"].metric) is float
        untimed = found["untimed"]
        assert untimed.metric == -7 and untimed.ttl is None and untimed.tags == ()
        # Sent without a time, so the server stamped its receive time.
        assert untimed.time is not None and before - 1 <= untimed.time <= time.time() + 1

    run_trio(body)


def test_trio_bad_query_raises_the_servers_message() -> None:
    async def body() -> None:
        async with trio_server() as running, TrioClient(port=running.ports[0]) as client:
            with pytest.raises(RiemannError, match="mismatched input 'no'") as caught:
                await client.query("oh no not again")
            assert "expecting" in caught.value.message
            # The connection stays in step: the next request gets its own reply.
            assert await client.query("true") == []
            assert client.statistics()["connects"] == 1

    run_trio(body)


def test_trio_stream_failure_raises_and_the_client_goes_on() -> None:
    async def body() -> None:
        async with trio_server(streams=[fails_on_bad]) as running, \
                TrioClient(port=running.ports[0]) as client:
            with pytest.raises(RiemannError, match="refusing h1"):
                await client.send(Event(host="h1", service="bad", time=1))
            await client.send(Event(host="h1", service="good", time=1))

    run_trio(body)


def test_trio_concurrent_requests_are_pipelined_and_matched_in_order() -> None:
    count = 1000

    async def body() -> None:
        index = Index()
        async with trio_server(index) as running, TrioClient(port=running.ports[0]) as client:
            assert await client.send_many(
                [Event(host="h", service=f"s{i}", metric=i, time=1)] for i in range(count)
            ) == count
            assert len(index) == count
            # A thousand tasks query at once on one connection: each must get
            # the reply to its own query, not its neighbour's.
            results: dict[int, list[Event]] = {}
            peak = 0

            async def ask(i: int) -> None:
                results[i] = await client.query(f'service = "s{i}"')

            async def watch() -> None:
                nonlocal peak
                while len(results) < count:
                    peak = max(peak, client.statistics()["outstanding"])
                    await trio.sleep(0)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                for i in range(count):
                    nursery.start_soon(ask, i)
            assert peak > 100, "the queries went one round trip at a time"
            assert all([e.metric for e in results[i]] == [i] for i in range(count))
            pipelined = await client.query_many(f'metric = {i}' for i in range(count))
            assert [[e.service for e in found] for found in pipelined] == \
                [[f"s{i}"] for i in range(count)]
            assert client.statistics()["connects"] == 1

    run_trio(body)


def test_trio_send_many_reports_failures_after_every_ack() -> None:
    async def body() -> None:
        index = Index()
        async with trio_server(index, streams=[fails_on_bad]) as running, \
                TrioClient(port=running.ports[0]) as client:
            batches = [[Event(host=f"h{i}", service="bad" if i in (3, 7) else "ok", time=1)]
                       for i in range(10)]
            with pytest.raises(RiemannError, match=r"2 of 10 pipelined requests failed; the "
                                                   r"first \(#3\) with: refusing h3"):
                await client.send_many(batches, window=4)
            # Every request was processed and acknowledged; the connection is in step.
            assert len(index.search('service = "ok"')) == 8
            assert await client.query('host = "h9"') != []

    run_trio(body)


def test_trio_batcher_sends_full_batches_and_the_rest_on_exit() -> None:
    async def body() -> None:
        index = Index()
        async with trio_server(index) as running, TrioClient(port=running.ports[0]) as client:
            async with client.batch(max_events=10, max_delay=30) as batch:
                for i in range(95):
                    await batch.add(Event(host="h", service=f"s{i}", time=1))
                # Nine full batches went out at once; five events wait for the delay.
                assert batch.statistics()["buffered"] == 5
            assert batch.statistics() == {"buffered": 0, "outstanding": 0, "sent": 95,
                                          "failed": 0, "batches": 10}
            assert len(index) == 95

    run_trio(body)


def test_trio_batcher_sends_after_max_delay() -> None:
    async def body() -> None:
        index = Index()
        async with trio_server(index) as running, TrioClient(port=running.ports[0]) as client, \
                client.batch(max_events=100, max_delay=0.05) as batch:
            await batch.add(Event(host="h", service="a", time=1),
                            Event(host="h", service="b", time=1))
            with trio.fail_after(5):
                while batch.sent < 2:
                    await trio.sleep(0.01)
            assert len(index) == 2
            await batch.add(Event(host="h", service="c", time=1))
            await batch.flush()
            assert len(index) == 3 and batch.batches == 2

    run_trio(body)


def test_trio_batcher_raises_a_failed_batch_once() -> None:
    async def body() -> None:
        async with trio_server(streams=[fails_on_bad]) as running, \
                TrioClient(port=running.ports[0]) as client:
            async with client.batch(max_events=2, max_delay=30) as batch:
                await batch.add(Event(host="x", service="bad", time=1),
                                Event(host="y", service="ok", time=1))
                with pytest.raises(RiemannError, match="a batch of 2 events was not accepted: "
                                                       "refusing x"):
                    await batch.flush()
                await batch.add(Event(host="z", service="ok", time=1))
            assert (batch.sent, batch.failed) == (1, 2)

    run_trio(body)


def test_trio_client_reconnects_after_the_server_restarts() -> None:
    async def body() -> None:
        async with trio_server() as running:
            port = running.ports[0]
            client = TrioClient(port=port, connect_attempts=2, backoff=0.01)
            await client.send(Event(host="h", service="before", time=1))
        # Down: the call fails, after retrying, with an error that says why.
        with pytest.raises(RiemannConnectionError, match=rf"cannot connect to Riemann at "
                                                         rf"127.0.0.1:{port} \(2 attempts"):
            await client.send(Event(host="h", service="down", time=1))
        async with trio_server(tcp_port=port):
            await client.send(Event(host="h", service="after", time=1))
            assert [e.service for e in await client.query("true")] == ["after"]
        # Restarted while the client was idle: noticed before sending, no error.
        async with trio_server(tcp_port=port):
            await client.send(Event(host="h", service="again", time=1))
            assert [e.service for e in await client.query("true")] == ["again"]
        assert client.statistics()["connects"] == 3
        await client.aclose()

    run_trio(body)


def test_trio_client_times_out_on_a_silent_server_and_then_reconnects() -> None:
    async def body() -> None:
        accepted: list[trio.SocketStream] = []

        async def swallow(stream: trio.SocketStream) -> None:
            accepted.append(stream)
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, swallow, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            client = TrioClient(port=port, timeout=0.2)
            with pytest.raises(RiemannTimeout, match=r"no reply from .* within 0\.2 s"):
                await client.send(Event(service="x"))
            assert not client.connected
            with pytest.raises(RiemannTimeout):
                await client.query("true")
            assert len(accepted) == 2
            nursery.cancel_scope.cancel()

    run_trio(body)


def test_trio_connect_to_a_closed_port_fails_clearly() -> None:
    async def body() -> None:
        port = free_port()
        with pytest.raises(RiemannConnectionError,
                           match=r"\(1 attempt over .*\); is the server running"):
            await TrioClient.connect(port=port, connect_attempts=1)

    run_trio(body)


def test_trio_closed_client_refuses_calls() -> None:
    async def body() -> None:
        async with trio_server() as running:
            async with TrioClient(port=running.ports[0]) as client:
                await client.send(Event(service="x", time=1))
            with pytest.raises(RiemannConnectionError, match="is closed; create a new client"):
                await client.send(Event(service="x", time=1))

    run_trio(body)


# Blocking Client ---------------------------------------------------------------


def test_sync_round_trip_of_every_field(server: ServerThread) -> None:
    with Client.connect(port=server.tcp_port) as client:
        client.send(FULL_INT)
        client.send([FULL_FLOAT])
        found = by_service(client.query('host =~ "web%"'))
    assert fields(found["cpu"]) == fields(FULL_INT)
    assert fields(found["latency"]) == fields(FULL_FLOAT)
    assert type(found["cpu"].metric) is int and type(found["latency"].metric) is float


def test_sync_pipeline_of_1000_requests_and_fifo_queries(server: ServerThread) -> None:
    count = 1000
    with Client(port=server.tcp_port) as client:
        sent = client.pipeline((Event(host="p", service=f"s{i}", metric=i, time=1)
                                for i in range(count)), batch_size=1)
        assert sent == count and client.statistics()["requests"] == count
        assert len(server.index) == count
        results = client.query_many((f'service = "s{i}"' for i in range(count)), window=64)
        assert [[e.metric for e in found] for found in results] == [[i] for i in range(count)]
        # Batches of 100: ten requests carry 1000 events.
        assert client.pipeline((Event(host="q", service=f"s{i}", time=1)
                                for i in range(count)), batch_size=100) == count
        assert client.statistics()["requests"] == 2 * count + 10
        assert client.statistics()["connects"] == 1


def test_sync_stream_failure_and_bad_query(server: ServerThread) -> None:
    with Client(port=server.tcp_port) as client:
        with pytest.raises(RiemannError, match="refusing h1"):
            client.send(Event(host="h1", service="bad", time=1))
        with pytest.raises(RiemannError, match="mismatched input 'no'"):
            client.query("oh no not again")
        with pytest.raises(RiemannError, match=r"1 of 3 pipelined requests failed; the first "
                                               r"\(#1\)"):
            client.send_many([[Event(host="a", service="ok", time=1)],
                              [Event(host="b", service="bad", time=1)],
                              [Event(host="c", service="ok", time=1)]])
        assert sorted(e.host or "" for e in client.query('service = "ok"')) == ["a", "c"]
        assert client.statistics()["connects"] == 1


def test_sync_client_reconnects_after_the_server_restarts() -> None:
    first = ServerThread()
    port = first.tcp_port
    client = Client(port=port, connect_attempts=2, backoff=0.01)
    try:
        client.send(Event(host="h", service="before", time=1))
        first.stop()
        with pytest.raises(RiemannConnectionError, match=rf"127.0.0.1:{port} \(2 attempts"):
            client.send(Event(host="h", service="down", time=1))
        second = ServerThread(tcp_port=port)
        try:
            client.send(Event(host="h", service="after", time=1))
            assert [e.service for e in client.query("true")] == ["after"]
        finally:
            second.stop()
        # Restarted while the client was idle: noticed before sending, no error.
        third = ServerThread(tcp_port=port)
        try:
            client.send(Event(host="h", service="again", time=1))
            assert [e.service for e in third.index.search("true")] == ["again"]
        finally:
            third.stop()
        assert client.statistics()["connects"] == 3
    finally:
        client.close()


def test_sync_client_times_out_on_a_silent_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = Client(port=listener.getsockname()[1], timeout=0.2)
        with pytest.raises(RiemannTimeout, match=r"within 0\.2 s"):
            client.send(Event(service="x"))
        assert not client.connected
        client.close()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timeout": 0}, "timeout must be a positive number"),
    ({"connect_attempts": 0}, "connect_attempts must be an int >= 1"),
    ({"backoff": -1}, "backoff must be a number of seconds >= 0"),
])
def test_client_settings_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Client(**kwargs)
    with pytest.raises(ValueError, match=message):
        TrioClient(**kwargs)


def test_send_refuses_what_is_not_an_event() -> None:
    with pytest.raises(TypeError, match=r"got 'cpu'; build one with streams.Event"):
        Client().send("cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got \{'service': 'cpu'\} inside list"):
        Client().send([{"service": "cpu"}])  # type: ignore[list-item]


# UDP ---------------------------------------------------------------------------


def test_udp_send_then_tcp_query(server: ServerThread) -> None:
    with UdpClient(port=server.udp_port) as udp:
        udp.send(FULL_INT)
        udp.send([FULL_FLOAT, Event(host="u", service="third", metric=3)])
        assert udp.statistics() == {"datagrams": 2}
    deadline = time.monotonic() + 5
    with Client(port=server.tcp_port) as client:
        while len(found := client.query("true")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    events = by_service(found)
    assert fields(events["cpu"]) == fields(FULL_INT)
    assert fields(events["latency"]) == fields(FULL_FLOAT)
    assert events["third"].metric == 3


def test_udp_refuses_a_message_above_max_size() -> None:
    with UdpClient(port=free_port()) as udp:
        with pytest.raises(ValueError, match=r"1 events encode to a 20\d\d\d-byte UDP message, "
                                             r"above max_size=16384 .* or use TCP"):
            udp.send(Event(service="big", description="x" * 20_000))
        assert udp.statistics() == {"datagrams": 0}


# CLI ---------------------------------------------------------------------------


def test_cli_send_then_query_json_and_table(server: ServerThread,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    port = str(server.tcp_port)
    assert cli(["send", "--port", port, "-h", "web1", "-S", "cpu", "-m", "5", "--state", "ok",
                "-t", "prod", "-t", "eu", "-a", "env=prod", "--ttl", "30", "-D", "hot cpu",
                "--time", "2024-05-01T12:00:00.5Z"]) == 0
    assert cli(["send", "--port", port, "--event-host", "web2", "--service", "mem",
                "--metric", "0.25", "--time", "1714564800"]) == 0
    assert cli(["send", "--port", str(server.udp_port), "--udp", "-H", "web3", "-S", "udp",
                "-m", "-1.5e3", "--time", "1"]) == 0
    capsys.readouterr()
    deadline = time.monotonic() + 5
    while len(server.index) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert cli(["query", "--port", port, 'host =~ "web%"', "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"host": "web1", "service": "cpu", "state": "ok", "description": "hot cpu", "metric": 5,
         "tags": ["prod", "eu"], "time": "2024-05-01T12:00:00.500Z", "ttl": 30.0,
         "env": "prod"},
        {"host": "web2", "service": "mem", "state": None, "description": None, "metric": 0.25,
         "tags": None, "time": "2024-05-01T12:00:00.000Z", "ttl": None},
        {"host": "web3", "service": "udp", "state": None, "description": None, "metric": -1500.0,
         "tags": None, "time": "1970-01-01T00:00:01.000Z", "ttl": None},
    ]
    # The integer went out as an integer, the others as doubles.
    assert [type(e.metric) for e in map(server.index.lookup, ("web1", "web2"), ("cpu", "mem"))
            if e is not None] == [int, float]

    assert cli(["query", 'service = "cpu" or service = "mem"', "--port", port]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "host  service  state  metric  time                      ttl  tags     description  "
        "attributes",
        "web1  cpu      ok     5       2024-05-01T12:00:00.500Z  30   prod,eu  hot cpu      "
        "env=prod",
        "web2  mem             0.25    2024-05-01T12:00:00.000Z",
    ]
    assert cli(["query", "--port", port, 'service = "nothing"']) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no indexed event matches" in captured.err


def test_cli_reports_server_errors_and_refused_connections(
        server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(server.tcp_port)
    assert cli(["query", "--port", port, "oh no not again"]) == 1
    assert "rillet query: error: mismatched input 'no'" in capsys.readouterr().err
    assert cli(["send", "--port", port, "-h", "h", "-S", "bad"]) == 1
    assert ("rillet send: error: the server refused the event: refusing h"
            in capsys.readouterr().err)
    closed = str(free_port())
    assert cli(["send", "--port", closed, "-S", "x"]) == 3
    assert f"cannot connect to Riemann at 127.0.0.1:{closed}" in capsys.readouterr().err
    assert cli(["query", "--port", closed, "true", "--json"]) == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["send", "-m", "abc"], "'abc' is not a number; write e.g. -m 42"),
    (["send", "-a", "env"], "'env' is not KEY=VALUE; write e.g. -a env=prod"),
    (["send", "-a", "host=x"], "'host' is an event field, not an attribute; use -h instead"),
    (["send", "--ttl", "soon"], "'soon' is not a number of seconds"),
    (["send", "--time", "yesterday"], "neither Unix seconds nor an ISO-8601 time"),
    (["send", "--port", "70000"], "'70000' is not a port number"),
    (["query"], "the following arguments are required: QUERY"),
])
def test_cli_argument_errors(argv: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_runs_as_a_module(server: ServerThread) -> None:
    command = [sys.executable, "-m", "transport._cli_client"]
    port = str(server.tcp_port)
    sent = subprocess.run([*command, "send", "--port", port, "-S", "module", "-m", "7"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert (sent.returncode, sent.stderr) == (0, "")
    queried = subprocess.run([*command, "query", 'service = "module"', "--port", port, "--json"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)["metric"] == 7


# Debian's riemann-c-client as a peer --------------------------------------------------


def riemann_client(*args: str) -> subprocess.CompletedProcess[str]:
    assert RIEMANN_CLIENT is not None
    return subprocess.run([RIEMANN_CLIENT, *args], capture_output=True, text=True, timeout=30)


@needs_riemann_client
def test_riemann_client_sends_and_our_client_reads_it_back(server: ServerThread) -> None:
    port = str(server.tcp_port)
    sent = riemann_client("send", "-h", "rc1", "-S", "disk", "-s", "critical", "-D", "full",
                          "-i", "5", "-t", "prod", "-t", "db", "-a", "env=prod", "-L", "42",
                          "127.0.0.1", port)
    assert sent.returncode == 0, sent.stderr
    for service, option in (("double", "-d"), ("float", "-f")):
        sent = riemann_client("send", "-h", "rc1", "-S", service, option, "0.5",
                              "127.0.0.1", port)
        assert sent.returncode == 0, sent.stderr
    with Client(port=server.tcp_port) as client:
        found = by_service(client.query('host = "rc1"'))
    disk = found["disk"]
    assert (disk.state, disk.description, disk.metric, disk.tags, disk.ttl) == \
        ("critical", "full", 5, ("prod", "db"), 42.0)
    assert type(disk.metric) is int and disk.attributes["env"] == "prod"
    assert disk.time is not None and abs(disk.time - time.time()) < 60
    assert found["double"].metric == 0.5 and found["float"].metric == 0.5


@needs_riemann_client
def test_our_client_sends_and_riemann_client_reads_it_back(server: ServerThread) -> None:
    with Client(port=server.tcp_port) as client:
        client.send(FULL_INT, FULL_FLOAT)
    port = str(server.tcp_port)
    as_json = riemann_client("query", "-j", 'service = "cpu"', "127.0.0.1", port)
    assert as_json.returncode == 0, as_json.stderr
    [event] = json.loads(as_json.stdout)
    assert {key: event[key] for key in ("host", "service", "state", "description", "tags",
                                        "ttl", "metric_sint64", "time", "time_micros")} == {
        "host": "web1", "service": "cpu", "state": "warning", "description": "load is high",
        "tags": ["prod", "eu"], "ttl": 30.0, "metric_sint64": 42, "time": 1714564800,
        "time_micros": 1714564800250000}
    assert event["attributes"] == {"env": "prod", "rack": "r7"}
    printed = riemann_client("query", 'service = "latency"', "127.0.0.1", port)
    assert printed.returncode == 0, printed.stderr
    for line in ("host = web2", "service = latency", "state = ok", "description = p99",
                 "metric_d = 0.125", "ttl = 12.5", "tags = [ canary ]", "region = eu-west",
                 "time  = 1714564801"):
        assert line in printed.stdout, f"{line!r} missing from:\n{printed.stdout}"


@needs_riemann_client
def test_riemann_client_sees_our_servers_query_errors(server: ServerThread) -> None:
    failed = riemann_client("query", "oh no", "127.0.0.1", str(server.tcp_port))
    assert failed.returncode != 0
    assert "mismatched input 'no'" in failed.stdout + failed.stderr



# rillet send takes riemann-client's command lines -------------------------------------

RIEMANN_CLIENT_LINE = ["-h", "rc1", "-S", "disk", "-s", "critical", "-D", "full", "-i", "5",
                       "-t", "prod", "-t", "db", "-a", "env=prod", "-L", "42"]


@needs_riemann_client
@pytest.mark.parametrize("options", [
    RIEMANN_CLIENT_LINE,
    ["-h", "web1", "-S", "load", "-d", "0.93"],
    ["--host", "web1", "--service", "load", "--metric-f", "0.1", "--state", "ok",
     "--description", "fine", "--tag", "a", "--attribute", "k=v", "--ttl", "9"],
    ["-U", "-h", "web1", "-S", "over udp", "-d", "-1.5e3"],
])
def test_a_riemann_client_command_line_sends_the_same_event_with_rillet(
        server: ServerThread, options: list[str]) -> None:
    # Each sends to a service of its own; what is indexed must agree field by field.
    def sent_by(name: str, command: list[str]) -> Event:
        service = options[options.index("-S") + 1] if "-S" in options else "load"
        marked = [*options, "-a", f"by={name}"]
        port = server.udp_port if "-U" in options else server.tcp_port
        done = subprocess.run([*command, "send", *marked, "127.0.0.1", str(port)],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = [e for e in server.index.search("true")
                     if e.service == service and e.attributes.get("by") == name]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"{name} sent nothing with {options}")

    assert RIEMANN_CLIENT is not None
    theirs = sent_by("riemann-client", [RIEMANN_CLIENT])
    ours = sent_by("rillet", [sys.executable, "-m", "transport._cli"])
    for name in ("host", "service", "state", "description", "metric", "tags", "ttl"):
        assert getattr(ours, name) == getattr(theirs, name), name
        assert type(getattr(ours, name)) is type(getattr(theirs, name)), name
    assert {k: v for k, v in ours.attributes.items() if k not in ("by", "x-client")} == \
        {k: v for k, v in theirs.attributes.items() if k not in ("by", "x-client")}


@pytest.mark.parametrize(("argv", "message"), [
    (["send", "-i", "0.5"], "'0.5' is not an integer; -i sends a 64-bit integer metric "
                            "(e.g. -i 42); use -d 0.5 for a double"),
    (["send", "-d", "high"], "'high' is not a number; write e.g. -d 0.93"),
    (["send", "-f", "1e300"], "does not fit a single-precision float; use -d 1e300"),
    (["send", "-i", "1", "-d", "2"], "not allowed with argument"),
    (["send", "-T", "-U"], "not allowed with argument"),
    (["send", "-G"], "-G: rillet send does not speak TLS"),
    (["send", "-o", "tls-cert-file=x"], "-o: riemann-client's client options are not "
                                        "supported"),
    (["send", "-0"], "-0: reading metrics from standard input is not supported"),
    (["send", "--stdin"], "--stdin: reading metrics from standard input is not supported"),
    (["send", "--port", "1", "-S", "x", "127.0.0.1", "2"], "the server is given twice"),
    (["send", "--serv", "x"], "unrecognized arguments: --serv"),
    (["query", "true", "--host", "web1"], "--host: in rillet send, --host is the event's "
                                          "host"),
])
def test_cli_refuses_what_it_would_misread(argv: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_help_and_version_and_h_is_the_event_host(
        server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--help", "-?"):
        with pytest.raises(SystemExit) as exited:
            cli(["send", flag])
        assert exited.value.code == 0
        assert "-h HOST, --host HOST, -H HOST" in capsys.readouterr().out
    # -h is the event's host and -d a double metric, as in riemann-client.
    assert cli(["send", "-h", "web1", "-S", "h-is-host", "-d", "0.93", "-D", "text",
                "127.0.0.1", str(server.tcp_port)]) == 0
    assert capsys.readouterr().out == ""
    event = server.index.lookup("web1", "h-is-host")
    assert event is not None and (event.metric, event.description) == (0.93, "text")
    version = subprocess.run([sys.executable, "-m", "transport._cli", "--version"],
                             capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("rillet 0.")


def test_rillet_send_loads_neither_trio_nor_the_servers(server: ServerThread) -> None:
    script = ("import sys; from transport._cli import main; "
              f"status = main(['send', '-S', 'light', '127.0.0.1', '{server.tcp_port}']); "
              "print(status, sorted(m for m in sys.modules "
              "if m == 'trio' or m in ('transport._server', 'transport._trio_client')))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.stdout.strip() == "0 []", done.stderr
    assert server.index.lookup(None, "light") is not None
