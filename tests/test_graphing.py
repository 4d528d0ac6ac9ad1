"""Graphing sinks: payload builders without a network, then each sink against its real peer.

graphite: a carbon-cache from Debian's graphite-carbon, read back with whisper-fetch.
graphite_annotations: graphite-web's events API (Debian's graphite-web, Django dev server
on a sqlite db in a temp dir), read back with its /events/get_data.
influxdb: InfluxDB 1.x (Debian's influxdb), read back with InfluxQL over /query; the 2.x
write API against a local server that checks each request.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from _peers import Carbon, Process, free_port, poll, rillet, send_to, started, until
from conftest import peer_unavailable, require_binary

from streams import Event, StreamArgumentError, where
from streams._config import Config, declaring
from transport import TrioClient
from transport._graphing import (
    _datagrams,
    graphite,
    graphite_annotation,
    graphite_annotations,
    graphite_lines,
    graphite_path,
    graphite_pickle,
    influxdb,
    influxdb_lines,
)

# Payloads, without a network ------------------------------------------------------


@pytest.mark.parametrize(("host", "service", "path"), [
    ("web1.example.com", "cpu", "com.example.web1.cpu"),
    ("web1", "http req 0.95", "web1.http.req.95"),       # Riemann's percentile rewrite
    ("web1", "latency 0.999", "web1.latency.99"),
    (None, "disk /var used", "disk./var.used"),
    ("db", None, "db"),
    ("a.b", "x  y", "b.a.x..y"),                          # split on each space, as Riemann
])
def test_graphite_path_is_riemanns_default(host: Any, service: Any, path: str) -> None:
    assert graphite_path(Event(host=host, service=service)) == path


def test_graphite_lines_skip_events_without_a_finite_metric() -> None:
    events = [Event(host="h", service="a", metric=1, time=10.9),
              Event(host="h", service="b", time=10),
              Event(host="h", service="c", metric=float("nan"), time=10),
              Event(host="h", service="d", metric=2.5),
              Event(host="h", service="e", metric=True, time=10)]
    assert graphite_lines(events, now=99.5) == b"h.a 1 10\nh.d 2.5 99\n"


def test_graphite_lines_keep_whitespace_out_of_the_path() -> None:
    line = graphite_lines([Event(host="h\tx", service="a\nb", metric=1, time=1)])
    assert line == b"h_x.a_b 1 1\n"
    assert graphite_lines([Event(metric=1, time=1)], path=lambda e: "fixed") == b"fixed 1 1\n"


def test_graphite_pickle_is_what_carbon_unpickles() -> None:
    data = graphite_pickle([Event(host="h", service="s", metric=3, time=5),
                            Event(host="h", service="none", time=5)])
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert pickle.loads(data[4:]) == [("h.s", (5, 3.0))]
    assert graphite_pickle([Event(service="none")]) == b""


def test_udp_datagrams_hold_whole_lines() -> None:
    lines = b"".join(b"metric.%d 1 1\n" % i for i in range(300))
    datagrams = list(_datagrams(lines, 100))
    assert b"".join(datagrams) == lines
    assert all(len(d) <= 100 and d.endswith(b"\n") for d in datagrams)
    assert list(_datagrams(b"x" * 150 + b"\n", 100)) == [b"x" * 150 + b"\n"]


def test_influxdb_lines_escape_and_type_fields() -> None:
    event = Event(host="web 1,a", service="http req", metric=3, state="ok",
                  description='said "hi"', time=1.5, env="prod", ignored=None)
    assert influxdb_lines([event, Event(service="no metric", time=1)]) == (
        b'http\\ req,host=web\\ 1\\,a value=3.0,state="ok",description="said \\"hi\\"",'
        b'env="prod" 1500\n')
    assert influxdb_lines([Event(service="x", metric=1.25, env="p")], ("env",), now=2) == \
        b"x,env=p value=1.25 2000\n"


def test_secrets_stay_out_of_the_repr_that_log_lines_quote() -> None:
    with declaring(Config()):
        sink = influxdb("http://x", "db", username="u", password="pw", tag_fields=("host",))
    assert repr(sink) == ("influxdb('http://x', 'db', username='u', password=<hidden>, "
                          "tag_fields=('host',))")


def test_graphite_annotation_payload() -> None:
    assert graphite_annotation(Event(service="deploy"), now=7.9) == {
        "what": "deploy", "tags": ["deploy"], "when": 7, "data": ""}


@pytest.mark.parametrize(("build", "message"), [
    (lambda: graphite(port=0), r"graphite\(port=0\): port must be an int from 1 to 65535"),
    (lambda: graphite(protocol="http"), r"protocol='http'"),
    (lambda: graphite(protocol="udp", pickle=True), r"pickles over TCP only"),
    (lambda: graphite(path="service"), r"path='service'"),
    (lambda: graphite(queue_size=-1), r"graphite\(queue_size=-1\)"),
    (lambda: influxdb("http://x"), r"give database= for InfluxDB 1.x or bucket="),
    (lambda: influxdb("http://x", bucket="b"), r"needs org= and token="),
    (lambda: influxdb("x:8086", database="d"), r"influxdb\(url='x:8086'\): the url must"),
    (lambda: graphite_annotations("graphite:80"), r"graphite_annotations\(url='graphite:80'\)"),
    (lambda: influxdb("http://x", database="d", tag_fields="host"), r"tag_fields='host'"),
])
def test_config_mistakes_fail_at_load_naming_the_argument(build: Any, message: str) -> None:
    with pytest.raises(StreamArgumentError, match=message), declaring(Config()):
        build()


# graphite against carbon-cache ----------------------------------------------------


@pytest.fixture(scope="session")
def carbon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Carbon]:
    with started(Carbon(tmp_path_factory.mktemp("carbon"))) as peer:
        assert isinstance(peer, Carbon)
        yield peer


def metrics(service: str, start: int, values: list[float]) -> list[Event]:
    return [Event(host="web1.example", service=service, metric=v, time=start + i)
            for i, v in enumerate(values)]


@pytest.mark.parametrize("protocol", ["tcp", "udp", "pickle"])
def test_graphite_delivers_to_carbon(carbon: Carbon, protocol: str) -> None:
    start = int(time.time()) - 60
    values = [1, 2.5, 3, 4.25, 5]
    port = {"tcp": carbon.line_port, "udp": carbon.udp_port,
            "pickle": carbon.pickle_port}[protocol]
    options: dict[str, Any] = {"protocol": "udp"} if protocol == "udp" else \
        {"pickle": True} if protocol == "pickle" else {}
    found: dict[int, float] = {}

    async def main() -> None:
        async with rillet(lambda: [where("metric", graphite(port=port, **options))]) as r:
            await send_to(r.ports[0], metrics(f"cpu {protocol}", start, values))
            found.update(await trio.to_thread.run_sync(
                carbon.wait_for, f"example.web1.cpu.{protocol}", start, len(values)))
            [sink] = [s for s in r.services if isinstance(s, graphite)]
            assert sink.statistics()["sent"] == len(values)

    trio.run(main)
    assert found == {start + i: v for i, v in enumerate(values)}


def test_graphite_survives_carbon_down_at_start_and_restarted_mid_stream(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Streams never wait; what was queued while carbon was away arrives once it is back."""
    peer = Carbon(tmp_path / "carbon")
    start = int(time.time()) - 120
    events = metrics("restarts", start, list(range(30)))

    async def main() -> None:
        build = lambda: [graphite(port=peer.line_port, backoff=0.05, max_backoff=0.2)]
        async with rillet(build) as r:
            [sink] = r.services[1:]
            # down at start: rillet acks at once, the sink queues and retries
            assert await send_to(r.ports[0], events[:10]) < 2
            await until(lambda: sink.retries >= 2)
            assert "Connection refused" in sink.statistics()["last_error"]
            await trio.to_thread.run_sync(peer.start)
            await trio.to_thread.run_sync(peer.wait_for, "example.web1.restarts", start, 10)
            # goes away mid-stream, then comes back on the same port
            retries = sink.retries
            await trio.to_thread.run_sync(peer.stop)
            assert await send_to(r.ports[0], events[10:20]) < 2
            await until(lambda: sink.retries > retries)  # noticed, queueing meanwhile
            await trio.to_thread.run_sync(peer.start)
            await send_to(r.ports[0], events[20:])
            await trio.to_thread.run_sync(peer.wait_for, "example.web1.restarts", start, 30)

    with caplog.at_level(logging.WARNING, "rillet.delivery"):
        try:
            trio.run(main)
        finally:
            peer.stop()
    found = peer.points("example.web1.restarts", start)
    assert found == {start + i: float(i) for i in range(30)}
    messages = [r.getMessage() for r in caplog.records]
    assert any("delivery failed, retrying with backoff" in m for m in messages)
    assert any("delivering again" in m for m in messages)


