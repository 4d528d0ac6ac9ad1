"""What a network sink costs the streams: a pipeline ending in ``graphite`` vs a plain sink.

    .venv/bin/python tests/benchmarks/bench_sinks.py [--events N] [--repeat R]

Two pipelines over in-memory events for 1,000 hosts, each run twice side by
side (alternating, best of R), once ending in a plain counting function and
once in a ``graphite`` sink whose trio task sends every line to a TCP
receiver in another process that discards them:

- ``rate``: bench_pipeline's pipeline, ``where -> by("host") -> rate(1) ->
  over(50) -> sink``, on the same 1,000,000 events (a derived metric per host
  per second: about 1 % of the events reach the sink);
- ``every``: ``where(service starts with "cpu") -> sink`` (three events in
  four reach the sink: the worst case, every metric graphed as it comes).

The graphite timing includes everything the sink costs the process: the
enqueue in the stream, and the task formatting and writing every line,
until the queue is empty (the streams yield to the task after every chunk of
events, as the server does between requests). Both are timed in CPU time of
this process: the sink's linger (it waits 100 ms for fuller batches) is idle
time, not work taken from the streams. Then the enqueue alone is timed per
event.
"""

from __future__ import annotations

import argparse
import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import INTERVAL, SECONDS, THRESHOLD, make_events

from streams import Config, Event, Runtime, VirtualClock, by, over, rate, where
from streams._config import declaring
from streams._core import entry_point
from transport import graphite

DISCARD = """
import socket, sys, threading
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
def drain(connection):
    while connection.recv(1 << 20):
        pass
while True:
    connection, _ = server.accept()
    threading.Thread(target=drain, args=(connection,), daemon=True).start()
"""


def is_cpu(event: Any) -> bool:
    return bool(event.service.startswith("cpu"))


PIPELINES: dict[str, Callable[[Callable[[Any], object]], Callable[[Any], object]]] = {
    "rate": lambda sink: where(is_cpu, by("host", rate(INTERVAL, over(THRESHOLD, sink)))),
    "every": lambda sink: where(is_cpu, sink),
}


async def drive(chunks: list[list[Event]], pipeline_name: str, port: int | None
                ) -> tuple[float, int]:
    """Seconds to stream every chunk (and, with a port, deliver everything); events sunk."""
    clock = VirtualClock()
    with Runtime(clock):
        return await _drive(clock, chunks, pipeline_name, port)


async def _drive(clock: VirtualClock, chunks: list[list[Event]], pipeline_name: str,
                 port: int | None) -> tuple[float, int]:
    count = [0]
    sink: Any

    def plain(event: Any) -> None:
        count[0] += 1

    if port is None:
        sink = plain
    else:
        with declaring(Config()):
            sink = graphite(port=port, queue_size=1_000_000, batch_size=2000)
    pipeline = entry_point(PIPELINES[pipeline_name](sink))
    async with trio.open_nursery() as nursery:
        if port is not None:
            await nursery.start(sink.serve, None)
        started = time.process_time()
        for chunk in chunks:
            clock.advance(chunk[0].time)
            for event in chunk:
                pipeline(event)
            await trio.lowlevel.checkpoint()  # the server yields between requests
        clock.advance(SECONDS + 2 * INTERVAL)
        if port is not None:
            while sink.statistics()["queued"]:
                await trio.sleep(0)
            stats = sink.statistics()
            if stats["dropped"] or stats["retries"]:
                raise SystemExit(f"the graphite sink did not deliver everything: {stats}")
            count[0] = stats["sent"]
        elapsed = time.process_time() - started
        nursery.cancel_scope.cancel()
    return elapsed, count[0]


def enqueue_cost(n: int, repeat: int) -> tuple[float, float]:
    """Best nanoseconds per call of a graphite sink: queue with room, and queue full."""
    logging.getLogger("rillet.delivery").setLevel(logging.ERROR)  # the drops are the point
    events = [Event(host="h", service="cpu", metric=float(i), time=i) for i in range(1000)]
    results = []
    for size in (n + 1, 1000):  # room for all; full after the first thousand (drop_oldest)
        best = math.inf
        for _ in range(repeat):
            with declaring(Config()):
                sink = graphite(queue_size=size)
            call = sink.__call__
            started = time.perf_counter()
            for _ in range(n // 1000):
                for event in events:
                    call(event)
            best = min(best, time.perf_counter() - started)
        results.append(best / n * 1e9)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    receiver = subprocess.Popen([sys.executable, "-c", DISCARD], stdout=subprocess.PIPE,
                                text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        chunks = make_events(args.events, args.hosts)
        total = sum(len(c) for c in chunks)
        print(f"events: {total:,} over {args.hosts:,} hosts, best of {args.repeat}")
        for name in PIPELINES:
            best = {"plain": math.inf, "graphite": math.inf}
            sunk = {}
            for _ in range(args.repeat):
                for kind, target in (("plain", None), ("graphite", port)):
                    elapsed, sunk[kind] = trio.run(drive, chunks, name, target)
                    best[kind] = min(best[kind], elapsed)
            if sunk["plain"] != sunk["graphite"]:
                raise SystemExit(f"{name}: the sinks saw different counts: {sunk}")
            plain, graph = total / best["plain"], total / best["graphite"]
            target = "(target >= 0.90)" if name == "rate" else "(no target: every line costs)"
            print(f"{name:>5}: {sunk['plain']:>9,} events reach the sink | plain "
                  f"{plain / 1e6:5.2f} M/s | graphite {graph / 1e6:5.2f} M/s | "
                  f"ratio {graph / plain:.2f} {target}")
        room, full = enqueue_cost(1_000_000, args.repeat)
        print(f"enqueue per event: {room:.0f} ns with room, {full:.0f} ns when full "
              f"(drop_oldest) (target < 1000 ns)")
    finally:
        receiver.kill()
        receiver.wait()


if __name__ == "__main__":
    main()
