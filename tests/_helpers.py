"""Helpers shared by the stream tests."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import settings

from streams.testing import Sink

#: Hypothesis settings for property tests whose examples drive whole streams.
relaxed = settings(deadline=None, max_examples=60)


def through(build: Any, inputs: list[Any]) -> list[Any]:
    """Feed ``inputs`` to ``build(sink)`` on the current clock; what reached the sink."""
    sink = Sink()
    stream = build(sink)
    for item in inputs:
        stream(item)
    return sink.events


def start_rillet(config: Path, *options: str, **popen: Any) -> tuple[subprocess.Popen[str], int,
                                                                      str]:
    """``rillet run config options`` in a subprocess: it, its TCP port and its log until then."""
    process = subprocess.Popen([sys.executable, "-m", "transport._cli", "run", str(config),
                                *options], stderr=subprocess.PIPE, text=True, **popen)
    assert process.stderr is not None
    log = ""
    for line in process.stderr:
        log += line
        found = re.search(r"TCP server listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            return process, int(found.group(1)), log
    process.wait()
    raise AssertionError(f"rillet run did not start a TCP server:\n{log}")


@contextlib.contextmanager
def rillet_listening(config: Path, *options: str, stop_within: float = 20,
                     kinds: tuple[str, ...] = ("TCP", "UDP")) -> Iterator[dict[str, int]]:
    """``rillet run config options`` in a subprocess, for the block: the ports of its
    servers of ``kinds`` (as they log themselves: "TCP", "UDP", "Graphite TCP", "SSE").

    The rest of its log is drained in the background, so the server never blocks
    on a full pipe; it is terminated when the block ends.
    """
    process = subprocess.Popen([sys.executable, "-m", "transport._cli", "run", str(config),
                                *options], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 20
    while len(ports) < len(kinds) and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        found = re.search(r": (\w[\w ]*?) server listening on 127\.0\.0\.1:(\d+)", line)
        if found and found.group(1) in kinds:
            ports[found.group(1)] = int(found.group(2))
    drain = threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True)
    drain.start()
    try:
        assert len(ports) == len(kinds), f"rillet run did not report the ports of {kinds}"
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=stop_within)
        drain.join(timeout=10)
        process.stderr.close()


def hostile_requests() -> list[bytes]:
    """Framed requests that once froze the server (issue 10): a LIKE with many wildcards
    and a nested-quantifier regex against a 200-character service, an event a year ahead
    into a time window, and 50 events into a stream that raises on each."""
    import time

    from streams import Event
    from transport._codec import encode_request

    now = time.time()
    return [
        encode_request([Event(host="evil", service="a" * 200, time=now)]),
        encode_request(query='service =~ "%a%a%a%a%a%a%a%a%b"'),
        encode_request(query='service ~= "(a+)+b"'),
        encode_request([Event(service="window", time=now + 365 * 86400),
                        Event(service="window", time=now)]),
        encode_request([Event(service="fail", time=now)] * 50),
    ]


def run_serving(config: Any, index: Any, body: Any, *, timeout: float = 30) -> Any:
    """Run ``serve(config)`` in a fresh trio run around ``await body(running)``; the Running."""
    import functools

    import trio

    from transport import serve

    result: list[Any] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(serve, config, index=index))
            result.append(running)
            with trio.fail_after(timeout):
                await body(running)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return result[0]


@contextlib.contextmanager
def serving_in_thread(config: Any, index: Any) -> Iterator[Any]:
    """``serve(config)`` in a background thread (for a blocking client such as a browser);
    yields the Running once every server listens, stops it on exit."""
    import functools
    import queue

    import trio

    from transport import serve

    started: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(serve, config, index=index))
            started.put(running)
            while not stop.is_set():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=lambda: trio.run(main), daemon=True)
    thread.start()
    try:
        yield started.get(timeout=20)
    finally:
        stop.set()
        thread.join(timeout=10)


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint (negative numbers as their 64-bit two's complement)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Receiver:
    """A Riemann-protocol peer on a free port: acks every request, keeps the events."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.events: list[Any] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from transport._codec import OK_REPLY, FrameDecoder, decode_message

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            decoder = FrameDecoder()
            with conn, contextlib.suppress(ConnectionError):  # the sender stopping
                while data := conn.recv(65536):
                    decoder.feed(data)
                    for payload in decoder.frames():
                        self.events.extend(decode_message(payload, time.time()).events)
                        conn.sendall(OK_REPLY)

    def wait_for(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.events) >= count, self.events

    def close(self) -> None:
        self.sock.close()
