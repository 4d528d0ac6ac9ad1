"""One plain ``rillet run`` against an edge with N workers on NATS JetStream, side by side.

    .venv/bin/python tests/benchmarks/bench_scaleout.py [--workers 2] [--messages 300]

Four client threads each send ``--messages`` requests of 100 events (1000
hosts) and wait for every ack. Reported per setup: acknowledged events/s,
p50/p99 ack latency, events/s until the index holds the last event (for the
scale-out, the workers have processed everything: each host's
last event is a sentinel, polled for), and CPU seconds per
million events summed over every process involved (rillet, its workers and
nats-server).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_server import free_port, wait_for_port

from streams import Event
from transport import Client

CONFIG = """
import os
from streams import *
from transport import tcp_server

tcp_server(port=int(os.environ["BENCH_PORT"]))
streams(
    index,
    by("host", changed_state(lambda event: None)),
    where('state = "critical"', by("host", throttle(1, 60, lambda event: None))),
)
"""
CLIENTS = 4
BATCH = 100
HOSTS = 1000


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def family(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found.extend(family(int(child)))
    except OSError:
        pass
    return found


def batches(client_number: int, messages: int) -> list[list[Event]]:
    return [[Event(host=f"host-{(client_number * 7919 + m * BATCH + i) % HOSTS}",
                   service="load", state="critical" if (m + i) % 5 == 0 else "ok",
                   metric=m, ttl=600) for i in range(BATCH)] for m in range(messages)]


def measure(name: str, argv: list[str], messages: int, extra_pids: list[int]) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "BENCH_PORT": str(port)}
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        # Ready once a query is answered (every partition has an owner).
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(port=port, timeout=10) as client:
                    client.query("true")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        time.sleep(3)  # let the workers settle their leases before measuring
        loads = [batches(n, messages) for n in range(CLIENTS)]
        latencies: list[float] = []
        lock = threading.Lock()

        def send(load: list[list[Event]]) -> None:
            mine = []
            with Client(port=port, timeout=60) as client:
                for events in load:
                    began = time.perf_counter()
                    client.send(events)
                    mine.append(time.perf_counter() - began)
            with lock:
                latencies.extend(mine)

        pids = family(process.pid) + extra_pids
        before = {p: cpu_seconds(p) for p in pids}
        cpu_before = sum(before.values())
        began = time.perf_counter()
        threads = [threading.Thread(target=send, args=(load,)) for load in loads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        acked = time.perf_counter() - began
        # Partitions are consumed in order, so once every host's "done" is indexed,
        # everything sent before it was processed.
        with Client(port=port, timeout=30) as client:
            client.send([Event(host=f"host-{h}", service="done") for h in range(HOSTS)])
            while len(client.query('service = "done"')) < HOSTS:
                time.sleep(0.01)
        processed = time.perf_counter() - began
        cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
        if os.environ.get("BENCH_BREAKDOWN"):
            # The first pid is rillet (the edge), the last nats-server, workers between.
            print(name, "CPU s per process:", [round(cpu_seconds(p) - before[p], 2)
                                              for p in pids])
    finally:
        process.terminate()
        process.wait(30)
    events = CLIENTS * messages * BATCH
    latencies.sort()
    return {"events/s acked": events / acked, "events/s processed": events / processed,
            "p50 ack ms": 1000 * latencies[len(latencies) // 2],
            "p99 ack ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "cpu s per M events": cpu / events * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args()
    binary = shutil.which("nats-server")
    if binary is None:
        sys.exit("nats-server not found: apt-get install nats-server")
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "bench.py"
        config.write_text(CONFIG)
        nats_port = free_port()
        nats = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(nats_port),
                                 "-sd", str(Path(directory) / "store")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(nats_port)
            rillet = [sys.executable, "-m", "transport._cli", "run", str(config),
                      "--log-level", "warning"]
            results = {
                "plain": measure("plain", rillet, args.messages, []),
                f"edge+{args.workers}": measure(
                    "scaled", [*rillet, "--workers", str(args.workers), "--nats",
                               f"nats://127.0.0.1:{nats_port}", "--partitions",
                               str(args.partitions)], args.messages, [nats.pid]),
            }
        finally:
            nats.terminate()
            nats.wait(10)
    names = list(results)
    print(f"{CLIENTS} clients x {args.messages} messages x {BATCH} events, "
          f"{os.cpu_count()} CPUs")
    print(f"{'':22}" + "".join(f"{name:>14}" for name in names) + f"{'ratio':>10}")
    for metric in results[names[0]]:
        values = [results[name][metric] for name in names]
        print(f"{metric:22}" + "".join(f"{v:14.1f}" for v in values)
              + f"{values[1] / values[0]:10.2f}")


if __name__ == "__main__":
    main()
