"""The clients' hot paths: round trips, pipelining and concurrent trio tasks.

    .venv/bin/python tests/benchmarks/bench_client.py [--rounds 5] [--baseline OLD.py]

The server is bench_server's bare decode+ack loop, in its own process pinned
to CPU 0, so the client (this process, pinned to CPU 1) is what is measured.
``--baseline`` names another client module file (e.g. ``git show
main:transport/_client.py > /tmp/old_client.py``) defining ``Client`` and
``TrioClient``; its rounds alternate with the current clients' rounds and the
medians are printed side by side with their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import trio
from bench_server import BARE_SERVER, ROOT, free_port, pinned, wait_for_port

from streams import Event
from transport import Client, TrioClient

EVENT = Event(host="web1", service="cpu", metric=0.5, state="ok", tags=("bench",))
ROUND_TRIPS = 2000
PIPELINED = 20_000
TASKS = 16


def load(path: str) -> tuple[Any, Any]:
    spec = importlib.util.spec_from_file_location("baseline_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Client, module.TrioClient


def workloads(port: int, client_class: Any, trio_class: Any) -> dict[str, Callable[[], int]]:
    def sync_round_trips() -> int:
        with client_class("127.0.0.1", port) as client:
            for _ in range(ROUND_TRIPS):
                client.send(EVENT)
        return ROUND_TRIPS

    def sync_pipelined() -> int:
        with client_class("127.0.0.1", port) as client:
            return int(client.send_many([EVENT] for _ in range(PIPELINED)))

    def trio_round_trips() -> int:
        async def main() -> None:
            async with trio_class("127.0.0.1", port) as client:
                for _ in range(ROUND_TRIPS):
                    await client.send(EVENT)
        trio.run(main)
        return ROUND_TRIPS

    def trio_concurrent() -> int:
        async def task(client: Any) -> None:
            for _ in range(ROUND_TRIPS // TASKS):
                await client.send(EVENT)

        async def main() -> None:
            async with trio_class("127.0.0.1", port) as client, trio.open_nursery() as nursery:
                for _ in range(TASKS):
                    nursery.start_soon(task, client)
        trio.run(main)
        return ROUND_TRIPS // TASKS * TASKS

    def trio_pipelined() -> int:
        async def main() -> int:
            async with trio_class("127.0.0.1", port) as client:
                return int(await client.send_many([EVENT] for _ in range(PIPELINED)))
        return trio.run(main)

    return {"sync round trips": sync_round_trips, "sync send_many": sync_pipelined,
            "trio round trips": trio_round_trips, f"trio {TASKS} tasks": trio_concurrent,
            "trio send_many": trio_pipelined}


def rate(work: Callable[[], int]) -> float:
    started = time.perf_counter()
    done = work()
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="a client module file to compare with")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    port = free_port()
    server = subprocess.Popen(pinned(0, [sys.executable, "-c", BARE_SERVER, str(port)]),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        sides = {"current": workloads(port, Client, TrioClient)}
        if args.baseline:
            sides["baseline"] = workloads(port, *load(args.baseline))
        rates: dict[tuple[str, str], list[float]] = {}
        order = list(sides)
        for _ in range(args.rounds):
            for name in sides["current"]:
                for side in order:
                    rates.setdefault((side, name), []).append(rate(sides[side][name]))
            order.reverse()  # neither side always runs first
    finally:
        server.terminate()
        server.wait()
    print(f"requests/s, median of {args.rounds} alternating rounds")
    for name in sides["current"]:
        current = statistics.median(rates["current", name])
        line = f"{name:18} current {current:9,.0f}"
        if args.baseline:
            baseline = statistics.median(rates["baseline", name])
            line += f"   baseline {baseline:9,.0f}   current/baseline {current / baseline:.2f}"
        print(line)


if __name__ == "__main__":
    main()
