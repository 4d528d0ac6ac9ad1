"""End-to-end ingest: `rillet run` against a bare decode+ack trio loop, side by side in one run.

    .venv/bin/python tests/benchmarks/bench_server.py [--seconds 4] [--rounds 3]
        [--sizes 1 10 100] [--configs index pipeline] [--before REV] [--record]

Four servers, each in its own process pinned to CPU 0 (``taskset``):

- ``bare``: protobuf decode and coalesced acks only, the ceiling for a Python server;
- ``c``: ``rillet run`` with the C parser (transport/_fastwire.c);
- ``python``: ``rillet run`` with ``RILLET_PURE_PYTHON=1``, the fallback;
- ``before``: ``rillet run`` from ``git archive REV`` (default: where this branch
  left main), with this checkout's C parser when REV has the same source, to
  compare with the code this branch changed.

The load generator, this process pinned to CPU 1, pipelines pre-serialised
messages over 4 TCP connections with 256 requests outstanding each, and
counts acks. For every config and message size, rounds alternate between
the servers (drift on a shared VM hits them all alike); each round warms up,
then measures events/s. Medians are printed with the Riemann 0.3.13 figures
measured on this machine class (issue 12; not re-measured here), then each
rillet's RSS after indexing 100,000 distinct keys.

With ``--record``, every rillet records (``--record`` into a temporary
directory, its sinks' live alert log included): ``c / before`` is then the
cost of what this branch changed in recording.
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
from typing import Any

from streams import Event
from transport._codec import OK_REPLY, encode_request

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 4
OUTSTANDING = 256
KEYS = 100_000

CONFIGS = {
    # Riemann's "index only" figure.
    "index": "streams(index)",
    # Riemann's "where -> by -> rate -> with -> index" figure.
    "pipeline": ("streams(where('service =~ \"svc-%\"', by('host', rate(1, "
                 "with_(None, index, service='rate')))))"),
    # Sinks declared (a recording captures them) that no event reaches: no alert.
    "sinks": ("from transport import pagerduty, webhook\n"
              "streams(where('service = \"never\"', by('host', throttle(1, 60, "
              "pagerduty('0123456789abcdef0123456789abcdef', url='http://127.0.0.1:9/'), "
              "webhook('http://127.0.0.1:9/')))), index)"),
}

# Riemann 0.3.13 on OpenJDK 17, events/s per core at 1, 10, 100 events per
# message, measured side by side with rillet on this machine class (issue 12).
RIEMANN = {"index": {1: 54_600, 10: 306_700, 100: 535_500},
           "pipeline": {1: 53_700, 10: 278_200, 100: 431_000}}
RILLETS = ("c", "python", "before")

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


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def index_once(port: int, frames: list[bytes]) -> None:
    """Send every frame once on one connection and wait for all the acks."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(frames))
        expected, received = len(frames) * len(OK_REPLY), 0
        while received < expected:
            data = sock.recv(1 << 16)
            if not data:
                raise SystemExit("the server closed the connection while indexing")
            received += len(data)


