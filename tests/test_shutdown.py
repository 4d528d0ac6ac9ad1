"""Graceful shutdown (issue 10): on SIGTERM `rillet run` answers what it read, flushes every
queue and sink and the snapshot, and exits 0 within --stop-within.

Real peers started here on loopback: a Graphite line receiver (TCP), a Riemann
server for `forward` (length-prefixed Msgs, acknowledged), and an HTTP
receiver for `webhook`. Clients keep sending while the signal arrives; a
last client pipelines a burst just before it. Afterwards every event a client
had an ok for is in the shutdown snapshot and reached every peer. On the
HTTP servers, a POST /events begun before the signal is answered, WebSocket
subscribers get a 1001 close and SSE streams their last chunk.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
from _helpers import start_rillet
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from streams import Event
from transport._codec import OK_REPLY, FrameDecoder, decode_message, encode_request
from transport._proto import Msg
from transport._snapshot import read_snapshot

pytestmark = pytest.mark.network

STOP_WITHIN = 8

CONFIG = """
from streams import *
from transport import async_queue, forward, graphite, index_snapshot, tcp_server, webhook

index_snapshot({snapshot!r}, interval=3600)   # only the one written at shutdown
tcp_server(port=0)
streams(async_queue("ingest",
                    index,
                    graphite(port={graphite}, linger=1, queue_size=100_000),  # lingering
                    forward(port={forward}, linger=1, queue_size=100_000),
                    where('host =~ "%-0"', webhook("http://127.0.0.1:{http}/hook")),
                    size=100_000))
"""


class Received:
    """What a peer received, from any of its connection threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts: set[str] = set()
        self.bad: list[bytes] = []

    def add(self, hosts: Iterator[str] | list[str]) -> None:
        with self.lock:
            self.hosts.update(hosts)


