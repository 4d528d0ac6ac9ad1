"""Stream-core throughput: rillet's combinators against hand-written closures.

    .venv/bin/python tests/benchmarks/bench_pipeline.py [--events N] [--repeat R]

1,000,000 in-memory events over 1,000 hosts go through
``where(service starts with "cpu") -> by("host") -> rate(1) -> over(threshold) ->
a counting sink``, once built from rillet's streams and once as hand-written
closures doing the same work (same rate semantics, same scheduler, same
virtual clock driven the same way). Runs alternate, best of R each, and the
ratio is reported: this machine is shared and noisy, so only side-by-side
figures mean anything.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from typing import Any

from streams import Event, Runtime, VirtualClock, by, over, rate, where
from streams._core import entry_point

INTERVAL = 1.0
THRESHOLD = 50.0
SECONDS = 10  # virtual seconds the events span


def make_events(n: int, hosts: int) -> list[list[Event]]:
    """Events in time order, chunked per 10 ms of virtual time."""
    rng = random.Random(42)
    services = ["cpu user", "cpu system", "memory", "cpu idle"]
    per_chunk = max(1, n // (SECONDS * 100))
    chunks: list[list[Event]] = []
    for i in range(0, n, per_chunk):
        t = i / n * SECONDS
        chunks.append([
            Event(host=f"host-{rng.randrange(hosts)}", service=services[j % 4],
                  metric=rng.random() * 2, time=t, ttl=30.0)
            for j in range(min(per_chunk, n - i))
        ])
    return chunks


def rillet_pipeline(count: list[int]) -> Callable[[Any], object]:
    def sink(event: Any) -> None:
        count[0] += 1

    return where(lambda e: e.service.startswith("cpu"),
                 by("host", rate(INTERVAL, over(THRESHOLD, sink))))


def hand_pipeline(count: list[int], clock: VirtualClock) -> Callable[[Any], object]:
    """The same work as closures: per-host rate with Riemann's timer rules."""

    def emit(event: Any) -> None:
        metric = event.metric
        if metric is not None and metric > THRESHOLD:
            count[0] += 1

    def make_rate() -> Callable[[Any], None]:
        total = [0.0]
        last: list[Any] = [None, False]
        timer: list[Any] = [None, math.inf]

        def tick() -> None:
            if timer[1] < clock.now():
                timer[0].cancel()
                timer[0] = None
                return
            s, total[0] = total[0], 0.0
            event, fresh = last
            ttl = event.ttl
            if ttl is not None and not fresh:
                ttl -= INTERVAL
            out = event.evolve(metric=s / INTERVAL, time=clock.now(), ttl=ttl)
            last[0], last[1] = out, False
            emit(out)

        def rate_(event: Any) -> None:
            metric = event.metric
            if metric is not None:
                total[0] += metric
                last[0], last[1] = event, True
            t, ttl = event.time, event.ttl
            if t is None:
                timer[1] = math.inf
                expired = event.state == "expired"
            else:
                if ttl is None:
                    timer[1], ttl = math.inf, 60.0
                else:
                    timer[1] = t + ttl
                expired = event.state == "expired" or clock.now() - t > ttl
            if expired:
                if timer[0] is not None:
                    timer[0].cancel()
                    timer[0] = None
            elif timer[0] is None:
                timer[0] = clock.every(INTERVAL, tick, delay=INTERVAL)

        return rate_

    per_host: dict[Any, Callable[[Any], None]] = {}

    def pipeline(event: Any) -> None:
        if event.service.startswith("cpu"):
            host = event.host
            forked = per_host.get(host)
            if forked is None:
                forked = per_host[host] = make_rate()
            forked(event)

    return pipeline


def drive(chunks: list[list[Event]], build: Callable[[list[int], VirtualClock], Any]) -> \
        tuple[float, int]:
    clock = VirtualClock()
    count = [0]
    with Runtime(clock):
        pipeline = entry_point(build(count, clock))
        started = time.perf_counter()
        for chunk in chunks:
            clock.advance(chunk[0].time)
            for event in chunk:
                pipeline(event)
        clock.advance(SECONDS + 2 * INTERVAL)
        elapsed = time.perf_counter() - started
    return elapsed, count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chunks = make_events(args.events, args.hosts)
    total = sum(len(c) for c in chunks)
    best = {"rillet": math.inf, "hand": math.inf}
    alerts = {}
    builders = {
        "rillet": lambda count, clock: rillet_pipeline(count),
        "hand": hand_pipeline,
    }
    for _ in range(args.repeat):
        for name, build in builders.items():
            elapsed, alerts[name] = drive(chunks, build)
            best[name] = min(best[name], elapsed)
    if alerts["rillet"] != alerts["hand"]:
        raise SystemExit(f"the pipelines disagree: {alerts}")
    rillet_rate, hand_rate = total / best["rillet"], total / best["hand"]
    print(f"events: {total:,} over {args.hosts:,} hosts; alerts: {alerts['rillet']:,} (both)")
    print(f"rillet streams : {rillet_rate / 1e6:6.2f} M events/s (best of {args.repeat})")
    print(f"hand closures  : {hand_rate / 1e6:6.2f} M events/s (best of {args.repeat})")
    print(f"ratio rillet / hand-written: {rillet_rate / hand_rate:.2f} (target >= 0.60)")


if __name__ == "__main__":
    main()