def test_shutdown_flushes_to_carbon_and_reports_what_it_could_not(
        carbon: Carbon, caplog: pytest.LogCaptureFixture) -> None:
    start = int(time.time()) - 180
    reachable = graphite_events = metrics("flushed", start, [7, 8, 9])

    async def main() -> None:
        build = lambda: [graphite(port=carbon.line_port), graphite(port=free_port(),
                                                                  flush_timeout=0.5)]
        async with rillet(build) as r:
            client = await TrioClient.connect("127.0.0.1", r.ports[0])
            async with client:
                await client.send(graphite_events)
        # leaving the block cancelled the server: both sinks flushed or gave up

    with caplog.at_level(logging.ERROR, "rillet.delivery"):
        started_at = time.monotonic()
        trio.run(main)
        assert time.monotonic() - started_at < 5
    assert carbon.wait_for("example.web1.flushed", start, 3) == \
        {start + i: e.metric for i, e in enumerate(reachable)}
    [message] = [r.getMessage() for r in caplog.records]
    assert "shutting down, dropped 3 undelivered events after trying for 0.5 s" in message
    assert "Connection refused" in message


# graphite annotations against graphite-web --------------------------------------------


class GraphiteWeb(Process):
    """graphite-web's Django app on a sqlite db in ``root``, on the dev server."""

    def __init__(self, root: Path) -> None:
        manage = require_binary("graphite-manage", "graphite-web")
        self.port = free_port()
        (root / "storage" / "log" / "webapp").mkdir(parents=True)
        (root / "rillet_graphite_settings.py").write_text(
            f"SECRET_KEY = 'rillet-tests'\nSTORAGE_DIR = {str(root / 'storage')!r}\n"
            f"LOG_DIR = {str(root / 'storage' / 'log' / 'webapp')!r}\n"
            f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', "
            f"'NAME': {str(root / 'graphite.db')!r}}}}}\n")
        env = {"PYTHONPATH": str(root), "GRAPHITE_SETTINGS_MODULE": "rillet_graphite_settings"}
        migrate = subprocess_run([manage, "migrate", "--noinput"], env, root)
        if migrate.returncode != 0:
            peer_unavailable(f"graphite-web's migrate failed:\n{migrate.stdout[-2000:]}")
        super().__init__("graphite-web", [manage, "runserver", f"127.0.0.1:{self.port}",
                                          "--noreload"],
                         root / "graphite-web.out", [self.port], env=env, cwd=root)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self, tag: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"from": "-10y", "tags": tag})
        with urllib.request.urlopen(f"{self.url}/events/get_data?{query}", timeout=10) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]


