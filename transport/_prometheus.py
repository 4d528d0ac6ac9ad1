"""``prometheus_endpoint``: the index's metrics over HTTP for Prometheus to scrape.

Riemann pushes to a Pushgateway; rillet serves ``/metrics`` instead, which is
how Prometheus prefers to collect. Every indexed event with a metric is one
sample: the metric name is the service (sanitised, with an optional
``prefix``), ``host`` and ``service`` are labels, and expired events are left
out. The exposition is built by a pure function; HTTP is parsed by h11.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
from collections.abc import Iterable
from typing import Any

import h11
import trio

from streams import Runtime
from streams._config import service
from streams._core import is_expired
from streams._validate import StreamArgumentError

from ._defaults import DEFAULT_HOST, DEFAULT_PROMETHEUS_PORT
from ._delivery import field_names
from ._server import _bind_error, _check_port
from ._tls import check_tls, server_stream

__all__ = ["prometheus_endpoint", "prometheus_exposition"]

log = logging.getLogger("rillet.prometheus")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
# Requests are tiny GETs; a peer that sends nothing for this long is dropped.
_IDLE_SECONDS = 60
# Events formatted between two checkpoints, so a huge index never holds the loop.
_SLICE = 5000


def metric_name(service: str | None, prefix: str = "") -> str:
    """A valid Prometheus metric name for ``service``.

    >>> metric_name("http req 0.95"), metric_name("5xx rate", "rillet_"), metric_name(None)
    ('http_req_0_95', 'rillet_5xx_rate', 'rillet')
    """
    name = prefix + _INVALID_NAME.sub("_", service or "rillet")
    return "_" + name if name[0].isdigit() else name


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample_value(metric: float) -> str:
    if math.isnan(metric):
        return "NaN"
    if math.isinf(metric):
        return "+Inf" if metric > 0 else "-Inf"
    return repr(float(metric)) if isinstance(metric, float) else str(metric)


def _sample(event: Any, prefix: str, labels: tuple[str, ...]) -> tuple[str, str] | None:
    metric = event.metric
    if metric is None or isinstance(metric, bool):
        return None
    pairs = [("host", event.host), ("service", event.service)]
    pairs += [(_INVALID_LABEL.sub("_", name), event.get(name)) for name in labels]
    rendered = ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs
                        if value is not None)
    name = metric_name(event.service, prefix)
    return name, f"{name}{{{rendered}}} {_sample_value(metric)}\n"


def prometheus_exposition(events: Iterable[Any], now: float, prefix: str = "",
                          labels: tuple[str, ...] = ()) -> str:
    """Prometheus's text format for the unexpired events that have a metric.

    >>> from streams import Event
    >>> print(prometheus_exposition([
    ...     Event(host="web1", service="cpu user", metric=0.5, time=100),
    ...     Event(host="web2", service="cpu user", metric=2, time=100, env="prod"),
    ...     Event(host="web1", service="disk", metric=3, time=10, ttl=5),   # expired
    ...     Event(host="web1", service="status", state="ok", time=100)],   # no metric
    ...     now=101, labels=("env",)), end="")
    # TYPE cpu_user gauge
    cpu_user{host="web1",service="cpu user"} 0.5
    cpu_user{host="web2",service="cpu user",env="prod"} 2
    """
    return "".join(_render(_samples(events, now, prefix, labels)))


def _samples(events: Iterable[Any], now: float, prefix: str, labels: tuple[str, ...]
             ) -> list[tuple[str, str]]:
    return [s for event in events if not is_expired(event, now)
            if (s := _sample(event, prefix, labels)) is not None]


def _render(samples: list[tuple[str, str]]) -> list[str]:
    # Prometheus wants the samples of one metric together, under one TYPE line.
    samples.sort()
    out: list[str] = []
    previous = None
    for name, line in samples:
        if name != previous:
            out.append(f"# TYPE {name} gauge\n")
            previous = name
        out.append(line)
    return out


class prometheus_endpoint:
    """Serve the index's metrics at ``http://host:port/metrics`` for Prometheus to scrape.

    Declare it in a config like a server. ``prefix`` is put before every
    metric name; ``labels`` names event attributes added as labels besides
    ``host`` and ``service``. Each event is a gauge; events whose TTL ran out
    are left out, even before the index sweeps them. ``tls`` takes
    ``transport.tls(certfile=..., keyfile=...)``: then Prometheus scrapes https://.

    >>> from streams._config import Config, declaring
    >>> with declaring(Config()) as config:
    ...     endpoint = prometheus_endpoint(port=9559, prefix="rillet_")
    >>> endpoint, config.services == [endpoint]
    (prometheus_endpoint(host='127.0.0.1', port=9559, prefix='rillet_'), True)
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PROMETHEUS_PORT, *,
                 prefix: str = "", labels: tuple[str, ...] | list[str] = (),
                 path: str = "/metrics", tls: ssl.SSLContext | None = None) -> None:
        _check_port(port, "prometheus_endpoint")
        self.tls = check_tls(tls, "prometheus_endpoint")
        if not isinstance(prefix, str) or (prefix and _INVALID_NAME.search(prefix)):
            raise StreamArgumentError(
                f"prometheus_endpoint(prefix={prefix!r}): the prefix may hold "
                f"only letters, digits, '_' and ':', e.g. prefix='rillet_'")
        self.labels = field_names("prometheus_endpoint", "labels", labels)
        if not isinstance(path, str) or not path.startswith("/"):
            raise StreamArgumentError(
                f"prometheus_endpoint(path={path!r}): the path must start with "
                f"'/', e.g. path='/metrics'")
        self.host = host
        self.port = port
        self.prefix = prefix
        self.path = path
        self.bound_port: int | None = None
        self.scrapes = 0
        self.samples = 0
        service(self)

    def __repr__(self) -> str:
        options = [f"host={self.host!r}", f"port={self.port!r}"]
        if self.prefix:
            options.append(f"prefix={self.prefix!r}")
        if self.labels:
            options.append(f"labels={self.labels!r}")
        if self.path != "/metrics":
            options.append(f"path={self.path!r}")
        if self.tls is not None:
            options.append("tls=tls(...)")
        return f"prometheus_endpoint({', '.join(options)})"

    def statistics(self) -> dict[str, Any]:
        return {"scrapes": self.scrapes, "samples": self.samples}

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as error:
            raise _bind_error(error, "Prometheus scrapes", self.host, self.port) from error
        self.bound_port = listeners[0].socket.getsockname()[1]
        log.info("Prometheus endpoint on %s://%s:%s%s", "http" if self.tls is None else "https",
                 self.host, self.bound_port, self.path)
        task_status.started(self.bound_port)
        await trio.serve_listeners(
            lambda s: self._connection(server_stream(s, self.tls, http=True), runtime), listeners)

    async def exposition(self, runtime: Runtime) -> str:
        """The current exposition of ``runtime``'s index, built a slice at a time."""
        events = list(runtime.index)
        now = runtime.now()
        samples: list[tuple[str, str]] = []
        for start in range(0, len(events), _SLICE):
            samples += _samples(events[start:start + _SLICE], now, self.prefix, self.labels)
            await trio.lowlevel.checkpoint()
        self.samples = len(samples)
        return "".join(_render(samples))

    async def _connection(self, stream: Any, runtime: Any) -> None:
        connection = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    with trio.fail_after(_IDLE_SECONDS):
                        connection.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    await self._answer(stream, connection, request, runtime)
                    request = None
                    if connection.our_state is not h11.DONE or \
                            connection.their_state is not h11.DONE:
                        return
                    connection.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
                trio.TooSlowError, ConnectionError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, stream: trio.abc.Stream, connection: h11.Connection,
                      request: h11.Request, runtime: Any) -> None:
        target = request.target.decode("ascii", "replace").split("?", 1)[0]
        if request.method not in (b"GET", b"HEAD"):
            status, body, kind = 405, "use GET\n", "text/plain; charset=utf-8"
        elif target != self.path:
            status, body, kind = 404, f"metrics are at {self.path}\n", \
                "text/plain; charset=utf-8"
        else:
            self.scrapes += 1
            status, body, kind = 200, await self.exposition(runtime), CONTENT_TYPE
        data = body.encode()
        headers = [("Content-Type", kind), ("Content-Length", str(len(data)))]
        out = connection.send(h11.Response(status_code=status, headers=headers))
        if request.method != b"HEAD":
            out = (out or b"") + (connection.send(h11.Data(data=data)) or b"")
        out = (out or b"") + (connection.send(h11.EndOfMessage()) or b"")
        await stream.send_all(out)
