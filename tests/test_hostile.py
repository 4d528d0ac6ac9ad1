"""The server against hostile or buggy peers: every bad input gets an error reply or a
closed connection, and the server keeps serving everyone else."""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import start_rillet, varint
from test_server import is_closed, read_reply, request, still_serves, with_server

from streams import Event
from streams._index import current_index
from transport import Running
from transport._codec import encode_request, frame
from transport._proto import Msg

pytestmark = pytest.mark.network

DEEP_QUERY = "(" * 5000 + "true" + ")" * 5000


def _udp_port(running: Running) -> int:
    return running.ports[1]


def test_a_query_that_breaks_the_evaluator_gets_an_error_reply() -> None:
    # Nesting deep enough to exhaust the parser's recursion raises RecursionError,
    # not QuerySyntaxError; it must be a reply, not a dead server.
    async def body(running: Running) -> None:
        port = running.ports[0]
        reply = await request(port, encode_request(query=DEEP_QUERY))
        assert not reply.ok and reply.error
        await still_serves(port)

    with_server(body)


def test_a_udp_query_that_breaks_the_evaluator_does_not_stop_the_udp_server() -> None:
    async def body(running: Running) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.connect(("127.0.0.1", _udp_port(running)))
            await sock.send(encode_request(query=DEEP_QUERY, framed=False))
            await sock.send(encode_request([Event(host="after", service="u", time=1)],
                                           framed=False))
            with trio.fail_after(5):
                while running.index.lookup("after", "u") is None:
                    await trio.sleep(0.01)
        await still_serves(running.ports[0])

    with_server(body)


def test_a_query_leaves_out_an_indexed_event_it_cannot_encode_and_logs_it(
        caplog: pytest.LogCaptureFixture) -> None:
    # A stream may index anything an Event holds; one such event must not make every
    # query that matches it fail (a `true` query would fail until the event expired).
    async def body(running: Running) -> None:
        running.index(Event(host="h", service="odd", metric=1j, time=1))  # type: ignore[arg-type]
        running.index(Event(host="h", service="fine", metric=2, time=1))
        port = running.ports[0]
        reply = await request(port, encode_request(query="true"))
        assert reply.ok and [e.service for e in reply.events] == ["fine"]
        await still_serves(port)

    with caplog.at_level("WARNING", logger="rillet.server"):
        with_server(body)
    assert "left out 1 of 2" in caplog.text and "metric=1j" in caplog.text


class Fatal(BaseException):
    """Not an Exception: escapes every `except Exception` in the streams."""


def _fatal_stream(event: Any) -> None:
    if event.service == "fatal":
        raise Fatal("fatal")


def test_a_stream_raising_a_base_exception_closes_only_that_connection() -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        async with await trio.open_tcp_stream("127.0.0.1", port) as bystander:
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(encode_request([Event(service="fatal", time=1)]))
                assert await is_closed(stream)
            await bystander.send_all(encode_request([Event(host="b", service="s", time=1)]))
            assert (await read_reply(bystander)).ok
        await still_serves(port)

    with_server(body, streams=[_fatal_stream])


def test_a_query_string_that_is_not_utf8_gets_an_error_reply() -> None:
    # upb hands back bytes for a proto2 string that is not valid UTF-8.
    async def body(running: Running) -> None:
        port = running.ports[0]
        query = b"\n\x03\xff\xfe\xfd"
        reply = await request(port, frame(b"*" + bytes([len(query)]) + query))
        assert not reply.ok and reply.error
        await still_serves(port)

    with_server(body)


# rillet run: startup failures and signals ----------------------------------------------

RUN_CONFIG = """
from streams import *
from transport import tcp_server

tcp_server(port={port})
streams(index)
"""


def _start(tmp_path: Path, port: int = 0) -> subprocess.Popen[str]:
    config = tmp_path / "monitoring.py"
    config.write_text(RUN_CONFIG.format(port=port))
    return subprocess.Popen([sys.executable, "-m", "transport._cli", "run", str(config)],
                            stderr=subprocess.PIPE, text=True)


def test_rillet_run_on_a_port_in_use_says_so_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _start(tmp_path, port)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 1
    assert "Traceback" not in err
    assert "already in use" in err and f"TCP on 127.0.0.1:{port}" in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_rillet_run_stops_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    process = _start(tmp_path)
    assert process.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line or re.search(r"TCP server listening", line):
            break
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert "Traceback" not in err
    assert process.returncode == 0


# Strings that are not UTF-8 ------------------------------------------------------------


