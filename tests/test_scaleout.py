"""Scale-out on NATS JetStream as a user runs it: real nats-server, `rillet run` processes.

One nats-server (JetStream, loopback, free port) serves the session; each
test uses its own stream name, so its partitions, leases and snapshots are
its own. Workers record every event they see and every alert to files, so
the tests compare what reached the streams with what clients had acked.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trio
from _peers import Process, free_port, listening, poll
from conftest import require_binary
from test_live import SseReader, websocket
from trio_websocket import ConnectionClosed, open_websocket_url

from streams import Event, Runtime
from transport import Client, RiemannError, TrioScheduler
from transport._codec import OK_REPLY, encode_request
from transport._edge import Edge
from transport._jetstream import ScaleOut
from transport._worker import Worker

pytestmark = pytest.mark.network

CONFIG = """
import json, os
from streams import *
from transport import tcp_server

tcp_server(port=int(os.environ["RILLET_TEST_PORT"]))
_out = open(os.path.join(os.environ["RILLET_TEST_OUT"], f"{os.getpid()}.jsonl"), "a",
            buffering=1)

def record(kind):
    def write(event):
        _out.write(json.dumps([kind, event.host, event.service, event.state, event.metric,
                               event.time]) + "\\n")
    return write

streams(
    index,
    by("host", changed_state(record("changed"))),
    where('state = "critical"', by("host", throttle(2, 10, record("throttled")))),
    record("seen"),
)
"""


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One nats-server with JetStream for the session, on a free loopback port."""
    binary = require_binary("nats-server", "nats-server")
    root = tmp_path_factory.mktemp("nats")
    port = free_port()
    server = Process("nats-server", [binary, "-js", "-a", "127.0.0.1", "-p", str(port),
                                     "-sd", str(root / "store")], root / "nats.log", [port])
    server.start()
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.stop()


class Rillet:
    """A `rillet run` process with the test config, its output in a log file."""

    def __init__(self, directory: Path, port: int, out: Path, *args: str,
                 config_text: str = CONFIG, env: dict[str, str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        config = directory / "monitoring.py"
        config.write_text(config_text)
        self.log = directory / f"rillet-{len(list(directory.glob('rillet-*.log')))}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "transport._cli", "run", str(config), *args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "RILLET_TEST_PORT": str(port), "RILLET_TEST_OUT": str(out),
                     **(env or {})})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def records(out: Path) -> list[list[Any]]:
    found = []
    for path in out.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.endswith("]"):
                found.append(json.loads(line))
    return found


def ready(port: int) -> bool:
    """The edge listens and every partition's owner answers queries."""
    if not listening(port):
        return False
    try:
        with Client(port=port, timeout=10) as client:
            client.query("true")
    except Exception:
        return False
    return True


def owners(log: str) -> dict[str, set[int]]:
    """Worker name → the partitions it holds, read from the workers' log lines."""
    held: dict[str, set[int]] = {}
    for name, verb, partition in re.findall(r"rillet\.worker: (\S+) (took|released|lost the "
                                            r"lease on) partition (\d+)", log):
        mine = held.setdefault(name, set())
        (mine.add if verb == "took" else mine.discard)(int(partition))
    return held


def held(rillet: Rillet) -> set[int]:
    """The partitions a worker process holds now."""
    return set().union(*owners(rillet.text()).values())


def workload(hosts: int, rounds: int) -> list[list[Event]]:
    """Rounds of one event per host: states flip at host-specific rates, times advance."""
    return [[Event(host=f"host-{h}", service="http",
                   state="critical" if (r // (1 + h % 4)) % 3 == 0 else "ok",
                   metric=r, time=1000 + r, ttl=3600)
             for h in range(hosts)] for r in range(rounds)]


def send_in_background(port: int, rounds: list[list[Event]], acked: list[Event], *,
                       pause_after: int, resume: threading.Event) -> threading.Thread:
    """Send each round until acknowledged (again on a failure after a short pause, as a
    client does, for up to 90 s), adding it to ``acked``; after round ``pause_after``,
    wait for ``resume``."""
    def load() -> None:
        for number, events in enumerate(rounds):
            deadline = time.monotonic() + 90
            while True:
                try:
                    with Client(port=port, timeout=30) as client:
                        client.send(events)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)  # a client's pause before retrying, not a wait
            acked.extend(events)
            if number == pause_after:
                resume.wait(60)

    sender = threading.Thread(target=load)
    sender.start()
    return sender