def subprocess_run(argv: list[str], env: dict[str, str], cwd: Path) -> Any:
    return subprocess.run(argv, env={**os.environ, **env}, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="session")
def graphite_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphiteWeb]:
    with started(GraphiteWeb(tmp_path_factory.mktemp("graphite-web"))) as peer:
        assert isinstance(peer, GraphiteWeb)
        yield peer


def test_state_changes_become_graphite_web_events(graphite_web: GraphiteWeb) -> None:
    from streams import changed_state

    states = ["ok", "ok", "critical", "critical", "ok"]
    events = [Event(host="web7", service="http req", state=s, metric=1, time=1700000000 + i,
                    description=f"check {i}", tags=("prod",)) for i, s in enumerate(states)]

    async def main() -> None:
        build = lambda: [changed_state(graphite_annotations(graphite_web.url))]
        async with rillet(build) as r:
            await send_to(r.ports[0], events)
            [sink] = r.services[1:]
            await until(lambda: sink.statistics()["sent"] == 3)

    trio.run(main)
    found = sorted(graphite_web.events("web7"), key=lambda e: e["when"])
    assert [(e["what"], e["when"], e["data"], e["tags"]) for e in found] == [
        ("web7 http req ok", 1700000000, "check 0", ["web7", "http_req", "ok", "prod"]),
        ("web7 http req critical", 1700000002, "check 2", ["web7", "http_req", "critical",
                                                           "prod"]),
        ("web7 http req ok", 1700000004, "check 4", ["web7", "http_req", "ok", "prod"]),
    ]


# influxdb against InfluxDB 1.x ------------------------------------------------------


class InfluxDB(Process):
    def __init__(self, root: Path) -> None:
        binary = require_binary("influxd", "influxdb")
        self.port = free_port()
        (root / "influxdb.conf").write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
