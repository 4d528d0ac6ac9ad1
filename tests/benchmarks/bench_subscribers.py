"""Ingest with 100 WebSocket subscribers on ``true`` against ingest with none.

    .venv/bin/python tests/benchmarks/bench_subscribers.py [--seconds 8] [--rounds 3]
        [--subscribers 100]

One ``rillet run`` (TCP + WebSocket server, ``streams(index)``) pinned to CPU 0.
The load generator of bench_server.py (pre-serialised 100-event messages, 4
pipelining connections) and a subscriber process run on CPU 1. Rounds
alternate: no subscriber, then ``--subscribers`` WebSocket clients on
``/index?subscribe=true&query=true``, each reading every event. Ingest is
events acknowledged per second.

Delay: a probe connection sends one event every 20 ms carrying its send time
as its metric; each subscriber notes when the probe reaches it. The p99 of
those delays is ingest-to-delivery, server queueing included. Subscribers
the server disconnected for lagging are counted: a round that lost any would
not be a fair comparison, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from bench_server import free_port, measure, pinned, start

from streams import Event
from transport._codec import OK_REPLY, encode_request

RILLET_CONFIG = """
from streams import *
from transport import tcp_server, ws_server
tcp_server(port={tcp})
ws_server(port={ws})
streams(index)
"""

# The subscribers: wsproto for the handshake, then raw reads (a C-speed
# byte count), scanning only for probes.
SUBSCRIBERS = r'''
import json, re, selectors, socket, sys, time
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

port, count = int(sys.argv[1]), int(sys.argv[2])
PROBE = re.compile(rb'"host":"probe","service":"probe","state":null,"description":null,'
                   rb'"metric":([0-9.e+-]+)')
selector = selectors.DefaultSelector()
tails, seen, delays, closed, received = {}, {}, [], 0, 0
for i in range(count):
    sock = socket.create_connection(("127.0.0.1", port))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host="localhost",
                                 target="/index?subscribe=true&query=true")))
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.setblocking(False)
    selector.register(sock, selectors.EVENT_READ, i)
    tails[i], seen[i] = rest[-400:], set()
selector.register(sys.stdin, selectors.EVENT_READ, "stop")
print("ready", flush=True)
buffer = bytearray(1 << 20)
running = True
while running:
    for key, _ in selector.select():
        if key.data == "stop":
            running = False
            break
        n = key.fileobj.recv_into(buffer)
        now = time.time()
        if n == 0:
            closed += 1
            selector.unregister(key.fileobj)
            continue
        received += n
        chunk = tails[key.data] + bytes(buffer[:n])
        if b'"probe"' in chunk:
            for match in PROBE.finditer(chunk):
                sent = float(match.group(1))
                if sent not in seen[key.data]:
                    seen[key.data].add(sent)
                    delays.append(now - sent)
        tails[key.data] = chunk[-400:]
print(json.dumps({"delays": delays, "closed": closed, "bytes": received}), flush=True)
'''


def messages(events_per_message: int, keys: int) -> list[bytes]:
    """Pre-serialised requests cycling over ``keys`` (host, service) pairs, a dashboard's
    worth: each subscriber gets the index's current matches when it connects."""
    now = time.time()
    batches, key = [], 0
    for _ in range(max(1, keys // events_per_message) * 10):
        batch = []
        for _ in range(events_per_message):
            batch.append(Event(host=f"host-{key % 100}", service=f"svc-{key // 100}",
                               metric=key * 0.5, state="ok", time=now, ttl=3600.0,
                               tags=("bench",)))
            key = (key + 1) % keys
        batches.append(encode_request(batch))
    return batches


class Probe:
    """One probe event every 20 ms on its own connection, metric = send time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self.stop.wait(0.02):
                now = time.time()
                sock.sendall(encode_request([Event(host="probe", service="probe", metric=now,
                                                   time=now, ttl=3600.0)]))
                sock.recv(64)


class Paced:
    """Ingest at a fixed rate: messages sent on schedule, pipelined (acks read apart),
    so the rate does not depend on the round-trip time. ``acked`` counts events."""

    def __init__(self, port: int, frames: list[bytes], events_per_message: int,
                 rate: float) -> None:
        self.port, self.frames = port, frames
        self.interval = events_per_message / rate
        self.events_per_message = events_per_message
        self.acked = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = threading.Thread(target=self.read_acks, args=(sock,), daemon=True)
            reader.start()
            position, due = 0, time.monotonic()
            while not self.stop.is_set():
                sock.sendall(self.frames[position % len(self.frames)])
                position += 1
                due += self.interval
                self.stop.wait(max(0.0, due - time.monotonic()))
            sock.shutdown(socket.SHUT_WR)
            reader.join()

    def read_acks(self, sock: socket.socket) -> None:
        received = 0
        while data := sock.recv(65536):
            received += len(data)
            self.acked = received // len(OK_REPLY) * self.events_per_message


class Subscribers:
    """The subscriber process: connect, then report delays, disconnections, bytes."""

    def __init__(self, script: Path, port: int, count: int) -> None:
        self.process = subprocess.Popen(
            pinned(1, [sys.executable, str(script), str(port), str(count)]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def finish(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        report: dict[str, Any] = json.loads(self.process.stdout.readline())
        self.process.wait(timeout=30)
        return report


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=100, help="events per message")
    parser.add_argument("--keys", type=int, default=1000, help="distinct (host, service)")
    parser.add_argument("--paced", type=float, default=10_000,
                        help="events/s of the delay measurement")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    frames = messages(args.events, args.keys)
    rates: dict[str, list[float]] = {"none": [], "subscribed": []}
    lost = 0
    with tempfile.TemporaryDirectory() as tmp:
        tcp, ws = free_port(), free_port()
        config = Path(tmp, "bench_config.py")
        config.write_text(textwrap.dedent(RILLET_CONFIG.format(tcp=tcp, ws=ws)))
        subscribers_script = Path(tmp, "subscribers.py")
        subscribers_script.write_text(SUBSCRIBERS)
        print(f"{args.events}-event messages; {args.subscribers} WebSocket subscribers on "
              f"'true'; server on CPU 0; {args.rounds} alternating rounds of "
              f"{args.seconds:.0f} s", flush=True)
        server = start([sys.executable, "-m", "transport._cli", "run", str(config),
                        "--log-level", "warning"], tcp)
        try:
            for _ in range(args.rounds):
                rates["none"] += measure(tcp, frames, args.events, args.warmup, args.seconds, 1)
                readers = Subscribers(subscribers_script, ws, args.subscribers)
                rates["subscribed"] += measure(tcp, frames, args.events, args.warmup,
                                               args.seconds, 1)
                report = readers.finish()
                lost += report["closed"]
                print(f"  full speed: none {rates['none'][-1] / 1e3:.0f}k ev/s, subscribed "
                      f"{rates['subscribed'][-1] / 1e3:.0f}k ev/s; "
                      f"{report['bytes'] / 1e6:.0f} MB delivered, "
                      f"{report['closed']} subscribers disconnected for lagging", flush=True)
            # Delay, at a rate every subscriber can follow.
            readers = Subscribers(subscribers_script, ws, args.subscribers)
            paced, probe = Paced(tcp, frames, args.events, args.paced), Probe(tcp)
            paced.thread.start()
            probe.thread.start()
            time.sleep(args.warmup)
            before, started = paced.acked, time.perf_counter()
            time.sleep(args.seconds)
            achieved = (paced.acked - before) / (time.perf_counter() - started)
            paced.stop.set()
            probe.stop.set()
            paced.thread.join()
            probe.thread.join()
            report = readers.finish()
            delays, paced_lost = report["delays"], report["closed"]
        finally:
            server.terminate()
            server.wait(timeout=10)
    none, subscribed = (statistics.median(rates[k]) for k in ("none", "subscribed"))
    ratios = [s / n for s, n in zip(rates["subscribed"], rates["none"], strict=True)]
    print(f"no subscriber:      median {none / 1e3:6.0f} k events/s")
    print(f"{args.subscribers} subscribers:   median {subscribed / 1e3:6.0f} k events/s")
    print(f"ratio (median of per-round ratios): {statistics.median(ratios):.2f}  "
          f"(target >= 0.7)")
    print(f"  ({lost} subscribers were disconnected for lagging during the full-speed rounds)")
    print(f"at {achieved:.0f} events/s (asked {args.paced:.0f}): subscribers' delay "
          f"ingest -> delivery "
          f"p50 {percentile(delays, 0.5) * 1e3:.1f} ms, p99 {percentile(delays, 0.99) * 1e3:.1f} "
          f"ms over {len(delays)} probe deliveries; {paced_lost} subscribers disconnected")


if __name__ == "__main__":
    main()