def state_changes(events: list[Event]) -> set[tuple[Any, ...]]:
    """(host, metric) of the events that `by("host", changed_state(...))` forwards in
    one process: each host's first event and each one whose state differs from the last."""
    last: dict[str, Any] = {}
    changes = set()
    for event in events:
        if last.get(event.host, ()) != event.state:
            changes.add((event.host, event.metric))
        last[event.host] = event.state
    return changes


def snapshot_sequences(url: str, stream: str, partitions: set[int]) -> list[int]:
    """The stream sequence each partition's last snapshot covers (0 without one), read
    with nats-py as an operator's tool would."""
    import asyncio

    import nats
    from nats.js.errors import NotFoundError, ObjectNotFoundError

    async def read() -> list[int]:
        connection = await nats.connect(url)
        try:
            store = await connection.jetstream().object_store(f"{stream}_snapshots")
            found = []
            for partition in sorted(partitions):
                try:
                    # nats-py waits for an object's chunks without a deadline, and a
                    # worker rewriting the snapshot meanwhile purges them: bounded.
                    result = await asyncio.wait_for(store.get(f"p.{partition}"), 5)
                    data = result.data or b""
                except (NotFoundError, ObjectNotFoundError, TimeoutError):
                    data = b""
                found.append(int.from_bytes(data[:8], "big"))
            return found
        finally:
            await connection.close()

    return asyncio.run(read())


def index_of(port: int) -> set[tuple[Any, ...]]:
    with Client(port=port, timeout=10) as client:
        return {(e.host, e.service, e.state, e.metric, e.time) for e in client.query("true")}


def test_an_edge_with_three_workers_gives_the_alerts_and_index_of_one_plain_rillet(
        nats_url: str, tmp_path: Path) -> None:
    rounds = workload(hosts=40, rounds=24)
    plain_port, edge_port = free_port(), free_port()
    plain = Rillet(tmp_path / "plain", plain_port, tmp_path / "plain-out")
    scaled = Rillet(tmp_path / "scaled", edge_port, tmp_path / "scaled-out",
                    "--workers", "3", "--nats", nats_url, "--stream", "EQUIVALENCE",
                    "--partitions", "6")
    try:
        poll(lambda: listening(plain_port), 30, "the plain rillet")
        poll(lambda: ready(edge_port), 60, "the edge and its workers")
        # Partitions moving mid-workload would restart throttle/changed_state state
        # (docs/scale-out.md), so the workload starts once each worker holds its share.
        poll(lambda: sorted(len(p) for p in owners(scaled.text()).values()) == [2, 2, 2],
             60, "the 6 partitions balanced over 3 workers")
        for port in (plain_port, edge_port):
            with Client(port=port, timeout=10) as client:
                for events in rounds:
                    client.send(events)
        expected = index_of(plain_port)
        assert len(expected) == 40
        poll(lambda: index_of(edge_port) == expected, 30, "the workers' index to match")

        def alerts(out: Path) -> list[tuple[Any, ...]]:
            return sorted(tuple(r) for r in records(out))

        poll(lambda: len(alerts(tmp_path / "scaled-out")) >= len(alerts(tmp_path / "plain-out")),
             30, "the workers' alerts")
        plain_alerts = alerts(tmp_path / "plain-out")
        assert alerts(tmp_path / "scaled-out") == plain_alerts
        kinds = Counter(r[0] for r in plain_alerts)
        assert kinds["seen"] == 40 * 24 and kinds["changed"] > 40 and kinds["throttled"] > 40
        assert len({json.dumps(r) for r in records(tmp_path / "scaled-out")}) == len(plain_alerts)
    finally:
        scaled.stop()
        plain.stop()
    assert scaled.process.returncode == 0, scaled.text()[-3000:]
    # Stopping released every lease: no worker left behind.
    assert "Traceback" not in scaled.text(), scaled.text()[-3000:]