""")
        super().__init__("influxd", [binary, "-config", str(root / "influxdb.conf")],
                         root / "influxd.out", [self.port])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, q: str, database: str | None = None) -> Any:
        params = {"q": q, **({"db": database} if database else {})}
        request = urllib.request.Request(f"{self.url}/query",
                                         data=urllib.parse.urlencode(params).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    with started(InfluxDB(tmp_path_factory.mktemp("influxdb"))) as peer:
        assert isinstance(peer, InfluxDB)
        peer.query("CREATE DATABASE rillet")
        yield peer


def influx_points(influx: InfluxDB, measurement: str) -> list[list[Any]]:
    result = influx.query(f'SELECT * FROM "{measurement}"', "rillet")["results"][0]
    series = result.get("series") or [{"columns": [], "values": []}]
    columns = series[0]["columns"]
    return [dict(zip(columns, row, strict=True)) for row in series[0]["values"]]  # type: ignore[misc]


def test_influxdb_points_can_be_queried_back(influx: InfluxDB) -> None:
    events = [Event(host=f"web{i % 2}", service="http latency", metric=i * 1.5, state="ok",
                    time=1700000000 + i, env="prod") for i in range(6)]

    async def main() -> None:
        build = lambda: [influxdb(influx.url, "rillet", tag_fields=("host", "env"))]
        async with rillet(build) as r:
            await send_to(r.ports[0], events)
            await trio.to_thread.run_sync(poll, lambda: len(
                influx_points(influx, "http latency")) == 6, 20, "six points in InfluxDB")

    trio.run(main)
    points = influx_points(influx, "http latency")
    assert [(p["time"], p["host"], p["env"], p["value"], p["state"]) for p in points] == [
        (f"2023-11-14T22:13:2{i}Z", f"web{i % 2}", "prod", i * 1.5, "ok") for i in range(6)]
    web1 = influx.query("SELECT sum(value) FROM \"http latency\" WHERE host = 'web1'",
                        "rillet")["results"][0]["series"][0]["values"][0][1]
    assert web1 == 1.5 + 4.5 + 7.5


def test_influxdb_slow_then_refusing_then_recovered(influx: InfluxDB) -> None:
    """A paused InfluxDB times out and is retried; an unknown database is refused for good."""
    base = 1700001000

    async def main() -> None:
        build = lambda: [influxdb(influx.url, "rillet", timeout=0.5, backoff=0.05,
                                  max_backoff=0.2),
                         influxdb(influx.url, "no_such_db")]
        async with rillet(build) as r:
            slow, refused = r.services[1:]
            influx.pause()
            try:
                took = await send_to(r.ports[0], [
                    Event(host="h", service="slow", metric=i, time=base + i) for i in range(5)])
                # a sink waiting in the streams would take 5 timeouts of 0.5 s
                assert took < 1.5
                await until(lambda: slow.retries >= 2)
                assert "TimeoutError" in slow.statistics()["last_error"]
            finally:
                influx.resume()
            await until(lambda: slow.statistics()["sent"] == 5 and refused.failed == 5)

            stats = refused.statistics()
            assert stats["retries"] == 0 and stats["sent"] == 0
            assert "rejected: HTTP 404" in stats["last_error"]
            assert "database not found" in stats["last_error"]

    trio.run(main)
    assert [p["value"] for p in influx_points(influx, "slow")] == [0, 1, 2, 3, 4]


def test_influxdb_v2_write_request() -> None:
    """The 2.x write API (not in Debian): a local server checks what InfluxDB 2 documents."""
    requests: list[tuple[str, dict[str, list[str]], str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            requests.append((url.path, urllib.parse.parse_qs(url.query),
                             self.headers["Authorization"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        async def main() -> None:
            build = lambda: [influxdb(url, bucket="metrics", org="ops", token="s3cret")]
            async with rillet(build) as r:
                await send_to(r.ports[0], [Event(host="h", service="cpu", metric=0.5, time=3)])
                await until(lambda: bool(requests))

        trio.run(main)
    finally:
        server.shutdown()
        server.server_close()
    assert requests == [("/api/v2/write",
                         {"org": ["ops"], "bucket": ["metrics"], "precision": ["ms"]},
                         "Token s3cret", b"cpu,host=h value=0.5 3000\n")]


def test_rillet_run_graphs_what_riemann_client_sends_and_flushes_on_sigterm(
        carbon: Carbon, riemann_client: str, tmp_path: Path) -> None:
    """The user's path: `rillet run monitoring.py`, Debian's riemann-client, then SIGTERM."""
    dead = free_port()
    config = tmp_path / "monitoring.py"
    config.write_text(f"""
from streams import *
from transport import graphite, tcp_server

tcp_server(port=0)
streams(graphite(port={carbon.line_port}, linger=3),   # still queued at SIGTERM
        graphite(port={dead}, flush_timeout=1))        # nobody listens there
""")
    process = subprocess.Popen([sys.executable, "-m", "transport._cli", "run", str(config)],
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        port = None
        while port is None:
            line = process.stderr.readline()
            assert line, "rillet run ended before listening"
            found = re.search(r"TCP server listening on 127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        start = time.time()
        for service, metric in (("cpu cli", "42.5"), ("mem cli", "7")):
            subprocess.run([riemann_client, "send", "-h", "web9.example", "-S", service,
                            "-d", metric, "127.0.0.1", str(port)], check=True, timeout=10)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        log = process.stderr.read()
        assert process.wait(10) == 0, log
        assert time.monotonic() - stopped < 1 + 1.5  # the dead sink's flush_timeout, and exit
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert list(carbon.wait_for("example.web9.cpu.cli", start, 1).values()) == [42.5]
    assert list(carbon.wait_for("example.web9.mem.cli", start, 1).values()) == [7.0]
    assert f"graphite(port={dead}, flush_timeout=1): shutting down, dropped 2 undelivered " \
        f"events after trying for 1 s" in log
