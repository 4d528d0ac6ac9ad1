"""Load and faults: the longest stall a bystander client sees, and what the guards cost ingest.

    .venv/bin/python tests/benchmarks/bench_freeze.py [--seconds 10] [--rounds 3] [--base main]

1. Faults under load. `rillet run` (pinned to CPU 0) indexes what 4 pipelining
   connections send (100-event messages), while a hostile thread sends, over
   and over: a LIKE query with many wildcards and a nested-quantifier regex
   against 200-character services, far-future events into a
   fixed_time_window, a stream that raises, garbage UDP, a half-sent frame
   on a new connection, and a 100,000-event message. A bystander process pings
   on its own connection every 10 ms; the longest round trip is the stall.
   Run against this tree and against ``--base`` (a git revision, exported
   with git archive), alternating round by round: the longest stall of each
   round, side by side.
2. Ingest cost. The same index-only load against this tree and against
   ``--base``, alternating round by round; the median of the per-round
   ratios is printed.
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _helpers import hostile_requests
from bench_server import (
    KEYS,
    Load,
    free_port,
    measure,
    messages,
    pinned,
    rss_mib,
    wait_for_port,
)

from streams import Event
from transport._codec import FrameDecoder, encode_request

ROOT = Path(__file__).resolve().parents[2]

FAULT_CONFIG = """
from streams import *
from transport import tcp_server, udp_server
tcp_server(port={tcp})
udp_server(port={udp})

def always_fails(event):
    raise ValueError("a stream that raises on every event")