def test_killing_a_worker_mid_load_loses_nothing_acknowledged(
        nats_url: str, tmp_path: Path) -> None:
    settings = ScaleOut(partitions=8)
    edge_port = free_port()
    out = tmp_path / "out"
    common = ("--nats", nats_url, "--stream", "FAILOVER", "--partitions", "8",
              "--lease", "2", "--snapshot-interval", "1", "--query-timeout", "1")
    edge = Rillet(tmp_path / "edge", edge_port, out, *common)
    workers = [Rillet(tmp_path / f"worker-{n}", edge_port, out, "--worker", *common)
               for n in range(2)]
    rounds = workload(hosts=50, rounds=60)
    acked: list[Event] = []
    try:
        poll(lambda: ready(edge_port), 60, "the edge and its workers")
        poll(lambda: [len(held(w)) for w in workers] == [4, 4], 60, "the partitions balanced")
        victim = workers[0]
        victim_partitions = held(victim)
        killed = threading.Event()
        sender = send_in_background(edge_port, rounds, acked, pause_after=20, resume=killed)
        poll(lambda: len(acked) >= 21 * 50, 30, "a third of the load acknowledged")
        # The victim's snapshots cover part of the load, so its stream state is carried.
        poll(lambda: min(snapshot_sequences(nats_url, "FAILOVER", victim_partitions)) > 0, 30,
             "the victim's snapshots of the load so far")
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        killed.set()
        sender.join(60)
        assert not sender.is_alive() and len(acked) == 60 * 50

        survivor = workers[1]
        poll(lambda: len(held(survivor)) == 8, 30,
             "the survivor to take every partition")

        def seen() -> Counter[tuple[Any, ...]]:
            return Counter((r[1], r[4]) for r in records(out) if r[0] == "seen")

        want = {(e.host, e.metric) for e in acked}
        poll(lambda: want <= set(seen()), 30, "every acknowledged event to reach the streams")
        duplicates = {key: n - 1 for key, n in seen().items() if n > 1}
        # At least once: only the dead worker's partitions replay, and at most what
        # they received since that worker's last snapshot (one interval, here ~1 s).
        assert {settings.partition(Event(host=host)) for host, _ in duplicates} \
            <= victim_partitions
        assert sum(duplicates.values()) < sum(
            1 for e in acked if settings.partition(e) in victim_partitions)
        latest = {(f"host-{h}", 59) for h in range(50)}
        with Client(port=edge_port, timeout=10) as client:
            assert {(e.host, e.metric) for e in client.query('service = "http"')} == latest
        # The stream state moved with the partitions: changed_state alerted exactly on
        # the state changes one process would have seen (a fresh changed_state on the
        # survivor would alert on every host's first event there, changed or not), and
        # repeats only alerts of the victim's replayed events.
        changes = Counter((r[1], r[4]) for r in records(out) if r[0] == "changed")
        assert set(changes) == state_changes(acked)
        assert {settings.partition(Event(host=host)) for (host, _), n in changes.items()
                if n > 1} <= victim_partitions
        assert re.search(r"restored \d+ index entries and [1-9]\d* keys of stream state",
                         survivor.text()), survivor.text()[-3000:]

        # A worker that does not answer (here stopped) fails the query, naming its
        # partitions, rather than giving a partial answer.
        survivor.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(RiemannError, match=r"partitions \[0, 1, 2, 3, 4, 5, 6, 7\] "
                                                   r"did not answer within 1\.0 s"), \
                    Client(port=edge_port, timeout=10) as client:
                client.query("true")
        finally:
            survivor.process.send_signal(signal.SIGCONT)
    finally:
        for process in (edge, *workers):
            process.stop()


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Process]]:
    """Three clustered nats-servers with JetStream on loopback ports."""
    binary = require_binary("nats-server", "nats-server")
    root = tmp_path_factory.mktemp("nats-cluster")
    ports = [free_port() for _ in range(3)]
    routes = [free_port() for _ in range(3)]
    nodes = [Process(f"nats-server node {n}", [
        binary, "-js", "-a", "127.0.0.1", "-p", str(ports[n]), "-n", f"node-{n}",
        "-sd", str(root / f"store-{n}"), "--cluster_name", "rillet-test",
        "--cluster", f"nats://127.0.0.1:{routes[n]}",
        "--routes", ",".join(f"nats://127.0.0.1:{routes[m]}" for m in range(3) if m != n)],
        root / f"node-{n}.log", [ports[n]]) for n in range(3)]
    for node in nodes:
        node.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