def _raw_event_request(*fields: bytes) -> bytes:
    event = b"".join(fields)
    return frame(b"2" + bytes([len(event)]) + event)


def test_text_fields_that_are_not_utf8_read_as_str_with_replacement_characters() -> None:
    # upb gives bytes for such proto2 strings; Riemann's Java protobuf decodes them with
    # U+FFFD. Bytes would reach the streams, fail every str comparison, and poison the
    # index: each later query matching the event could not encode it.
    seen: list[Any] = []

    def record(event: Any) -> None:
        seen.append((event.host, event.service, event.tags, dict(event.attributes)))

    async def body(running: Running) -> None:
        port = running.ports[0]
        attribute = b"\n\x02k\xff\x12\x01\xfe"
        payload = _raw_event_request(b'"\x02h\xff', b"\x1a\x01s", b":\x01\xfe",
                                     b"J" + bytes([len(attribute)]) + attribute,
                                     b"\x08\x01")
        assert (await request(port, payload)).ok
        reply = await request(port, encode_request(query="true"))
        assert reply.ok
        [found] = reply.events
        assert found.host == "h\ufffd" and list(found.tags) == ["\ufffd"]

    def indexed(event: Any) -> None:
        # A plain Event, encoded field by field when a query returns it.
        current_index()(event.evolve(description="changed"))

    index = with_server(body, streams=[record, indexed])
    assert len(index) == 1


def test_pipelined_queries_from_a_peer_that_never_reads_do_not_pile_up_replies() -> None:
    # One read of small query frames can ask for thousands of large replies; the server
    # must stop producing them once the socket stops draining, not build them all first.
    import tracemalloc

    async def body(running: Running) -> None:
        for n in range(50):
            running.index(Event(host=f"h{n}", service="s", description="x" * 1000, time=1))
        port = running.ports[0]
        tracemalloc.start()
        try:
            async with await trio.open_tcp_stream("127.0.0.1", port) as greedy:
                await greedy.send_all(encode_request(query="true") * 2000)  # ~100 MB asked
                await trio.sleep(1.5)
                _, peak = tracemalloc.get_traced_memory()
                await still_serves(port)
        finally:
            tracemalloc.stop()
        assert peak < 30_000_000

    with_server(body)


# Odd numbers from clients, sent as raw protobuf past our encoder's checks ----------------

ODD_FIELDS: list[dict[str, Any]] = [
    {"metric_d": float("nan")}, {"metric_d": float("inf")}, {"metric_f": float("-inf")},
    {"ttl": float("nan")}, {"ttl": float("inf")}, {"ttl": -5.0},
    {"time": 2**63 - 1}, {"time": -(2**63)}, {"time": -5}, {"time": 10**15},
    {"time_micros": 2**63 - 1}, {"time_micros": -(2**63)},
]


def _raw(service: str, fields: dict[str, Any]) -> bytes:
    message = Msg()
    event = message.events.add(host="odd", service=service)
    for name, value in fields.items():
        setattr(event, name, value)
    return frame(message.SerializeToString())


@pytest.mark.parametrize("rebuilt", [False, True], ids=["as-received", "rebuilt-by-a-stream"])
def test_nan_infinite_and_out_of_range_numbers_from_a_client_are_indexed_and_queryable(
        rebuilt: bool) -> None:
    # As received, the index keeps the client's message and replies with it as is. A stream
    # that changes the event makes a plain Event, encoded field by field: a time of 2**63-1
    # seconds has no int64 time_micros, and must not break every later `true` query.
    def rebuild(event: Any) -> None:
        current_index()(event.evolve(description="seen"))

    async def body(running: Running) -> None:
        port = running.ports[0]
        for n, fields in enumerate(ODD_FIELDS):
            assert (await request(port, _raw(f"s{n}", fields))).ok
        # NaN and out-of-range times must not break expiry either
        running.index.expire(running.runtime.now())
        reply = await request(port, encode_request(query="true"))
        assert reply.ok
        # Expired: ttl -5 and the three times in the past. A NaN ttl never expires (NaN < x
        # is false), as in Riemann.
        # Rebuilt or not (and once materialized by a sweep), times of 2**63-1 and 10**15 s
        # have no int64 time_micros and go out as whole seconds.
        gone = {"s5", "s7", "s8", "s11"}
        assert sorted(e.service for e in reply.events) == sorted(
            f"s{n}" for n in range(len(ODD_FIELDS)) if f"s{n}" not in gone)
        await still_serves(port)

    with_server(body, streams=[rebuild] if rebuilt else None)


# Timers that fail --------------------------------------------------------------------


