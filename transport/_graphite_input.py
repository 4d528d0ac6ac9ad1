"""Graphite's plaintext protocol as an input (Riemann's ``graphite-server``, spec §1.10).

``<path> <value> <timestamp>`` lines, over TCP (one per line, ``\\n`` or
``\\r\\n``) or UDP (each datagram holds one or more lines), become events with
``service=path``, ``metric=value`` and ``time=timestamp``. A malformed line is
dropped, counted and logged (at most one log line per second per server);
the connection's other lines still count.

>>> parse_line("servers.web1.cpu 0.93 1700000000")
Event(service='servers.web1.cpu', metric=0.93, time=1700000000)
>>> parse_line("cpu;host=web1;dc=eu 5 10", tags=True)
Event(host='web1', service='cpu', metric=5.0, time=10, dc='eu')
>>> parse_line("cpu NaN 10")
Traceback (most recent call last):
...
transport._graphite_input.GraphiteLineError: NaN metric
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from streams import FIELDS, Event, Runtime
from streams._validate import StreamArgumentError

from ._codec import _INT64_MAX, _INT64_MIN
from ._defaults import DEFAULT_HOST
from ._recording import record_events
from ._server import _check_port, _peer, bind_udp, listen_tcp

__all__ = ["DEFAULT_GRAPHITE_PORT", "GraphiteLineError", "GraphiteServer", "LineSplitter",
           "graphite_server", "parse_line"]

log = logging.getLogger("rillet.graphite")

DEFAULT_GRAPHITE_PORT = 2003
#: Longest line accepted, in bytes without its end (Riemann's limit).
DEFAULT_MAX_LINE = 1024
_MAX_DATAGRAM = 65_535

SourceHost = Callable[[str], tuple[str | None, str]] | int | str | None


class GraphiteLineError(ValueError):
    """Why a Graphite line was dropped (Riemann's warning texts)."""


def _number(text: str) -> float:
    if "_" in text:  # Python reads 1_000; Graphite senders never mean it
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_line(line: str, *, tags: bool = False) -> Event:
    """One Graphite line as an event; raises GraphiteLineError naming the problem."""
    fields = line.split()
    if line[:1].isspace() and fields:
        fields.insert(0, "")  # Riemann splits on whitespace keeping a leading empty field
    if len(fields) > 3:
        raise GraphiteLineError("too many fields")
    if not fields or not fields[0]:
        raise GraphiteLineError("blank line")
    if len(fields) < 2:
        raise GraphiteLineError("no metric")
    if len(fields) < 3:
        raise GraphiteLineError("no timestamp")
    path, value, stamp = fields
    if "nan" in value.lower():
        raise GraphiteLineError("NaN metric")
    try:
        metric = _number(value)
    except ValueError:
        raise GraphiteLineError("invalid metric") from None
    try:
        if "_" in stamp:
            raise ValueError(stamp)
        when = int(stamp)
        if not _INT64_MIN <= when <= _INT64_MAX:
            raise ValueError(stamp)
    except ValueError:
        raise GraphiteLineError("invalid timestamp") from None
    if not tags:
        return Event(service=path, metric=metric, time=when)
    name, *pairs = path.split(";")
    found: dict[str, Any] = {}
    for pair in pairs:
        if not pair:
            continue
        key, _, rest = pair.partition("=")
        found[key] = rest.split("=")[0] if "=" in pair else None
    base = {k: found.pop(k) for k in ("host", "state", "description") if k in found}
    # The line's own name, value and time win over tags of the same name.
    attributes = {k: v for k, v in found.items() if v is not None and k not in FIELDS}
    return Event(service=name, metric=metric, time=when, **base, attributes=attributes)


class LineSplitter:
    """Sans-I/O line framing: feed bytes, get whole lines; over-long lines are skipped.

    >>> splitter = LineSplitter(max_line=8)
    >>> splitter.feed(b"a 1 2\\r\\nb 3"), splitter.feed(b" 4\\nthis is too long\\nc 5 6\\n")
    (['a 1 2'], ['b 3 4', 'c 5 6'])
    >>> splitter.overlong
    1
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self.overlong = 0
        self._buffer = b""
        self._skipping = False

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        buffer = self._buffer + data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:end]
            start = end + 1
            if self._skipping:
                self._skipping = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line:
                self.overlong += 1
                continue
            lines.append(line.decode("utf-8", "replace"))
        rest = buffer[start:]
        if len(rest) > self.max_line + 1:
            # A line longer than allowed is dropped as it streams in, so the
            # buffer never holds more than one allowed line.
            if not self._skipping:
                self.overlong += 1
            self._skipping = True
            rest = b""
        self._buffer = rest
        return lines


@dataclass
class GraphiteServer:
    """Graphite plaintext input over TCP or UDP."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_GRAPHITE_PORT
    protocol: str = "tcp"
    tags: bool = False
    source_host: SourceHost = None
    parser: Callable[[Event], Event | None] | None = None
    max_line: int = DEFAULT_MAX_LINE
    lines: int = field(default=0, repr=False)
    malformed: int = field(default=0, repr=False)
    connections: int = field(default=0, repr=False)
    bound_port: int | None = field(default=None, repr=False)
    _last_log: float = field(default=-math.inf, repr=False)
    _unlogged: int = field(default=0, repr=False)

    async def serve(self, runtime: Runtime, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        if self.protocol == "udp":
            await self._serve_udp(runtime, task_status)
            return
        listeners = await listen_tcp(self.host, self.port, "Graphite TCP")
        self.bound_port = listeners[0].socket.getsockname()[1]
        task_status.started(self.bound_port)
        await trio.serve_listeners(lambda s: self._connection(s, runtime), listeners)

    async def _connection(self, stream: Any, runtime: Runtime) -> None:
        self.connections += 1
        peer = _peer(stream)
        splitter = LineSplitter(self.max_line)
        try:
            while data := await stream.receive_some(65_536):
                before = splitter.overlong
                lines = splitter.feed(data)
                for _ in range(splitter.overlong - before):
                    self._malformed(peer, f"a line longer than max_line={self.max_line} bytes")
                self._stream(lines, peer.rsplit(":", 1)[0], runtime)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_udp(self, runtime: Runtime, task_status: trio.TaskStatus[int]) -> None:
        with await bind_udp(self.host, self.port, "Graphite UDP") as sock:
            self.bound_port = sock.getsockname()[1]
            task_status.started(self.bound_port)
            while True:
                data, address = await sock.recvfrom(_MAX_DATAGRAM)
                splitter = LineSplitter(self.max_line)
                lines = splitter.feed(data if data.endswith(b"\n") else data + b"\n")
                peer = f"{address[0]}:{address[1]}"
                for _ in range(splitter.overlong):
                    self._malformed(peer, f"a line longer than max_line={self.max_line} bytes")
                self._stream(lines, address[0], runtime)

    def _stream(self, lines: list[str], peer_host: str, runtime: Runtime) -> None:
        events: list[Event] = []
        for line in lines:
            self.lines += 1
            try:
                event = parse_line(line, tags=self.tags)
                event = self._host(event, peer_host)
                if self.parser is not None:
                    parsed = self.parser(event)
                    if parsed is None:
                        continue
                    event = parsed
            except GraphiteLineError as error:
                self._malformed(peer_host, f"{error}: {line[:100]!r}")
                continue
            except Exception as error:
                self._malformed(peer_host, f"{type(error).__name__} in parser/source_host: "
                                           f"{error}: {line[:100]!r}")
                continue
            events.append(event)
        if events:
            record_events(runtime, events)
            runtime.stream(events)

    def _host(self, event: Event, peer_host: str) -> Event:
        rule = self.source_host
        if rule is None or event.host is not None:
            return event
        if rule == "peer":
            return event.evolve(host=peer_host)
        path = event.service or ""
        if isinstance(rule, int):
            parts = path.split(".")
            if rule >= len(parts):
                raise GraphiteLineError(f"no path segment {rule} for the host")
            host = parts.pop(rule)
            return event.evolve(host=host, service=".".join(parts))
        if callable(rule):
            new_host, service = rule(path)
            return event.evolve(host=new_host, service=service)
        return event

    def _malformed(self, peer: str, why: str) -> None:
        self.malformed += 1
        now = trio.current_time()
        if now - self._last_log >= 1:
            more = f" ({self._unlogged} more malformed lines since the last message)" \
                if self._unlogged else ""
            log.warning("dropped a Graphite line from %s: %s%s", peer, why, more)
            self._last_log, self._unlogged = now, 0
        else:
            self._unlogged += 1

    def statistics(self) -> dict[str, Any]:
        return {"lines": self.lines, "malformed": self.malformed,
                "connections": self.connections}


def graphite_server(host: str = DEFAULT_HOST, port: int = DEFAULT_GRAPHITE_PORT, *,
                    protocol: str = "tcp", tags: bool = False, source_host: SourceHost = None,
                    parser: Callable[[Event], Event | None] | None = None,
                    max_line: int = DEFAULT_MAX_LINE) -> GraphiteServer:
    """Declare a Graphite plaintext input in a config (Riemann's ``graphite-server``).

    ``source_host`` sets the events' host: None leaves it unset (Riemann),
    ``"peer"`` takes the sender's address, an int ``n`` takes path segment
    ``n`` (``graphite_server(source_host=1)`` reads ``collectd.web1.cpu.idle``
    as host ``web1``, service ``collectd.cpu.idle``), and a function maps the
    path to ``(host, service)``. ``parser`` may change each event, or drop it
    by returning None (Riemann's ``parser-fn``). ``tags=True`` reads
    ``name;key=value`` paths.
    """
    from streams._config import service

    _check_port(port, "graphite_server")
    if protocol not in ("tcp", "udp"):
        raise StreamArgumentError(
            f"graphite_server(protocol={protocol!r}): protocol is \"tcp\" or "
            f"\"udp\"; declare two servers for both")
    if not (source_host is None or source_host == "peer" or callable(source_host)
            or (isinstance(source_host, int) and not isinstance(source_host, bool)
                and source_host >= 0)):
        raise StreamArgumentError(
            f"graphite_server(source_host={source_host!r}): use None, \"peer\", "
            f"a path segment number such as 1, or a function path -> (host, "
            f"service)")
    if parser is not None and not callable(parser):
        raise StreamArgumentError(
            f"graphite_server(parser={parser!r}): parser is a function taking "
            f"and returning an event")
    if isinstance(max_line, bool) or not isinstance(max_line, int) or max_line < 16:
        raise StreamArgumentError(
            f"graphite_server(max_line={max_line!r}): max_line is an int >= 16 "
            f"(bytes)")
    return service(GraphiteServer(  # type: ignore[no-any-return]
        host=host, port=port, protocol=protocol, tags=bool(tags), source_host=source_host,
        parser=parser, max_line=max_line))