# 10 to 25 s on a 2-core machine, most of it the cluster electing new leaders.
def test_a_cluster_node_killed_and_restarted_mid_load_loses_nothing_acknowledged(
        nats_cluster: list[Process], tmp_path: Path) -> None:
    urls = ",".join(f"nats://127.0.0.1:{node.ports[0]}" for node in nats_cluster)
    edge_port = free_port()
    out = tmp_path / "out"
    common = ("--nats", urls, "--replicas", "3", "--stream", "CLUSTER", "--partitions", "4",
              "--lease", "2", "--snapshot-interval", "1")
    edge = Rillet(tmp_path / "edge", edge_port, out, *common)
    worker = Rillet(tmp_path / "worker", edge_port, out, "--worker", *common)
    rounds = workload(hosts=20, rounds=40)
    acked: list[Event] = []
    node = nats_cluster[0]
    try:
        poll(lambda: ready(edge_port), 90, "the edge and its worker on the cluster")
        killed = threading.Event()
        sender = send_in_background(edge_port, rounds, acked, pause_after=15, resume=killed)
        poll(lambda: len(acked) >= 16 * 20, 30, "part of the load acknowledged")
        assert node.process is not None
        node.process.kill()
        node.process.wait()
        killed.set()
        # The load goes on while the node is down (two of three keep the quorum), and
        # after it is back.
        poll(lambda: len(acked) >= 28 * 20, 60, "load acknowledged while a node is down")
        node.start()
        sender.join(120)
        assert not sender.is_alive() and len(acked) == 40 * 20
        want = {(e.host, e.metric) for e in acked}
        poll(lambda: want <= {(r[1], r[4]) for r in records(out) if r[0] == "seen"}, 60,
             "every acknowledged event to reach the streams")
    finally:
        for process in (edge, worker):
            process.stop()


def test_an_edge_never_acknowledges_what_jetstream_did_not_store(tmp_path: Path) -> None:
    """JetStream slow (nats-server stopped with SIGSTOP): the edge stops reading its client
    and acknowledges everything once it resumes. JetStream gone (killed): the client gets
    an error reply, not an ok; once it is back, sending works again."""
    binary = require_binary("nats-server", "nats-server")
    port, edge_port = free_port(), free_port()
    argv = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "store")]
    nats = Process("nats-server", argv, tmp_path / "nats.log", [port]).start()
    edge = Rillet(tmp_path / "edge", edge_port, tmp_path / "out",
                  "--nats", f"nats://127.0.0.1:{port}", "--stream", "FAILURES",
                  "--partitions", "4", "--publish-timeout", "4")
    one = [Event(host="a", service="s", metric=1)]

    def sent(events: list[Event]) -> bool:
        try:
            with Client(port=edge_port, timeout=10) as client:
                client.send(events)
        except Exception:
            return False
        return True

    try:
        poll(lambda: listening(edge_port) and sent(one), 30, "the edge to store an event")

        # 600 requests of 20 events of 1 kB, 12 MB: more than loopback's socket buffers
        # hold, so the writer blocks once the edge stops reading.
        request = encode_request([Event(host=f"h{n}", service="s", metric=n,
                                        description="x" * 1000) for n in range(20)])
        total = 600
        written: list[int] = []
        nats.pause()
        with socket.create_connection(("127.0.0.1", edge_port), timeout=60) as sock:
            def write() -> None:
                for _ in range(total):
                    sock.sendall(request)
                    written.append(1)

            writer = threading.Thread(target=write)
            writer.start()
            # The writer gets stuck while JetStream stores nothing; an edge reading
            # on would take all 12 MB at once.
            poll(lambda: len(written) > 0, 10, "the first requests written")
            writer.join(1.5)
            assert writer.is_alive() and len(written) < total
            nats.resume()
            writer.join(60)
            assert not writer.is_alive() and len(written) == total
            replies = b""
            while len(replies) < total * len(OK_REPLY):
                data = sock.recv(65536)
                assert data, "the edge closed the connection"
                replies += data
            assert replies == OK_REPLY * total

        assert nats.process is not None
        nats.process.kill()
        nats.process.wait()
        with pytest.raises(RiemannError, match="JetStream did not store"), \
                Client(port=edge_port, timeout=30) as client:
            client.send(one)
        nats.start()
        poll(lambda: sent(one), 30, "the edge to store events again once JetStream is back")
    finally:
        edge.stop()
        nats.stop()
    assert edge.process.returncode == 0, edge.text()[-3000:]


