"""What self-instrumentation costs ingest: `rillet run` with and without it, side by side.

    .venv/bin/python tests/benchmarks/bench_instrumentation.py [--seconds 4] [--rounds 3]
        [--configs index pipeline skew] [--base main]

For each config, three servers, each in its own process pinned to CPU 0:

- ``off``: this tree, no instrumentation;
- ``on``: this tree with ``instrumentation(interval=1)`` (ten times Riemann's
  rate of reports, so the by census and the latency sample weigh more);
- ``base``: ``--base`` (default: where this branch left main) without it, to
  show the latency hook costs nothing when instrumentation is off.

The load (this process, CPU 1) pipelines 100-event messages over 4 TCP
connections with 256 requests outstanding each, covering 100,000 keys on
1,000 hosts. Rounds alternate between the servers. Each round gives the
throughput and the server's CPU time per event (user + system, from
/proc): on a shared, busy machine throughput swings with the neighbours,
CPU time per event much less, so the ratio to trust is ``off / on`` of CPU
per event (the throughput one server would reach on a core of its own).
Printed: medians, and the median of the per-round ratios (target: >= 0.95).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import KEYS, Load, free_port, messages, snapshot, start, stop

ROOT = Path(__file__).resolve().parents[2]

CONFIGS = {
    "index": "streams(index)",
    # Riemann's "where -> by -> rate -> with -> index" figure: one by of 1,000 keys.
    "pipeline": ("streams(where('service =~ \"svc-%\"', by('host', rate(1, "
                 "with_(None, index, service='rate')))))"),
    # A by whose forks hold a stream with max_skew: the census walks (a sample of) them,
    # and base shows what the skew check costs ewma.
    "skew": "streams(index, by('host', ewma(10, bit_bucket())))",
}

CONFIG = """
from streams import *
from transport import instrumentation, tcp_server
tcp_server(port={port})
{instrumentation}
{streams}
"""


def servers(tmp: Path, config: str, base: Path | None) -> dict[str, tuple[Any, int]]:
    started = {}
    for name in ("off", "on", "base"):
        if name == "base" and base is None:
            continue
        port = free_port()
        path = tmp / f"{config}_{name}.py"
        path.write_text(textwrap.dedent(CONFIG.format(
            port=port, streams=CONFIGS[config],
            instrumentation="instrumentation(interval=1)" if name == "on" else "")))
        tree = base if name == "base" and base is not None else ROOT
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
        started[name] = (start([sys.executable, "-m", "transport._cli", "run", str(path),
                                "--log-level", "warning"], port, env, tree), port)
    return started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: Any, port: int, frames: list[bytes], warmup: float,
            seconds: float) -> tuple[float, float]:
    """Events per second and the server's CPU nanoseconds per event over one round."""
    load = Load(port, frames)
    load.start()
    time.sleep(warmup)
    acked, cpu, started = load.acked, cpu_seconds(server.pid), time.perf_counter()
    time.sleep(seconds)
    events = (load.acked - acked) * 100
    rate = events / (time.perf_counter() - started)
    per_event = (cpu_seconds(server.pid) - cpu) / events * 1e9 if events else 0.0
    load.stop.set()
    return rate, per_event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--base", default="main",
                        help="git revision run as 'base' (default: where this branch left "
                             "main); 'none' to skip it")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    frames = messages(100, KEYS // 100)
    with tempfile.TemporaryDirectory() as tmp:
        base = None if args.base == "none" else snapshot(args.base, Path(tmp, "base"))
        for config in args.configs:
            running = servers(Path(tmp), config, base)
            rates: dict[str, list[float]] = {name: [] for name in running}
            costs: dict[str, list[float]] = {name: [] for name in running}
            try:
                for _ in range(args.rounds):
                    for name, (server, port) in running.items():
                        rate, cost = measure(server, port, frames, 2, args.seconds)
                        rates[name].append(rate)
                        costs[name].append(cost)
            finally:
                stop(running)
            print(f"{config}:")
            for name in running:
                print(f"  {name:5s} median {statistics.median(rates[name]) / 1e3:6.0f} k events/s,"
                      f" {statistics.median(costs[name]):6.0f} ns CPU/event (rounds: "
                      f"{', '.join(f'{r / 1e3:.0f}k' for r in rates[name])})")
            for name in ("on", "base"):
                if name in rates:
                    # A round in which the shared machine starved a server says nothing.
                    pairs = [(a, b, c, d) for a, b, c, d in zip(
                        rates[name], rates["off"], costs[name], costs["off"], strict=True)
                        if a and b and c and d]
                    throughput = statistics.median(a / b for a, b, _, _ in pairs)
                    cpu = statistics.median(d / c for _, _, c, d in pairs)
                    print(f"  {name} / off, medians of per-round ratios: throughput "
                          f"{throughput:.3f}, CPU per event (off / {name}) {cpu:.3f} "
                          f"({len(pairs)} rounds)")


if __name__ == "__main__":
    main()