streams(
    index,
    where('service = "fail"', always_fails),
    where('service = "window"', fixed_time_window(10, smap(folds.count, index))),
)
"""

INDEX_CONFIG = """
from streams import *
from transport import tcp_server
tcp_server(port={tcp})
streams(index)
"""


def hostile(tcp: int, udp: int, stop: threading.Event, counts: dict[str, int]) -> None:
    requests = hostile_requests()
    huge = encode_request([Event(host=f"h{i}", service="huge", time=time.time())
                           for i in range(100_000)])
    udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    half_open: list[socket.socket] = []
    rounds = 0
    with socket.create_connection(("127.0.0.1", tcp)) as sock:
        decoder = FrameDecoder()
        while not stop.is_set():
            for payload in requests:
                sock.sendall(payload)
                while decoder.next_frame() is None:
                    decoder.feed(sock.recv(1 << 16))
                counts["hostile requests"] = counts.get("hostile requests", 0) + 1
            udp_sock.sendto(b"\xff\xff garbage", ("127.0.0.1", udp))
            if len(half_open) < 20:
                partial = socket.create_connection(("127.0.0.1", tcp))
                partial.sendall(encode_request([Event(service="half", time=1)])[:9])
                half_open.append(partial)
            if rounds % 20 == 0:
                sock.sendall(huge)
                while decoder.next_frame() is None:
                    decoder.feed(sock.recv(1 << 16))
                counts["huge messages"] = counts.get("huge messages", 0) + 1
            rounds += 1
            time.sleep(0.05)
    for partial in half_open:
        partial.close()
    udp_sock.close()


BYSTANDER = """
import socket, sys, time
from streams import Event
from transport._codec import OK_REPLY, encode_request
ping = encode_request([Event(host="bystander", service="ping", time=time.time())])
stalls = []
end = time.monotonic() + float(sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as sock:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while time.monotonic() < end:
        started = time.perf_counter()
        sock.sendall(ping)
        received = b""
        while len(received) < len(OK_REPLY):
            received += sock.recv(64)
        stalls.append(time.perf_counter() - started)
        time.sleep(0.01)
print(" ".join(map(str, stalls)))
"""


def bystander(tcp: int, seconds: float) -> subprocess.Popen[str]:
    """Pings from its own process, so the load generator's threads do not delay it."""
    return subprocess.Popen(pinned(1, [sys.executable, "-c", BYSTANDER, str(tcp), str(seconds)]),
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def faults(seconds: float, frames: list[bytes], tmp: str, tree: Path = ROOT,
           label: str = "this tree") -> float:
    """One run of the faults under load against the server in ``tree``: the longest stall."""
    tcp, udp = free_port(), free_port()
    config = Path(tmp, f"faults-{tcp}.py")
    config.write_text(textwrap.dedent(FAULT_CONFIG.format(tcp=tcp, udp=udp)))
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    server = subprocess.Popen(pinned(0, [sys.executable, "-m", "transport._cli", "run",
                                         str(config), "--log-level", "error"]),
                              cwd=tree, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_for_port(tcp)
    stop = threading.Event()
    counts: dict[str, int] = {}
    load = Load(tcp, frames)
    threads = [threading.Thread(target=hostile, args=(tcp, udp, stop, counts), daemon=True)]
    try:
        load.start()
        for thread in threads:
            thread.start()
        started = time.perf_counter()
        pings = bystander(tcp, seconds)
        output, _ = pings.communicate(timeout=seconds + 30)
        acked = load.acked
        elapsed = time.perf_counter() - started
        rss = rss_mib(server.pid)
        stop.set()
        load.stop.set()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=15)
    stalls = sorted(float(s) for s in output.split())
    print(f"{label:10s}: faults under load for {seconds:.0f} s: longest bystander stall "
          f"{stalls[-1] * 1e3:.1f} ms, p99 {stalls[int(len(stalls) * 0.99)] * 1e3:.1f} ms, "
          f"median {statistics.median(stalls) * 1e3:.2f} ms over {len(stalls)} pings; "
          f"ingest meanwhile {acked * 100 / elapsed / 1e3:.0f} k events/s; RSS {rss:.0f} MiB; "
          f"{counts}", flush=True)
    return stalls[-1]


def export(base: str, tmp: str) -> Path:
    """The tree of git revision ``base``, exported with git archive (and its C parser built)."""
    base_tree = Path(tmp, "base")
    base_tree.mkdir()
    archive = subprocess.run(["git", "archive", base], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive, check=True)
    for built in ROOT.glob("transport/_fastwire*.so"):
        # The same extension as here, unless the base's C source differs.
        if (base_tree / "transport/_fastwire.c").read_bytes() == \
                (ROOT / "transport/_fastwire.c").read_bytes():
            (base_tree / "transport" / built.name).write_bytes(built.read_bytes())
    return base_tree


def stalls(seconds: float, rounds: int, base: str, base_tree: Path, frames: list[bytes],
           tmp: str) -> None:
    """The faults under load against this tree and ``base``, alternating round by round."""
    longest: dict[str, list[float]] = {"this tree": [], base: []}
    for _ in range(rounds):
        for label, tree in (("this tree", ROOT), (base, base_tree)):
            longest[label].append(faults(seconds, frames, tmp, tree, label))
    for label, found in longest.items():
        print(f"{label:10s}: longest bystander stall per round "
              f"{', '.join(f'{s * 1e3:.0f}' for s in found)} ms; worst {max(found) * 1e3:.0f} ms, "
              f"median {statistics.median(found) * 1e3:.0f} ms")


def cost(seconds: float, rounds: int, base: str, base_tree: Path, frames: list[bytes],
         tmp: str) -> None:
    servers = {}
    for name, tree in (("this tree", ROOT), (base, base_tree)):
        port = free_port()
        config = Path(tmp, f"index-{port}.py")
        config.write_text(textwrap.dedent(INDEX_CONFIG.format(tcp=port)))
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
        server = subprocess.Popen(pinned(0, [sys.executable, "-m", "transport._cli", "run",
                                             str(config), "--log-level", "warning"]),
                                  cwd=tree, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_for_port(port)
        servers[name] = (server, port)
    rates: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for _ in range(rounds):
            for name, (_server, port) in servers.items():
                rates[name] += measure(port, frames, 100, 2, seconds, 1)
    finally:
        for server, _port in servers.values():
            server.terminate()
            server.wait(timeout=10)
    for name, found in rates.items():
        print(f"{name:10s}: median {statistics.median(found) / 1e3:6.0f} k events/s (rounds: "
              f"{', '.join(f'{r / 1e3:.0f}k' for r in found)})")
    ratios = [a / b for a, b in zip(rates["this tree"], rates[base], strict=True)]
    print(f"this tree / {base}, median of per-round ratios: {statistics.median(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default=None,
                        help="git revision to compare ingest with (default: where this branch "
                             "left main)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    base = args.base or subprocess.run(["git", "merge-base", "main", "HEAD"], cwd=ROOT,
                                       capture_output=True, text=True,
                                       check=True).stdout.strip()[:12]
    frames = messages(100, KEYS // 100)
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = export(base, tmp)
        stalls(args.seconds, args.rounds, base, base_tree, frames, tmp)
        cost(args.seconds, args.rounds, base, base_tree, frames, tmp)


if __name__ == "__main__":
    main()