def memory(tmp: Path, before: Path | None) -> dict[str, tuple[float, float]]:
    """Each rillet's (peak, current) RSS in MiB after indexing KEYS distinct keys once."""
    servers = rillets(tmp, "index", before, tag="memory")
    try:
        frames = messages(100, KEYS // 100)
        found = {}
        for name, (server, port) in servers.items():
            index_once(port, frames)
            found[name] = (rss_mib(server.pid, "VmHWM"), rss_mib(server.pid))
        return found
    finally:
        stop(servers)


def start(command: list[str], port: int, env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(pinned(0, command), cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    wait_for_port(port)
    return server


def snapshot(revision: str, into: Path) -> Path | None:
    """The tree of ``revision`` (``git archive``), or None when git cannot give it."""
    if revision == "main":
        found = subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT,
                               capture_output=True, text=True)
        if found.returncode != 0:
            return None
        revision = found.stdout.strip()
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        return None
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    # The C extensions are built by pip, not archived: one whose source is the
    # same in both trees is copied from this checkout's build, so that a
    # comparison measures the code that changed, not C against Python.
    for source in (*ROOT.glob("streams/*.c"), *ROOT.glob("transport/*.c")):
        theirs = into / source.relative_to(ROOT)
        if theirs.exists() and theirs.read_bytes() == source.read_bytes():
            for built in source.parent.glob(f"{source.stem}*.so"):
                shutil.copy(built, theirs.parent / built.name)
    return into


def rillets(tmp: Path, config: str, before: Path | None,
            tag: str = "", record: bool = False) -> dict[str, tuple[Any, int]]:
    """Start the rillet servers for ``config``: name -> (process, port)."""
    started = {}
    for name in RILLETS:
        if name == "before" and before is None:
            continue
        port = free_port()
        path = Path(tmp, f"{config}_{name}{tag}.py")
        path.write_text(textwrap.dedent(RILLET_CONFIG.format(port=port,
                                                             streams=CONFIGS[config])))
        env = dict(os.environ)
        env.pop("RILLET_PURE_PYTHON", None)
        cwd = ROOT
        if name == "python":
            env["RILLET_PURE_PYTHON"] = "1"
        if name == "before":
            assert before is not None
            env["PYTHONPATH"] = str(before)
            cwd = before
        recording = ["--record", str(Path(tmp, f"rec_{config}_{name}{tag}"))] if record else []
        started[name] = (start([sys.executable, "-m", "transport._cli", "run", str(path),
                                "--log-level", "warning", *recording], port, env, cwd), port)
    return started


def stop(servers: dict[str, tuple[Any, int]]) -> None:
    for server, _port in servers.values():
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100],
                        help="events per message")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS),
                        default=["index", "pipeline"])
    parser.add_argument("--before", default="main",
                        help="git revision of the 'before' server; 'none' to leave it out")
    parser.add_argument("--record", action="store_true",
                        help="every rillet records (--record into a temporary directory)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs; server and load share a core", file=sys.stderr)
    else:
        os.sched_setaffinity(0, {1})
    print(f"{CONNECTIONS} connections x {OUTSTANDING} outstanding, servers pinned to CPU 0, "
          f"{args.rounds} alternating rounds of {args.seconds:.0f} s per cell", flush=True)
    # rates[config][size][server] -> per-round events/s
    rates: dict[str, dict[int, dict[str, list[float]]]] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before = None if args.before == "none" else snapshot(args.before, Path(tmp, "before"))
        peaks = memory(Path(tmp), before)
        bare_path = Path(tmp, "bare.py")
        bare_path.write_text(BARE_SERVER)
        bare_port = free_port()
        bare = start([sys.executable, str(bare_path), str(bare_port)], bare_port)
        try:
            for config in args.configs:
                servers = {"bare": (bare, bare_port),
                           **rillets(Path(tmp), config, before, record=args.record)}
                try:
                    rates[config] = {}
                    for size in args.sizes:
                        frames = messages(size, KEYS // size)
                        cell = rates[config][size] = {name: [] for name in servers}
                        for _ in range(args.rounds):
                            for name, (_server, port) in servers.items():
                                cell[name] += measure(port, frames, size, args.warmup,
                                                      args.seconds, 1)
                        print(f"  {config} {size:3d}: " + ", ".join(
                            f"{name} {statistics.median(found) / 1e3:.0f}k"
                            for name, found in cell.items()), flush=True)
                    if config == "index":
                        for name, (server, _port) in servers.items():
                            if name != "bare":
                                rss[name] = rss_mib(server.pid)
                finally:
                    stop({k: v for k, v in servers.items() if k != "bare"})
        finally:
            stop({"bare": (bare, bare_port)})
    report(rates, rss, peaks)


def report(rates: dict[str, dict[int, dict[str, list[float]]]], rss: dict[str, float],
           peaks: dict[str, tuple[float, float]]) -> None:
    names = [n for n in RILLETS if any(n in cell for by_size in rates.values()
                                       for cell in by_size.values())]
    header = ("| config | events/msg | Riemann (issue 12) | bare | "
              + " | ".join(f"rillet {n}" for n in names) + " | c / Riemann | c / bare | "
              "python / before | c / before |")
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for config, by_size in rates.items():
        for size, cell in by_size.items():
            median = {name: statistics.median(found) for name, found in cell.items()}
            riemann = RIEMANN.get(config, {}).get(size)

            def ratio(a: str, b: str, cell: dict[str, list[float]] = cell) -> str:
                if a not in cell or b not in cell:
                    return "-"
                per_round = [x / y for x, y in zip(cell[a], cell[b], strict=True)]
                return f"{statistics.median(per_round):.2f}"

            print(f"| {config} | {size} | "
                  + (f"{riemann / 1e3:.1f}k" if riemann else "-") + " | "
                  + f"{median['bare'] / 1e3:.0f}k | "
                  + " | ".join(f"{median[n] / 1e3:.0f}k" if n in median else "-" for n in names)
                  + " | " + (f"{median['c'] / riemann:.2f}" if riemann and "c" in median
                             else "-")
                  + f" | {ratio('c', 'bare')} | {ratio('python', 'before')} | "
                  + f"{ratio('c', 'before')} |")
    print()
    print(f"After indexing {KEYS:,} distinct keys once (100-event messages), peak / current "
          "RSS: " + ", ".join(f"{name} {peak:.0f} / {now:.0f} MiB"
                               for name, (peak, now) in peaks.items()))
    if rss:
        print("RSS at the end of the index-only runs: " + ", ".join(
            f"{name} {mib:.0f} MiB" for name, mib in rss.items()))


if __name__ == "__main__":
    main()