def start_peer(handler: type[socketserver.BaseRequestHandler],
               kind: type[socketserver.TCPServer] = socketserver.ThreadingTCPServer
               ) -> socketserver.TCPServer:
    kind.daemon_threads = True
    server = kind(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def peers() -> Iterator[dict[str, Any]]:
    graphite, riemann, hook = Received(), Received(), Received()

    class Lines(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:  # "<path> <metric> <time>": the path starts with the host
                graphite.add([line.split(b".", 1)[0].decode()])

    class Riemann(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            decoder = FrameDecoder()
            with contextlib.suppress(ConnectionError):  # forward drops a connection it gives up
                while data := self.request.recv(65536):
                    decoder.feed(data)
                    for payload in decoder.frames():
                        riemann.add(e.host for e in decode_message(payload, 0.0).events)
                        self.request.sendall(OK_REPLY)

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                hook.add([json.loads(raw)["host"]])
            except ValueError:  # cut short: the sink sends it again
                self.send_response(500)
                hook.bad.append(raw)
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    servers = [start_peer(Lines), start_peer(Riemann),
               start_peer(Hook, http.server.ThreadingHTTPServer)]
    try:
        yield {"graphite": graphite, "forward": riemann, "webhook": hook,
               "ports": [s.server_address[1] for s in servers]}
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def read_reply(sock: socket.socket, decoder: FrameDecoder) -> Msg | None:
    """The next reply, or None once the server closed the connection."""
    while (payload := decoder.next_frame()) is None:
        data = sock.recv(65536)
        if not data:
            return None
        decoder.feed(data)
    return Msg.FromString(payload)


def messages(prefix: str, count: int, size: int) -> list[tuple[list[str], bytes]]:
    now = time.time()
    out = []
    for batch in range(count):
        hosts = [f"{prefix}-{batch}-{i}" for i in range(size)]
        out.append((hosts, encode_request([Event(host=h, service="load", metric=i, time=now,
                                                 ttl=3600) for i, h in enumerate(hosts)])))
    return out


def sender(port: int, number: int, acked: set[str], stop: threading.Event) -> None:
    """Send 20-event messages one at a time until the server goes; remember what was acked."""
    batch = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            decoder = FrameDecoder()
            while not stop.is_set():
                [(hosts, payload)] = messages(f"c{number}b{batch}", 1, 20)
                sock.sendall(payload)
                reply = read_reply(sock, decoder)
                if reply is None:
                    return
                if reply.ok:
                    acked.update(hosts)
                batch += 1
                time.sleep(0.01)  # a steady load the peers (one POST per message) keep up with
    except OSError:
        pass  # reset by the stopping server: what was acked is counted


def test_sigterm_answers_what_was_read_and_flushes_every_sink_and_the_snapshot(
        tmp_path: Path, peers: dict[str, Any]) -> None:
    snapshot = tmp_path / "index.snapshot"
    graphite_port, forward_port, http_port = peers["ports"]
    config = tmp_path / "monitoring.py"
    config.write_text(CONFIG.format(snapshot=str(snapshot), graphite=graphite_port,
                                    forward=forward_port, http=http_port))
    process, port, log = start_rillet(config, "--stop-within", str(STOP_WITHIN))
    assert process.stderr is not None
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(process.stderr or ()), daemon=True)
    drain.start()
    stop = threading.Event()
    acked: list[set[str]] = [set() for _ in range(4)]
    senders = [threading.Thread(target=sender, args=(port, n, acked[n], stop), daemon=True)
               for n in range(4)]
    try:
        for thread in senders:
            thread.start()
        deadline = time.monotonic() + 30
        while sum(map(len, acked)) < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        # A burst pipelined in one write, then SIGTERM at once: every request of it
        # was sent before the signal, so every one must be answered.
        burst = messages("burst", 50, 20)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as pipelined:
            pipelined.sendall(b"".join(payload for _, payload in burst))
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            decoder = FrameDecoder()
            replies = []
            while (reply := read_reply(pipelined, decoder)) is not None:
                replies.append(reply)
        process.wait(timeout=STOP_WITHIN + 10)
        took = time.monotonic() - signalled
    finally:
        stop.set()
        process.kill()
        process.wait()
        for thread in senders:
            thread.join(timeout=10)
        drain.join(timeout=10)
        process.stderr.close()
    text = log + "".join(lines)
    assert process.returncode == 0, text[-3000:]
    assert took < STOP_WITHIN, text[-3000:]
    assert len(replies) == len(burst) and all(r.ok for r in replies), \
        f"{len(replies)} replies to {len(burst)} requests sent before SIGTERM"
    everything = set().union(*acked, *(hosts for hosts, _ in burst))
    assert len(everything) >= 2000
    kept = {e.host for e in read_snapshot(snapshot, time.time())}
    assert not everything - kept, f"{len(everything - kept)} acknowledged events not in the " \
                                  f"snapshot"
    for name in ("graphite", "forward"):
        missing = everything - peers[name].hosts
        assert not missing, f"{len(missing)} acknowledged events never reached {name}:\n{text}"
    hooked = {h for h in everything if h.endswith("-0")}
    assert not hooked - peers["webhook"].hosts, text
    assert "dropped" not in text and "Traceback" not in text, text[-3000:]


def test_what_cannot_be_flushed_by_the_deadline_is_counted_and_the_exit_is_still_0(
        tmp_path: Path) -> None:
    with socket.socket() as unused:  # a port nobody listens on: the peer is down
        unused.bind(("127.0.0.1", 0))
        dead = unused.getsockname()[1]
    config = tmp_path / "monitoring.py"
    config.write_text(f"""
from streams import *
from transport import forward, tcp_server

tcp_server(port=0)
streams(forward(port={dead}, flush_timeout=60))   # would retry far past --stop-within
""")
    process, port, _ = start_rillet(config, "--stop-within", "3")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(encode_request([Event(host=f"h{i}", service="s", time=1)
                                         for i in range(10)]))
            assert read_reply(sock, FrameDecoder()) is not None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=15)
        took = time.monotonic() - signalled
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, log
    assert 1.5 < took < 3, log  # it tried until the deadline, and no longer
    assert "forward(" in log and "dropped 10 undelivered events" in log, log


HTTP_CONFIG = """
from streams import *
from transport import index_snapshot, sse_server, tcp_server, ws_server

index_snapshot({snapshot!r}, interval=3600)   # only the one written at shutdown
tcp_server(port=0)
ws_server(port=0)
sse_server(port=0)
streams(index)
"""


def start_with_ports(config: Path, kinds: tuple[str, ...]
                     ) -> tuple[subprocess.Popen[str], dict[str, int], list[str],
                                threading.Thread]:
    """``rillet run config``, the ports its servers of ``kinds`` logged, and its log
    (read on by the thread returned, so the server never blocks on a full pipe)."""
    process = subprocess.Popen([sys.executable, "-m", "transport._cli", "run", str(config),
                                "--stop-within", str(STOP_WITHIN)],
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    lines: list[str] = []
    ports: dict[str, int] = {}
    for line in process.stderr:
        lines.append(line)
        found = re.search(r": (\w[\w ]*?) server listening on 127\.0\.0\.1:(\d+)", line)
        if found and found.group(1) in kinds:
            ports[found.group(1)] = int(found.group(2))
            if len(ports) == len(kinds):
                break
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or ()), daemon=True)
    reader.start()
    assert len(ports) == len(kinds), "".join(lines)
    return process, ports, lines, reader


