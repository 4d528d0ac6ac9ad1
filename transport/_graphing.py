"""Sinks to graphing: Graphite (plaintext over TCP or UDP, or pickle), Graphite annotations
(graphite-web's events API) and InfluxDB (line protocol, v1 and v2 write APIs).

Every sink is a :class:`~transport._delivery.NetworkSink`: the stream queues
and returns, a trio task delivers. Metrics sinks drop the oldest queued event
when their queue is full. The payload builders (``graphite_path``,
``graphite_lines``, ``graphite_pickle``, ``influxdb_lines``,
``graphite_annotation``) are pure functions.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trio

from streams._validate import StreamArgumentError

from ._client import Readable
from ._delivery import HttpSink, NetworkSink, field_names

__all__ = [
    "graphite", "graphite_annotations", "graphite_annotation", "graphite_lines",
    "graphite_path", "graphite_pickle", "influxdb", "influxdb_lines",
]

_TRAILING_QUANTILE = re.compile(r"(\d+\.\d+)$")
_WHITESPACE = re.compile(r"\s")
# Lines per UDP datagram are packed below a typical MTU, so datagrams are not fragmented.
_MAX_DATAGRAM = 1400


def graphite_path(event: Any) -> str:
    """Riemann's default Graphite path: host labels reversed, then the service's words.

    A trailing quantile such as ``0.95`` becomes ``95`` (Riemann's
    ``graphite-path-percentiles``).

    >>> from streams import Event
    >>> graphite_path(Event(host="web1.example.com", service="http req 0.95"))
    'com.example.web1.http.req.95'
    >>> graphite_path(Event(service="cpu"))
    'cpu'
    """
    return _path(event.host, event.service)


@functools.lru_cache(maxsize=65536)
def _path(host: str | None, service: str | None) -> str:
    # Cached: a sink sees the same few (host, service) pairs over and over, and
    # building the path costs more than everything else in a line.
    if service:
        service = _TRAILING_QUANTILE.sub(lambda m: str(int(100 * float(m[1]))), service)
    parts = (host.split(".")[::-1] if host else []) + (service.split(" ") if service else [])
    return _clean(".".join(parts))


@functools.lru_cache(maxsize=65536)
def _clean(path: str) -> str:
    # A line with whitespace in its path would be read as a different metric.
    return _WHITESPACE.sub("_", path)


def _value(metric: Any) -> str | None:
    kind = type(metric)
    if kind is float:
        return repr(metric) if metric - metric == 0 else None  # NaN and infinities are not
    if kind is int:
        return str(metric)
    if metric is None or isinstance(metric, bool):
        return None
    if isinstance(metric, int):
        return str(int(metric))
    metric = float(metric)
    return repr(metric) if math.isfinite(metric) else None


def _graphite_points(events: Iterable[Any], path: Callable[[Any], str], now: float
                     ) -> list[tuple[str, str, int]]:
    default = path is graphite_path
    points = []
    for event in events:
        value = _value(event.metric)
        if value is None:
            continue  # as Riemann: only events with a (finite) metric are graphed
        name = _path(event.host, event.service) if default else _clean(path(event))
        when = event.time
        points.append((name, value, int(now if when is None else when)))
    return points


def graphite_lines(events: Iterable[Any], path: Callable[[Any], str] = graphite_path,
                   now: float = 0.0) -> bytes:
    """Graphite's plaintext protocol: ``path value timestamp`` per line.

    Events without a metric (or with NaN or infinity) are left out; an event
    without a time is stamped ``now``.

    >>> from streams import Event
    >>> graphite_lines([Event(host="web1", service="cpu user", metric=0.5, time=1700000000.7),
    ...                 Event(host="web1", service="no metric", time=1)])
    b'web1.cpu.user 0.5 1700000000\\n'
    """
    return "".join([f"{name} {value} {when}\n"
                    for name, value, when in _graphite_points(events, path, now)]).encode()


def graphite_pickle(events: Iterable[Any], path: Callable[[Any], str] = graphite_path,
                    now: float = 0.0) -> bytes:
    """Graphite's pickle protocol: one length-prefixed pickled list of (path, (time, value)).

    >>> from streams import Event
    >>> import pickle
    >>> data = graphite_pickle([Event(host="a", service="b", metric=2, time=10)])
    >>> pickle.loads(data[4:]), int.from_bytes(data[:4], "big") == len(data) - 4
    ([('a.b', (10, 2.0))], True)
    """
    points = [(name, (when, float(value)))
              for name, value, when in _graphite_points(events, path, now)]
    if not points:
        return b""
    payload = pickle.dumps(points, protocol=2)
    return struct.pack("!L", len(payload)) + payload


def _datagrams(lines: bytes, size: int = _MAX_DATAGRAM) -> Iterator[bytes]:
    """Whole lines packed into datagrams of at most ``size`` bytes (a longer line alone)."""
    chunk: list[bytes] = []
    length = 0
    for line in lines.splitlines(keepends=True):
        if chunk and length + len(line) > size:
            yield b"".join(chunk)
            chunk, length = [], 0
        chunk.append(line)
        length += len(line)
    if chunk:
        yield b"".join(chunk)


class graphite(NetworkSink):
    """Send metrics to Graphite's carbon (Riemann's ``graphite``).

    Plaintext over TCP by default; ``protocol="udp"`` sends datagrams;
    ``pickle=True`` uses carbon's pickle receiver (TCP, port 2004 by default
    in carbon). ``path`` turns an event into its Graphite path
    (:func:`graphite_path` by default). Events without a metric are skipped.
    Overflow: drops the oldest queued event. Delivery options
    (``queue_size``, ``batch_size``, ``timeout``, ``backoff``, ...) are the
    delivery layer's.

    >>> from streams import Event
    >>> from streams._config import Config, declaring
    >>> with declaring(Config()) as config:
    ...     graph = graphite(host="127.0.0.1", port=2003)
    >>> graph, config.services == [graph]
    (graphite(host='127.0.0.1', port=2003), True)
    >>> graph(Event(host="web1", service="cpu", metric=0.5)); graph.statistics()["queued"]
    1
    """

    __slots__ = ("_readable", "_socket", "_stream", "host", "path", "pickle", "port",
                 "protocol")
    default_linger = 0.1  # metrics can wait 100 ms to go out in fewer writes

    def __init__(self, host: str = "127.0.0.1", port: int = 2003, *, protocol: str = "tcp",
                 pickle: bool = False, path: Callable[[Any], str] = graphite_path,
                 **options: Any) -> None:
        _check_address("graphite", host, port)
        if protocol not in ("tcp", "udp"):
            raise StreamArgumentError(
                f"graphite(protocol={protocol!r}): protocol must be 'tcp' or "
                f"'udp'")
        if pickle and protocol != "tcp":
            raise StreamArgumentError(
                "graphite(pickle=True, protocol='udp'): carbon takes pickles over "
                "TCP only; drop protocol='udp' (and use port=2004)")
        if not callable(path):
            raise StreamArgumentError(
                f"graphite(path={path!r}): path must be a function of the event "
                f"returning its Graphite path, e.g. path=lambda e: e.service")
        self.host = host
        self.port = port
        self.protocol = protocol
        self.pickle = bool(pickle)
        self.path = path
        self._stream: trio.SocketStream | None = None
        self._readable: Readable | None = None
        self._socket: trio.socket.SocketType | None = None
        super().__init__(**options)

    async def send_batch(self, batch: list[Any]) -> None:
        now = time.time()
        if self.protocol == "udp":
            lines = graphite_lines(batch, self.path, now)
            sock = await self._udp()
            for datagram in _datagrams(lines):
                await sock.send(datagram)
            return
        payload = (graphite_pickle if self.pickle else graphite_lines)(batch, self.path, now)
        if payload:
            stream = await self._tcp()
            await stream.send_all(payload)

    async def _tcp(self) -> trio.SocketStream:
        stream = self._stream
        if stream is not None and self._readable is not None and self._readable():
            # carbon never writes to us: readable means it closed the connection
            # (restarted), so this write would be lost; reconnect first.
            await self.disconnect()
            stream = None
        if stream is None:
            stream = await open_tcp(self.host, self.port)
            self._stream = stream
            self._readable = Readable(stream.socket.fileno())
        return stream

    async def _udp(self) -> trio.socket.SocketType:
        if self._socket is None:
            info = await trio.socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, kind, protocol, _, address = info[0]
            sock = trio.socket.socket(family, kind, protocol)
            await sock.connect(address)
            self._socket = sock
        return self._socket

    async def disconnect(self) -> None:
        stream, self._stream, self._readable = self._stream, None, None
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
        if stream is not None:
            await trio.aclose_forcefully(stream)


async def open_tcp(host: str, port: int) -> trio.SocketStream:
    """``trio.open_tcp_stream``, failing with the reason of the last attempt in its message."""
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as error:
        cause: BaseException | None = error.__cause__
        while isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[-1]
        raise ConnectionError(f"cannot connect to {host}:{port}: {cause or error}") from error


def _check_address(caller: str, host: Any, port: Any) -> None:
    if not isinstance(host, str) or not host:
        raise StreamArgumentError(
            f"{caller}(host={host!r}): host must be a host name or address, "
            f"e.g. host='127.0.0.1'")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise StreamArgumentError(
            f"{caller}(port={port!r}): port must be an int from 1 to 65535")


# Graphite annotations: graphite-web's events API -----------------------------------


def graphite_annotation(event: Any, now: float = 0.0) -> dict[str, Any]:
    """The JSON graphite-web's ``/events/`` takes for one event: an annotation on graphs.

    ``what`` names host, service and state; ``tags`` are host, service, state
    and the event's tags (graphite-web splits tags on spaces, so each space
    becomes an underscore); ``data`` is the description.

    >>> from streams import Event
    >>> graphite_annotation(Event(host="web1", service="http req", state="critical",
    ...                           description="503s", tags=("prod",), time=1700000000.5))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'what': 'web1 http req critical', 'tags': ['web1', 'http_req', 'critical', 'prod'],
     'when': 1700000000, 'data': '503s'}
    """
    words = [w for w in (event.host, event.service, event.state) if w]
    tags = [*words, *(event.tags or ())]
    when = event.time
    return {"what": " ".join(words) or "rillet event",
            "tags": [_WHITESPACE.sub("_", str(t)) for t in tags],
            "when": int(now if when is None else when),
            "data": event.description or ""}


class graphite_annotations(HttpSink):
    """Post events (state changes, deploys) to graphite-web's events API as annotations.

    Put it after ``changed_state`` so each change draws one mark on graphs;
    graphite-web shows them with ``events('tag')`` in a render target. One
    request per event (the API takes one). Overflow: drops the newest event,
    with a log line and a count, since an annotation is a record of a change.

    >>> from streams._config import Config, declaring
    >>> with declaring(Config()):
    ...     marks = graphite_annotations("http://127.0.0.1:8080")
    >>> marks
    graphite_annotations('http://127.0.0.1:8080')
    """

    __slots__ = ()
    overflow = "drop_newest"

    def __init__(self, url: str = "http://127.0.0.1:8080", **options: Any) -> None:
        super().__init__(url, **options)

    async def send_batch(self, batch: list[Any]) -> None:
        now = time.time()
        events_url = self.url.rstrip("/") + "/events/"
        while batch:
            await self.post(events_url, content=json.dumps(graphite_annotation(batch[0], now)),
                            headers={"Content-Type": "application/json"})
            # Delivered: a retry after a later failure must not post it twice.
            del batch[0]


# InfluxDB: line protocol --------------------------------------------------------

_STANDARD = frozenset({"host", "service", "time", "metric", "tags", "ttl", "state",
                       "description"})


def _escape_key(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=") \
        .replace(" ", "\\ ").replace("\n", "\\n")


def _escape_measurement(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ") \
        .replace("\n", "\\n")


def _string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def influxdb_lines(events: Iterable[Any], tag_fields: tuple[str, ...] = ("host",),
                   now: float = 0.0) -> bytes:
    """InfluxDB's line protocol, one point per event with a metric, time in ms.

    The measurement is the service; ``tag_fields`` become tags (empty ones
    left out); the metric is the float field ``value``; state, description
    and the other string attributes are string fields (as Riemann's influxdb).

    >>> from streams import Event
    >>> influxdb_lines([Event(host="web 1", service="cpu", metric=2, state="ok",
    ...                       time=1700000000.25, region="eu")], ("host", "region"))
    b'cpu,host=web\\\\ 1,region=eu value=2.0,state="ok" 1700000000250\\n'
    """
    lines = []
    for event in events:
        value = _value(event.metric)
        if value is None:
            continue
        tags = "".join(f",{_escape_key(name)}={_escape_key(str(tag))}"
                       for name in tag_fields
                       if (tag := event.get(name)) not in (None, ""))
        fields = [f"value={float(value)!r}"]
        for name in ("state", "description"):
            text = getattr(event, name)
            if text and name not in tag_fields:
                fields.append(f"{name}={_string_field(text)}")
        for name, text in event.attributes.items():
            if name not in _STANDARD and name not in tag_fields and isinstance(text, str):
                fields.append(f"{_escape_key(name)}={_string_field(text)}")
        when = event.time
        stamp = round((now if when is None else when) * 1000)
        measurement = _escape_measurement(event.service or "rillet")
        lines.append(f"{measurement}{tags} {','.join(fields)} {stamp}\n")
    return "".join(lines).encode()


class influxdb(HttpSink):
    """Write metrics to InfluxDB (Riemann's ``influxdb``), in batches over HTTP.

    InfluxDB 1.x: ``influxdb(url, database="riemann")`` writes to ``/write``
    (``username``/``password`` if authentication is on). InfluxDB 2.x:
    ``influxdb(url, bucket="b", org="o", token="...")`` writes to
    ``/api/v2/write``. ``tag_fields`` names the event fields that become
    tags (``("host",)`` by default). Overflow: drops the oldest queued event.

    >>> from streams._config import Config, declaring
    >>> with declaring(Config()):
    ...     influx = influxdb("http://127.0.0.1:8086", database="metrics")
    >>> influx
    influxdb('http://127.0.0.1:8086', database='metrics')
    """

    __slots__ = ("params", "tag_fields", "write_url")
    default_linger = 0.1  # metrics can wait 100 ms to go out in fewer requests

    def __init__(self, url: str = "http://127.0.0.1:8086", database: str | None = None, *,
                 bucket: str | None = None, org: str | None = None, token: str | None = None,
                 username: str | None = None, password: str | None = None,
                 tag_fields: tuple[str, ...] | list[str] = ("host",), **options: Any) -> None:
        if (database is None) == (bucket is None):
            raise StreamArgumentError(
                f"influxdb(database={database!r}, bucket={bucket!r}): give database= for "
                f"InfluxDB 1.x or bucket= (with org= and token=) for InfluxDB 2.x, not both")
        self.tag_fields = field_names("influxdb", "tag_fields", tag_fields)
        headers: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8"}
        base = url.rstrip("/") if isinstance(url, str) else url
        if bucket is not None:
            if not org or not token:
                raise StreamArgumentError(
                    f"influxdb(bucket={bucket!r}, org={org!r}, token=...): "
                    f"InfluxDB 2.x needs org= and token= as well")
            headers["Authorization"] = f"Token {token}"
            self.write_url = f"{base}/api/v2/write"
            self.params = {"org": org, "bucket": bucket, "precision": "ms"}
        else:
            self.write_url = f"{base}/write"
            self.params = {"db": str(database), "precision": "ms"}
            if username is not None:
                self.params.update(u=username, p=password or "")
        super().__init__(url, headers=headers, **options)

    async def send_batch(self, batch: list[Any]) -> None:
        body = influxdb_lines(batch, self.tag_fields, time.time())
        if body:
            await self.post(self.write_url, content=body, params=self.params)