def test_a_timer_raising_a_base_exception_does_not_stop_the_server_or_later_timers() -> None:
    # The scheduler runs every stream's timers; a non-Exception from one of them ended the
    # scheduler task, and with it the nursery holding every server.
    async def body(running: Running) -> None:
        ran: list[str] = []

        def fatal() -> None:
            raise Fatal("from a timer")

        clock = running.scheduler
        clock.after(0.01, fatal)
        clock.after(0.05, lambda: ran.append("later"))
        with trio.fail_after(10):
            while not ran:
                await trio.sleep(0.01)
        await still_serves(running.ports[0])

    with_server(body)


def test_a_reaper_tombstone_raising_a_base_exception_spares_the_other_tombstones() -> None:
    seen: list[Any] = []

    def streams(event: Any) -> None:
        if event.state == "expired":
            seen.append(event.host)
            if event.host == "a":
                raise Fatal("tombstone")
        else:
            current_index()(event)

    async def body(running: Running) -> None:
        for host in ("a", "b"):
            running.index(Event(host=host, service="s", time=1, ttl=1))
        with running.runtime:  # the reaper runs on the server's clock
            running.index.start_reaper(0.01, running.runtime.dispatch)
        with trio.fail_after(10):
            while len(seen) < 2:
                await trio.sleep(0.01)
        await still_serves(running.ports[0])

    with_server(body, streams=[streams])
    assert sorted(seen) == ["a", "b"]


# UDP datagram sizes ----------------------------------------------------------------------


def _datagram(size: int, service: str) -> bytes:
    message = Msg()
    event = message.events.add(service=service, time=1)
    while (gap := size - message.ByteSize()) != 0:  # length prefixes grow: converge
        event.description = "x" * (len(event.description) + gap)
    data = message.SerializeToString()
    assert len(data) == size
    return data


def _cut_on_an_event_boundary(size: int) -> bytes:
    # Events of 12 bytes each, the first padded so that `size` bytes end exactly between two
    # events: the cut datagram still parses, with only the first events.
    message = Msg()
    for n in range(3 * size // 12):
        message.events.add(service=f"s{n:05d}", time=1)
    message.events[0].service += "p" * (size % 12)
    data = message.SerializeToString()
    assert size in itertools.accumulate(event.ByteSize() + 2 for event in message.events)
    return data


def test_udp_datagrams_of_max_size_are_taken_and_longer_ones_dropped_and_counted() -> None:
    async def body(running: Running) -> None:
        udp = running.services[1]
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.connect(("127.0.0.1", _udp_port(running)))
            await sock.send(_datagram(udp.max_size + 1, "over"))
            await sock.send(_cut_on_an_event_boundary(udp.max_size))
            await sock.send(_datagram(udp.max_size, "exact"))
            with trio.fail_after(5):
                while running.index.lookup(None, "exact") is None:
                    await trio.sleep(0.01)
        assert udp.statistics() == {"datagrams": 3, "dropped": 2, "kernel_dropped": 0}
        assert [event.service for event in running.index] == ["exact"]
        await still_serves(running.ports[0])

    with_server(body)


# Big inputs and stalled peers ----------------------------------------------------------


def test_an_event_with_100000_tags_and_one_with_a_1_mb_description_are_queryable() -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        tags = tuple(f"t{n}" for n in range(100_000))
        assert (await request(port, encode_request([Event(host="tags", tags=tags, time=1)]))).ok
        big = Event(host="desc", description="x" * 1_000_000, time=1)
        assert (await request(port, encode_request([big]))).ok
        [tagged] = (await request(port, encode_request(query='tagged "t99999"'))).events
        assert tuple(tagged.tags) == tags
        [described] = (await request(port, encode_request(query='host = "desc"'))).events
        assert len(described.description) == 1_000_000

    with_server(body)


def test_a_silent_client_and_a_stalled_half_frame_do_not_hold_up_others() -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        async with await trio.open_tcp_stream("127.0.0.1", port), \
                await trio.open_tcp_stream("127.0.0.1", port) as stalled:
            await stalled.send_all(encode_request([Event(service="half", time=1)])[:7])
            with trio.fail_after(2):
                await still_serves(port)
                reply = await request(port, encode_request(query="true"))
            assert reply.ok and [e.service for e in reply.events] == ["p"]

    with_server(body)


def test_a_query_matching_100000_events_is_answered_without_stalling_others() -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        now = time.time()
        for batch in range(4):
            events = [Event(host=f"h{n}", service=f"s{batch}", metric=n, description="d" * 50,
                            time=now) for n in range(25_000)]
            assert (await request(port, encode_request(events))).ok
        waits: list[float] = []

        async def bystander() -> None:
            await trio.sleep(0.02)
            started = trio.current_time()
            await still_serves(port)
            waits.append(trio.current_time() - started)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bystander)
            reply = await request(port, encode_request(query="true"))
        assert reply.ok and len(reply.events) == 100_000
        assert reply.ByteSize() > 8_000_000 and waits[0] < 3

    with_server(body)