def post(hosts: list[str]) -> tuple[bytes, bytes]:
    """The head and body of a ``POST /events`` of one event per host."""
    body = json.dumps([{"host": h, "service": "http", "metric": 1, "time": time.time(),
                        "ttl": 3600} for h in hosts]).encode()
    head = (f"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/events", headers=[("Host", "x")]))
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status, json.loads(body or b"{}")


def test_sigterm_answers_http_requests_begun_and_closes_subscribers_with_1001(
        tmp_path: Path) -> None:
    snapshot = tmp_path / "index.snapshot"
    config = tmp_path / "monitoring.py"
    config.write_text(HTTP_CONFIG.format(snapshot=str(snapshot)))
    process, ports, lines, reader = start_with_ports(config, ("TCP", "WebSocket", "SSE"))
    sockets = contextlib.ExitStack()
    try:
        def connect(kind: str) -> socket.socket:
            return sockets.enter_context(
                socket.create_connection(("127.0.0.1", ports[kind]), timeout=20))

        # A WebSocket subscriber to every indexed event, accepted.
        subscriber = connect("WebSocket")
        ws = WSConnection(ConnectionType.CLIENT)
        subscriber.sendall(ws.send(Request(host="127.0.0.1",
                                           target="/index?subscribe=true&query=true")))
        while not any(isinstance(e, AcceptConnection) for e in ws.events()):
            ws.receive_data(subscriber.recv(65536))
        # An SSE stream of every indexed event, its head received.
        sse = connect("SSE")
        sse.sendall(b"GET /index?query=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        streamed = b""
        while b"\r\n\r\n" not in streamed:
            streamed += sse.recv(65536)
        # A remote recorder ('rillet record remote'): the drain does not wait for it.
        recorder = connect("SSE")
        recorder.sendall(b"GET /recording HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        recorded = b""
        while b"event: header" not in recorded:
            recorded += recorder.recv(65536)
        # A POST answered (so its connection is accepted), then a second one begun:
        # its head and half its body sent before SIGTERM, the rest once stopping.
        poster = connect("WebSocket")
        first = [f"first-{i}" for i in range(50)]
        poster.sendall(b"".join(post(first)))
        assert read_response(poster) == (200, {"ok": True, "count": 50})
        second = [f"second-{i}" for i in range(50)]
        head, body = post(second)
        # Unread or read, bytes that had arrived count as a request begun.
        poster.sendall(head + body[:len(body) // 2])
        process.send_signal(signal.SIGTERM)
        # The subscriber's close frame says the server is stopping: only now does the
        # rest of the begun request leave, so it is read while draining.
        closes: list[CloseConnection] = []
        texts = []
        while not closes:
            data = subscriber.recv(65536)
            assert data, f"the WebSocket subscriber saw no close frame:\n{''.join(lines)}"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, CloseConnection):
                    closes.append(event)
                elif isinstance(event, TextMessage):
                    texts.append(event.data)
        poster.sendall(body[len(body) // 2:])
        answer = read_response(poster)
        with contextlib.suppress(OSError):  # the server answers the close, or has gone
            subscriber.sendall(ws.send(closes[0].response()))
        while data := sse.recv(65536):
            streamed += data
        while data := recorder.recv(65536):
            recorded += data
        process.wait(timeout=STOP_WITHIN + 10)
    finally:
        sockets.close()
        process.kill()
        process.wait()
        reader.join(timeout=10)
        assert process.stderr is not None
        process.stderr.close()
    text = "".join(lines)
    assert process.returncode == 0, text[-3000:]
    assert answer == (200, {"ok": True, "count": 50}), text[-3000:]
    assert closes[0].code == 1001, closes
    assert sum(t.count('"host"') for t in texts) >= 50  # it was subscribed
    assert streamed.endswith(b"\r\n0\r\n\r\n"), streamed[-200:]  # the last chunk
    assert b"first-49" in streamed
    kept = {e.host for e in read_snapshot(snapshot, time.time())}
    assert set(first + second) <= kept, sorted(set(first + second) - kept)[:5]
    assert b"HTTP/1.1 200" in recorded
    # Every connection was done before the 4 s bound: none was still answering.
    assert "still answering" not in text and "Traceback" not in text, text[-3000:]