LIVE_CONFIG = CONFIG.replace(
    "import tcp_server", "import sse_server, tcp_server, ws_server").replace(
    "tcp_server(port", "ws_server(port=int(os.environ['RILLET_TEST_WS_PORT']))\n"
    "sse_server(port=int(os.environ['RILLET_TEST_SSE_PORT']))\ntcp_server(port")


def test_websocket_and_sse_subscribers_of_an_edge_get_the_workers_index_and_updates(
        nats_url: str, tmp_path: Path) -> None:
    edge_port, ws_port, sse_port = free_port(), free_port(), free_port()
    common = ("--nats", nats_url, "--stream", "LIVE", "--partitions", "4")
    env = {"RILLET_TEST_WS_PORT": str(ws_port), "RILLET_TEST_SSE_PORT": str(sse_port)}
    edge = Rillet(tmp_path / "edge", edge_port, tmp_path / "out", *common,
                  config_text=LIVE_CONFIG, env=env)
    workers = [Rillet(tmp_path / f"worker-{n}", edge_port, tmp_path / "out", "--worker",
                      *common, config_text=LIVE_CONFIG, env=env) for n in range(2)]
    settings = ScaleOut(partitions=4)
    hosts = [f"web-{n}" for n in range(20)]
    query = quote('service = "live"')

    def send(events: list[Event]) -> None:
        with Client(port=edge_port, timeout=10) as client:
            client.send(events)

    def indexed() -> dict[str, float]:
        with Client(port=edge_port, timeout=10) as client:
            return {e.host: e.metric for e in client.query('service = "live"')}

    async def read_index() -> list[dict[str, Any]]:
        """What /index without subscribe=true sends before it closes the socket."""
        found = []
        async with websocket(f"ws://127.0.0.1:{ws_port}/index?query={query}") as socket:
            with trio.fail_after(30), contextlib.suppress(ConnectionClosed):
                while True:
                    found.append(json.loads(await socket.get_message()))
        return found

    async def subscribe() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        url = f"ws://127.0.0.1:{ws_port}/index?subscribe=true&query={query}"
        async with open_websocket_url(url) as socket:
            with trio.fail_after(30):
                # First what the workers have indexed, as a plain rillet sends it.
                first = [json.loads(await socket.get_message()) for _ in hosts]
                # An SSE subscriber alongside, as riemann-dash-style pages use.
                sse = await SseReader.open(sse_port, f"/index?query={query}")
                await sse.until(b"\r\n\r\n")
                assert sse.received.startswith(b"HTTP/1.1 200"), sse.received
            # Then every update, from the first one: sent once, none may fall
            # between the index's answer and the live updates.
            await trio.to_thread.run_sync(send, [
                *(Event(host=host, service="other", metric=1) for host in hosts),
                *(Event(host=host, service="live", metric=2) for host in hosts)])
            seen: dict[str, Any] = {}
            with trio.fail_after(30):
                while not all(seen.get(host, {}).get("metric") == 2 for host in hosts):
                    event = json.loads(await socket.get_message())
                    assert event["service"] == "live", event  # the query filters
                    seen[event["host"]] = event
            with trio.fail_after(30):
                while not all(any(e["host"] == host and e["metric"] == 2 for e in sse.events())
                              for host in hosts):
                    data = await sse.stream.receive_some(65536)
                    assert data, f"the edge closed the SSE stream: {sse.received!r}"
                    sse.received += data
            assert {e["service"] for e in sse.events()} == {"live"}, sse.events()
            await sse.stream.aclose()
        return first, seen

    try:
        poll(lambda: ready(edge_port), 60, "the edge and its workers")
        poll(lambda: [len(held(w)) for w in workers] == [2, 2], 60, "the partitions balanced")
        send([Event(host=host, service="live", metric=1, ttl=3600) for host in hosts])
        poll(lambda: indexed() == dict.fromkeys(hosts, 1), 30, "the workers to index them")
        snapshot = trio.run(read_index)
        first, seen = trio.run(subscribe)
    finally:
        for process in (edge, *workers):
            process.stop()
    # Every partition, so both workers (two each), reached the subscriber through the edge.
    assert {settings.partition(Event(host=host)) for host in hosts} == {0, 1, 2, 3}
    assert sorted((e["host"], e["metric"]) for e in snapshot) == [(h, 1) for h in sorted(hosts)]
    assert sorted((e["host"], e["metric"]) for e in first) == [(h, 1) for h in sorted(hosts)]
    assert set(hosts) <= set(seen)
    assert edge.process.returncode == 0, edge.text()[-3000:]