@pytest.mark.usefixtures("pure_codec")
def test_events_that_outlive_an_expiry_sweep_stop_pinning_their_wire_message() -> None:
    from streams import Event as PlainEvent
    from streams._index import Index
    from transport._codec import decode_message, encode_request

    sent = [PlainEvent(host=f"h{i}", service="s", metric=i, time=100.0, ttl=60.0,
                       tags=("t",), env="prod") for i in range(100)]
    decoded = decode_message(encode_request(sent, framed=False), now=0.0).events
    index = Index()
    for event in decoded:
        index(event)
    assert index.expire(now=110.0) == []
    assert type(index.lookup("h42", "s")) is not PlainEvent  # young: left as decoded
    index(decoded[7])  # replaced since the first sweep: stays decoded below too
    index(decode_message(encode_request([sent[7]], framed=False), now=0.0).events[0])
    assert index.expire(now=111.0) == []
    assert type(index.lookup("h7", "s")) is not PlainEvent
    stored = index.lookup("h42", "s")
    assert type(stored) is PlainEvent and stored == sent[42]
    assert index.search('env = "prod" and metric >= 99') == [sent[99]]


def test_garbage_udp_is_counted_every_time_and_logged_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    # Before: one warning per datagram (~10k lines/s from a spoofable source).
    import logging

    async def body(running: Running) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.connect(("127.0.0.1", _udp_port(running)))
            for _ in range(300):
                await sock.send(b"\xff\xff garbage")
            await sock.send(encode_request([Event(host="after", service="g", time=1)],
                                           framed=False))
            with trio.fail_after(5):
                while running.index.lookup("after", "g") is None:
                    await trio.sleep(0.01)
        udp = running.services[1]
        assert udp.statistics()["dropped"] == 300

    with caplog.at_level(logging.WARNING, logger="rillet.server"):
        with_server(body)
    assert len([r for r in caplog.records if "UDP datagram" in r.getMessage()]) == 1


BLOCKING_CONFIG = """
import time
from streams import *
from transport import tcp_server

tcp_server(port=0)

def block_forever(event):
    if event.service == "block":
        time.sleep(3600)

streams(block_forever, index)
"""


def test_a_blocking_stream_is_reported_and_sigterm_still_ends_the_process(
        tmp_path: Path) -> None:
    # Before: nothing said what held the loop, and SIGTERM was ignored while it blocked.
    config = tmp_path / "monitoring.py"
    config.write_text(BLOCKING_CONFIG)
    process, port, _ = start_rillet(config, "--stall", "0.2", "--stop-within", "1")
    assert process.stderr is not None
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(encode_request([Event(service="block", time=1)]))
            report = ""
            for line in process.stderr:
                report += line
                if "block_forever" in line:
                    break
            assert "the event loop has been held for" in report
            assert "time.sleep(3600)" in report or "block_forever" in report
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, rest = process.communicate(timeout=10)
        assert time.monotonic() - started < 5
        assert process.returncode == 1
        assert "still running 1.0 s after SIGTERM" in rest and "block_forever" in rest
    finally:
        process.kill()
        process.wait()


def test_fields_riemann_proto_does_not_know_never_reach_other_clients() -> None:
    # Before: an event carrying a 1 MB unknown field was echoed byte for byte in
    # other clients' query replies until the index materialised it.
    foreign = b"FOREIGN!" * 2000
    event = Msg().events.add(host="h", service="unknown-field", time=1)
    wire = event.SerializeToString() + b"\xfa\x06" + varint(len(foreign)) + foreign  # field 111
    message = b"2" + varint(len(wire)) + wire

    async def body(running: Running) -> None:
        port = running.ports[0]
        assert (await request(port, frame(message))).ok
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(encode_request(query='service = "unknown-field"'))
            raw = b""
            while len(raw) < 4 or len(raw) < 4 + int.from_bytes(raw[:4], "big"):
                raw += await stream.receive_some(65536)
        assert b"FOREIGN!" not in raw
        reply = Msg.FromString(raw[4:])
        assert [e.host for e in reply.events] == ["h"]

    with_server(body)


