"""End-to-end ingest: `rillet run` indexing everything, against a bare decode+ack trio loop.

    .venv/bin/python tests/benchmarks/bench_server.py [--seconds 10] [--rounds 5] [--events 100]

Each server runs in its own process pinned to CPU 0 (``taskset``); the load
generator, this process pinned to CPU 1, pipelines pre-serialised 100-event messages over
4 TCP connections with 256 requests outstanding each, and counts acks. Rounds
alternate between rillet and the bare loop (the ceiling for a Python server:
protobuf decode and coalesced acks only); each round warms up, then measures
events/s over ``--seconds``; medians are reported side by side.
Then rillet's RSS is read after indexing 100,000 distinct keys.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from streams import Event
from transport._codec import OK_REPLY, encode_request

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 4
OUTSTANDING = 256
KEYS = 100_000

CONFIGS = {
    # Riemann's "index only" figure.
    "index": "streams(index)",
    # Riemann's "where -> by -> rate -> index" figure.
    "pipeline": "streams(where('service =~ \"svc-%\"', by('host', rate(1, index))))",
}

RILLET_CONFIG = """
from streams import *
from transport import tcp_server
tcp_server(port={port})
{streams}
"""

BARE_SERVER = """
import sys, trio
from transport._proto import Msg
from transport._codec import FrameDecoder, OK_REPLY

async def connection(stream):
    decoder = FrameDecoder()
    try:
        while data := await stream.receive_some(262144):
            decoder.feed(data)
            acks = 0
            for payload in decoder.frames():
                for event in Msg.FromString(payload).events:
                    pass
                acks += 1
            if acks:
                await stream.send_all(OK_REPLY * acks)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the load generator hung up between rounds

trio.run(trio.serve_tcp, connection, int(sys.argv[1]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int, command: list[str]) -> list[str]:
    return (["taskset", "-c", str(cpu)] if shutil.which("taskset") else []) + command


def wait_for_port(port: int, deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the server did not listen on port {port} within {deadline} s")


def messages(events_per_message: int, count: int) -> list[bytes]:
    """Pre-serialised requests covering KEYS distinct (host, service) keys.

    Times are the present with an hour of ttl, so no stream sees them as expired
    during the run.
    """
    out = []
    key = 0
    now = time.time()
    for _ in range(count):
        batch = []
        for _ in range(events_per_message):
            batch.append(Event(host=f"host-{key % 1000}", service=f"svc-{key // 1000}",
                               metric=key * 0.5, state="ok", time=now + key * 1e-6, ttl=3600.0,
                               tags=("bench",)))
            key = (key + 1) % KEYS
        out.append(encode_request(batch))
    return out


class Load:
    """Pipelining connections; ``acked`` counts acknowledged requests."""

    def __init__(self, port: int, frames: list[bytes]) -> None:
        self.port = port
        self.frames = frames
        self.acked = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.connection, args=(i,), daemon=True)
                        for i in range(CONNECTIONS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def connection(self, number: int) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frames = self.frames
        position = number * 7
        ack_size = len(OK_REPLY)

        def send(n: int) -> None:
            nonlocal position
            chunk = []
            for _ in range(n):
                chunk.append(frames[position % len(frames)])
                position += 1
            sock.sendall(b"".join(chunk))

        send(OUTSTANDING)
        leftover = 0
        while not self.stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                if not self.stop.is_set():
                    print("the server closed a load connection", file=sys.stderr)
                return
            leftover += len(data)
            acks, leftover = divmod(leftover, ack_size)
            if acks:
                with self.lock:
                    self.acked += acks
                send(acks)
        sock.close()


def measure(port: int, frames: list[bytes], events_per_message: int, warmup: float,
            seconds: float, rounds: int) -> list[float]:
    load = Load(port, frames)
    load.start()
    time.sleep(warmup)
    rates = []
    for _ in range(rounds):
        before, started = load.acked, time.perf_counter()
        time.sleep(seconds)
        rates.append((load.acked - before) * events_per_message /
                     (time.perf_counter() - started))
    load.stop.set()
    return rates


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(pinned(0, command), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--events", type=int, default=100, help="events per message")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="index",
                        help="index: index everything; pipeline: where -> by -> rate -> index")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs; server and load share a core", file=sys.stderr)
    else:
        os.sched_setaffinity(0, {1})
    frames = messages(args.events, KEYS // args.events)
    with tempfile.TemporaryDirectory() as tmp:
        rillet_port, bare_port = free_port(), free_port()
        config = Path(tmp, "bench_config.py")
        config.write_text(textwrap.dedent(RILLET_CONFIG.format(port=rillet_port,
                                                               streams=CONFIGS[args.config])))
        bare = Path(tmp, "bare.py")
        bare.write_text(BARE_SERVER)
        python = sys.executable
        print(f"config {args.config!r}: {CONFIGS[args.config]}; {args.events}-event messages, "
              f"{CONNECTIONS} connections x {OUTSTANDING} outstanding, server pinned to CPU 0, "
              f"{args.rounds} alternating rounds of {args.seconds:.0f} s each", flush=True)
        servers = {
            "bare": (start([python, str(bare), str(bare_port)], bare_port), bare_port),
            "rillet": (start([python, "-m", "transport._cli", "run", str(config),
                              "--log-level", "warning"], rillet_port), rillet_port),
        }
        rates: dict[str, list[float]] = {"bare": [], "rillet": []}
        try:
            # Both servers are up; only one is loaded at a time, and the two
            # alternate round by round, so drift on this shared VM hits both.
            for _ in range(args.rounds):
                for name, (_server, port) in servers.items():
                    rates[name] += measure(port, frames, args.events, args.warmup,
                                           args.seconds, 1)
            rss = rss_mib(servers["rillet"][0].pid)
        finally:
            for server, _port in servers.values():
                server.terminate()
                server.wait(timeout=10)
    for name, found in rates.items():
        print(f"{name:7s}: median {statistics.median(found) / 1e3:6.0f} k events/s  (rounds: "
              f"{', '.join(f'{r / 1e3:.0f}k' for r in found)})")
    ratios = [r / b for r, b in zip(rates["rillet"], rates["bare"], strict=True)]
    print(f"rillet / bare, median of per-round ratios: {statistics.median(ratios):.2f}; "
          f"rillet RSS with {KEYS:,} keys indexed: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