async def tick(gaps: list[float]) -> None:
    """Wake every millisecond, noting how long each wait really took: the longest is
    the longest the loop was held."""
    while True:
        before = trio.current_time()
        await trio.sleep(0.001)
        gaps.append(trio.current_time() - before)


@contextlib.asynccontextmanager
async def worker_owning_all(settings: ScaleOut, path: Path, name: str) -> Any:
    """A worker running ``path`` in this process, once it owns every partition (ready);
    yields its runtime, config, worker and nursery, and stops it afterwards."""
    runtime = Runtime(TrioScheduler())
    config = runtime.load(path)
    worker = Worker(settings, name=name)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run, config, runtime)
        with trio.fail_after(60):
            while len([o for o in worker.owned.values() if o.ready]) < settings.partitions:
                await trio.sleep(0.05)
        yield runtime, config, worker, nursery
        nursery.cancel_scope.cancel()


#: A config whose stream state is per host: what a snapshot must carry.
KEYED_CONFIG = "from streams import *\nstreams(by('host', changed_state(bit_bucket())), index)\n"


async def heir_restores(settings: ScaleOut, path: Path) -> dict[str, int]:
    """What a new worker taking every partition restores: index entries, keys of the
    config's first stream."""
    async with worker_owning_all(settings, path, "heir") as (runtime, config, _w, _n):
        return {"restored": len(runtime.index), "keys": len(config.streams[0])}


def test_a_query_over_a_large_index_does_not_hold_the_worker(
        nats_url: str, tmp_path: Path) -> None:
    """A worker searches in slices and lets its loop run between them: while it answers
    a query scanning 200 000 entries, its other tasks (consuming, renewing leases; here
    a ticker) are held for a small part of the query's time, not all of it. And a large
    answer reaches the edge whole."""
    path = tmp_path / "monitoring.py"
    path.write_text("from streams import *\nstreams(index)\n")
    # No periodic snapshot during the query: its turn for a partition of 100 000 entries
    # would be the longest hold, not the search.
    settings = ScaleOut(url=nats_url, stream="SLICES", partitions=2, lease=30,
                        snapshot_interval=3600)
    # Costly per entry, matching none: the search is the work, not the reply.
    query = " or ".join(f'host =~ "%needle-{n}%"' for n in range(8))
    measured: dict[str, float] = {}

    async def main() -> None:
        runtime = Runtime(TrioScheduler())
        config = runtime.load(path)
        worker = Worker(settings, name="slices")
        edge = Edge(settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run, config, runtime)
            await nursery.start(edge.serve, Runtime(TrioScheduler()))
            with trio.fail_after(60):
                while len([o for o in worker.owned.values() if o.ready]) < 2:
                    await trio.sleep(0.05)
            with runtime:
                for n in range(200_000):
                    runtime.index(Event(host=f"host-{n}", service="s", metric=n, time=0,
                                        ttl=1e9))
            gaps: list[float] = []
            nursery.start_soon(tick, gaps)
            await trio.sleep(0.1)
            # A full garbage collection over the big index (not the search) would be
            # the longest hold on a loaded machine.
            gc.collect()
            gc.disable()
            try:
                await trio.sleep(0.1)  # the ticker's wait across the collection ends
                gaps.clear()
                started = trio.current_time()
                assert await edge.query(query, timeout=60) == []
                measured["query"] = trio.current_time() - started
                measured["longest hold"] = max(gaps)
            finally:
                gc.enable()
            # An answer over NATS's max_payload (1 MB) comes in parts, all merged.
            found = await edge.query("metric < 40000", timeout=60)
            assert sorted(e.metric for e in found) == list(range(40_000))
            nursery.cancel_scope.cancel()

    trio.run(main)
    # Unsliced, the ticker waits for the whole search (the hold is ~the query's time).
    assert measured["longest hold"] < measured["query"] / 4, measured


