"""The Graphite plaintext input (spec §1.10): the line grammar, then raw TCP and UDP sockets."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import run_serving
from conftest import require_binary

from streams import Config, Event
from streams._index import Index
from transport import GraphiteServer, Running, graphite_server
from transport._graphite_input import GraphiteLineError, LineSplitter, parse_line

pytestmark = pytest.mark.network


@pytest.mark.parametrize("line", [
    "name 123 456", "name\t123\t456", "name  123   456", "name \t 123\t\t456",
    "name 123 456 ", "name\t 123 \t456\t",
])
def test_whitespace_variants_parse_the_same(line: str) -> None:
    assert parse_line(line) == Event(service="name", metric=123.0, time=456)


@pytest.mark.parametrize(("line", "reason"), [
    ("a b c d", "too many fields"),
    ("has space in name 1 2", "too many fields"),
    (" name 1 2", "too many fields"),
    ("", "blank line"),
    ("   ", "blank line"),
    ("name", "no metric"),
    ("name 1", "no timestamp"),
    ("name NaN 2", "NaN metric"),
    ("name xnanx 2", "NaN metric"),
    ("name abc 2", "invalid metric"),
    ("name 1_000 2", "invalid metric"),
    ("name inf 2", "invalid metric"),
    ("name 1 123.5", "invalid timestamp"),
    ("name 1 99999999999999999999", "invalid timestamp"),
])
def test_malformed_lines_say_why_in_riemanns_words(line: str, reason: str) -> None:
    with pytest.raises(GraphiteLineError, match=f"^{reason}$"):
        parse_line(line)


def test_tag_mode() -> None:
    assert parse_line("name;host=foo;description=desc 123 456", tags=True) == Event(
        service="name", host="foo", description="desc", metric=123.0, time=456)
    assert parse_line("n;a=b=c;flag;metric=9; 1 2", tags=True) == Event(
        service="n", metric=1.0, time=2, a="b")
    assert parse_line("n;host=foo 1 2") == Event(service="n;host=foo", metric=1.0, time=2)


def test_line_splitter_bytes_in_any_split() -> None:
    data = b"a 1 1\r\nb 2 2\n" + b"x" * 5000 + b"\nc 3 3\n"
    for size in (1, 7, 4096):
        splitter = LineSplitter(1024)
        lines = []
        for i in range(0, len(data), size):
            lines += splitter.feed(data[i:i + size])
        assert lines == ["a 1 1", "b 2 2", "c 3 3"] and splitter.overlong == 1


def with_graphite(body: Callable[[Running], Awaitable[None]], **options: Any) -> Index:
    index = Index()
    config = Config(streams=[index], services=[GraphiteServer(port=0, **options),
                                               GraphiteServer(port=0, protocol="udp",
                                                              **options)])
    run_serving(config, index, body)
    return index


async def until_indexed(running: Running, count: int) -> None:
    while len(running.index) < count:
        await trio.sleep(0.005)


def test_tcp_split_lines_crlf_huge_lines_and_nan_never_cost_other_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"servers.web1.cpu 0.5 1700000000\r\nservers.web1.m")
            await stream.send_all(b"em 42 1700000001\n")
            await stream.send_all(b"huge" + b"x" * 100_000 + b" 1 2\n")
            await stream.send_all(b"bad NaN 3\nbad nope 3\nbad 1 2.5\n\n")
            await stream.send_all(b"after 7 1700000002\n")
            await until_indexed(running, 3)
        stored = running.index.lookup(None, "servers.web1.mem")
        assert stored == Event(service="servers.web1.mem", metric=42.0, time=1700000001)
        assert running.index.lookup(None, "servers.web1.cpu") is not None
        assert running.index.lookup(None, "after") is not None
        assert len(running.index) == 3
        server = running.services[0]
        assert server.statistics()["malformed"] == 5

    with caplog.at_level(logging.WARNING, logger="rillet.graphite"):
        with_graphite(body)
    # Logged at a bounded rate: one message for the burst, not one per line.
    messages = [r.getMessage() for r in caplog.records if r.name == "rillet.graphite"]
    assert 1 <= len(messages) <= 2 and "max_line=1024" in messages[0]


def test_udp_datagrams_and_host_from_the_path() -> None:
    async def body(running: Running) -> None:
        udp = running.ports[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"collectd.web1.cpu.idle 97 1700000000", ("127.0.0.1", udp))
            sock.sendto(b"collectd.web2.load 1 2\ncollectd.db1.load 3 4\nbroken\n",
                        ("127.0.0.1", udp))
        await until_indexed(running, 3)
        stored = running.index.lookup("web1", "collectd.cpu.idle")
        assert stored is not None and stored.metric == 97.0
        assert running.index.lookup("db1", "collectd.load") is not None
        assert running.services[1].statistics() == {"lines": 4, "malformed": 1,
                                                    "connections": 0}

    with_graphite(body, source_host=1)


def test_peer_host_and_parser() -> None:
    def parser(event: Event) -> Event | None:
        return None if event.service == "drop.me" else event.evolve(state="ok")

    async def body(running: Running) -> None:
        async with await trio.open_tcp_stream("127.0.0.1", running.ports[0]) as stream:
            await stream.send_all(b"keep.me 1 2\ndrop.me 1 2\n")
            await until_indexed(running, 1)
        assert running.index.lookup("127.0.0.1", "keep.me") == Event(
            host="127.0.0.1", service="keep.me", state="ok", metric=1.0, time=2)
        assert len(running.index) == 1

    with_graphite(body, source_host="peer", parser=parser)


def test_declaration_mistakes_fail_at_load() -> None:
    with pytest.raises(ValueError, match=r"protocol=.sctp.*\"tcp\" or \"udp\""):
        graphite_server(protocol="sctp")
    with pytest.raises(ValueError, match=r"source_host=-1"):
        graphite_server(source_host=-1)
    with pytest.raises(ValueError, match=r"port=70000"):
        graphite_server(port=70000)


def test_collectd_write_graphite_feeds_the_index(tmp_path: Path) -> None:
    """Debian's collectd, with its load plugin and write_graphite, as a real Graphite sender."""
    collectd = require_binary("collectd", "collectd-core")

    async def body(running: Running) -> None:
        config = tmp_path / "collectd.conf"
        config.write_text(f"""
Hostname "rillet-test"
FQDNLookup false
Interval 1
BaseDir "{tmp_path}"
PIDFile "{tmp_path}/collectd.pid"
LoadPlugin load
<LoadPlugin write_graphite>
  FlushInterval 1
</LoadPlugin>
<Plugin write_graphite>
  <Node "rillet">
    Host "127.0.0.1"
    Port "{running.ports[0]}"
    Protocol "tcp"
    Prefix "collectd."
  </Node>
</Plugin>
""")
        process = await trio.lowlevel.open_process(
            [collectd, "-f", "-C", str(config)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            while running.index.lookup("rillet-test", "collectd.load.load.shortterm") is None:
                await trio.sleep(0.05)
        finally:
            process.terminate()
            await process.wait()
        load = running.index.lookup("rillet-test", "collectd.load.load.shortterm")
        assert load is not None and isinstance(load.metric, float) and load.metric >= 0
        assert abs(load.time - time.time()) < 60
        assert running.services[0].statistics()["malformed"] == 0

    with_graphite(body, source_host=1)