def test_periodic_snapshots_hold_the_worker_one_partition_at_a_time(
        nats_url: str, tmp_path: Path) -> None:
    """A worker writes each partition's snapshot (index entries and per-key stream
    state) in its own turn of the loop: with eight partitions, its other tasks (a
    ticker here) wait for a fraction of the work, not all of it; and the snapshots
    restore the index and the keys' state."""
    from transport import _handover

    path = tmp_path / "monitoring.py"
    path.write_text(KEYED_CONFIG)
    settings = ScaleOut(url=nats_url, stream="SNAPTURNS", partitions=8, lease=30,
                        snapshot_interval=1)
    measured: dict[str, float] = {}

    async def main() -> None:
        async with worker_owning_all(settings, path, "turns") as (runtime, config, worker,
                                                                    nursery):
            with runtime:
                runtime.stream(Event(host=f"host-{n}", service="s", state="ok", metric=n,
                                     time=runtime.now(), ttl=3600) for n in range(20_000))
            # The whole job done in one turn, as before: the yardstick (the faster of two).
            for _ in range(2):
                started = time.perf_counter()
                by_partition: dict[int, list[Event]] = {p: [] for p in range(8)}
                for event in runtime.index:
                    by_partition[settings.partition(event)].append(event)
                states = _handover.export(config.streams, settings, set(range(8)))
                for partition, events in by_partition.items():
                    encode_request(events, framed=False)
                    _handover.dumps(states.get(partition))
                measured["one turn"] = min(measured.get("one turn", math.inf),
                                           time.perf_counter() - started)
            gaps: list[float] = []
            nursery.start_soon(tick, gaps)
            gc.collect()
            gc.disable()  # a full collection over the state would be the longest hold
            try:
                await trio.sleep(0.1)
                gaps.clear()
                # Two rounds of the eight partitions' snapshots, one of them whole.
                written = worker.snapshots
                with trio.fail_after(60):
                    while worker.snapshots < written + 16:
                        await trio.sleep(0.01)
                measured["longest hold"] = max(gaps)
            finally:
                gc.enable()

    trio.run(main)
    measured.update(trio.run(heir_restores, settings, path))
    assert measured["restored"] == 20_000 and measured["keys"] == 20_000, measured
    assert measured["longest hold"] < measured["one turn"] / 2, measured


def test_a_worker_that_stops_hands_over_everything_it_processed(
        nats_url: str, tmp_path: Path) -> None:
    """Stopping, a worker writes each partition's snapshot as it lets it go: its heir
    starts from all the worker processed (index and keys' state), even though no
    periodic snapshot was due."""
    path = tmp_path / "monitoring.py"
    path.write_text(KEYED_CONFIG)
    settings = ScaleOut(url=nats_url, stream="RELEASE", partitions=4, lease=30,
                        snapshot_interval=3600)
    measured: dict[str, int] = {}

    async def main() -> None:
        async with worker_owning_all(settings, path, "leaving") as (runtime, _c, worker, _n):
            with runtime:
                runtime.stream(Event(host=f"host-{n}", service="s", state="ok",
                                     time=runtime.now(), ttl=3600) for n in range(2_000))
            measured["periodic"] = worker.snapshots
        measured["released"] = worker.snapshots

    trio.run(main)
    measured.update(trio.run(heir_restores, settings, path))
    assert measured == {"periodic": 0, "released": 4, "restored": 2_000, "keys": 2_000}
