"""HTTP listeners: WebSocket and SSE subscriptions, the HTTP JSON input, the dashboard.

Riemann's paths (spec §1.8, §1.9): on the WebSocket server (default
127.0.0.1:5556) ``/index?query=...&subscribe=true``, ``/pubsub/<channel>?query=...``
and ``/events``; on the SSE server (default 127.0.0.1:5558) ``/index?query=...``.
rillet adds the dashboard at ``/`` of the WebSocket server and accepts
``POST /events`` with one event, a list, or one event per line.

HTTP is parsed by h11 and WebSocket by wsproto; no parsing is done here.
When ``tokens`` are configured (required to listen beyond loopback) every
request must carry one, as ``?token=...`` (browsers cannot set headers on a
WebSocket or an EventSource) or ``Authorization: Bearer ...``, and what a
subscriber sees is limited by that token's query.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from streams import Event, QuerySyntaxError, Runtime, compile_query
from streams._clock import must_propagate
from streams._validate import StreamArgumentError

from ._defaults import DEFAULT_HOST
from ._json import JsonEventError, event_from_json, events_from_json_body
from ._live import DEFAULT_MAX_BEHIND, Entry, LiveHub, TooFarBehind
from ._recording import record_events
from ._server import STOP_QUIET, _check_port, _peer, listen_tcp
from ._tls import check_tls, server_stream

__all__ = ["DEFAULT_SSE_PORT", "DEFAULT_WS_PORT", "SseServer", "Tokens", "WsServer",
           "sse_server", "ws_server"]

log = logging.getLogger("rillet.http")

DEFAULT_WS_PORT = 5556
DEFAULT_SSE_PORT = 5558
#: Largest HTTP body or WebSocket message accepted, in bytes.
DEFAULT_MAX_BODY = 1 << 20
# Events encoded per write when sending the index's current matches, so a
# large snapshot never holds the event loop.
_SNAPSHOT_SLICE = 500

Send = Callable[[bytes], Awaitable[None]]
Search = Callable[[], Awaitable[list[Event]]]


class _Closed(Exception):
    """The peer went away in the middle of a request."""


# How a connection may end without anything worth logging.
_QUIET = (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, _Closed,
          h11.LocalProtocolError)


def _collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception that decides how a connection ended: shutdown first, then failures."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for decides in (must_propagate, lambda e: isinstance(e, h11.RemoteProtocolError)):
        for leaf in leaves:
            if decides(leaf):
                return leaf
    failing = [leaf for leaf in leaves if not isinstance(leaf, _QUIET)]
    return failing[0] if failing else leaves[0]


@dataclass
class _Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[bytes, bytes]
    raw: h11.Request

    @classmethod
    def parse(cls, raw: h11.Request) -> _Request:
        target = urlsplit(raw.target.decode("latin-1"))
        params = {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
        return cls(raw.method.decode("latin-1"), target.path, params,
                   {name.lower(): value for name, value in raw.headers}, raw)

    @property
    def websocket(self) -> bool:
        return self.headers.get(b"upgrade", b"").lower() == b"websocket"

    @property
    def token(self) -> str | None:
        bearer = self.headers.get(b"authorization", b"")
        if bearer[:7].lower() == b"bearer ":
            return bearer[7:].decode("latin-1").strip()
        return self.params.get("token")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_tokens(tokens: Any, host: str, caller: str) -> Tokens | None:
    """Validate ``tokens`` (token -> query) at config load; required beyond loopback."""
    if tokens is None:
        if not _is_loopback(host):
            raise StreamArgumentError(
                f"{caller}(host={host!r}): listening beyond loopback needs tokens, e.g. "
                f"{caller}(host={host!r}, tokens={{\"<a long secret>\": \"true\"}}); each "
                f"token maps to the query limiting what its holder may see"
            )
        return None
    if not isinstance(tokens, Mapping) or not tokens:
        raise StreamArgumentError(
            f"{caller}(tokens={tokens!r}): tokens is a non-empty dict of token -> "
            f"query, e.g. {{\"<a long secret>\": 'host = \"web1\"'}}")
    checked: dict[str, str] = {}
    for token, query in tokens.items():
        if not isinstance(token, str) or not token:
            raise StreamArgumentError(
                f"{caller}(tokens=...): token {token!r} must be a non-empty string")
        if not isinstance(query, str):
            raise StreamArgumentError(
                f"{caller}(tokens=...): the query of a token must be a string such "
                f"as \"true\", got {query!r}")
        try:
            compile_query(query)
        except QuerySyntaxError as error:
            raise StreamArgumentError(
                f"{caller}(tokens=...): bad query for a token: {error}") from None
        checked[token] = query
    return Tokens(tuple(checked.items()))


@dataclass(frozen=True, repr=False)
class Tokens:
    """Accepted tokens and the query each may see; the repr keeps them secret.

    A frozen dataclass, so a reload that changes a token or its query is a
    changed server (restarted), and one that does not keeps it running.

    >>> tokens = Tokens((("s3cret", 'host = "web1"'),))
    >>> tokens, tokens.filter("s3cret"), tokens.filter("guess")
    (Tokens(<1 token>), 'host = "web1"', None)
    """

    pairs: tuple[tuple[str, str], ...]

    def filter(self, token: str | None) -> str | None:
        """The query of ``token``, or None; compared in constant time, so timing tells nothing."""
        found = None
        given = (token or "").encode()
        for known, query in self.pairs:
            if hmac.compare_digest(known.encode(), given) and token is not None:
                found = query
        return found

    def __repr__(self) -> str:
        count = len(self.pairs)
        return f"Tokens(<{count} token{'s' if count != 1 else ''}>)"


def _limit(query: str, token_filter: str | None) -> str:
    """``query`` restricted to what the token may see."""
    if token_filter is None or token_filter.strip() == "true":
        return query
    return f"({token_filter}) and ({query})"


def _response(conn: h11.Connection, status: int, body: bytes,
              content_type: str = "application/json",
              headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    head = [("content-type", content_type), ("content-length", str(len(body))), *headers]
    return b"".join(conn.send(event) or b"" for event in (
        h11.Response(status_code=status, headers=head), h11.Data(data=body), h11.EndOfMessage()))


def _error(conn: h11.Connection, status: int, message: str,
           headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = json.dumps({"ok": False, "error": message}).encode() + b"\n"
    return _response(conn, status, body, headers=headers)


@dataclass
class _HttpListener:
    """What the WebSocket and SSE servers share: listening, h11, auth, live feeds."""

    host: str = DEFAULT_HOST
    port: int = 0
    tokens: Tokens | None = None
    max_behind: int = DEFAULT_MAX_BEHIND
    max_body: int = DEFAULT_MAX_BODY
    tls: ssl.SSLContext | None = field(default=None, repr=False)  # see transport/_tls.py
    connections: int = field(default=0, repr=False)
    requests: int = field(default=0, repr=False)
    unauthorized: int = field(default=0, repr=False)
    bound_port: int | None = field(default=None, repr=False)
    hub: LiveHub | None = field(default=None, repr=False)
    # A graceful stop (see drain): when reading ends, the pending reads (each
    # with whether a request or message had begun), the accept loop, the
    # subscriptions to end, and what drain waits for.
    _reads_end: float | None = field(default=None, repr=False, compare=False)
    _reads: dict[trio.CancelScope, bool] = field(default_factory=dict, repr=False,
                                                 compare=False)
    _accepting: trio.CancelScope | None = field(default=None, repr=False, compare=False)
    _subscriptions: set[trio.CancelScope] = field(default_factory=set, repr=False,
                                                  compare=False)
    _closed: trio.Event | None = field(default=None, repr=False, compare=False)
    _taps: int = field(default=0, repr=False, compare=False)  # drain does not wait for them

    kind = "HTTP"

    def __post_init__(self) -> None:
        if isinstance(self.tokens, Mapping):  # built directly, not through ws_server()
            self.tokens = _check_tokens(self.tokens, self.host, type(self).__name__)

    async def serve(self, runtime: Runtime, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await listen_tcp(self.host, self.port, self.kind)
        self.hub = LiveHub(runtime.pubsub, self.max_behind)
        self.bound_port = listeners[0].socket.getsockname()[1]
        self._reads_end = None
        task_status.started(self.bound_port)
        # Connections live in their own nursery, so that drain can stop the
        # accept loop (closing the listeners) while they finish.
        async with trio.open_nursery() as connections:
            with trio.CancelScope() as self._accepting:
                await trio.serve_listeners(lambda s: self._connection(s, runtime), listeners,
                                           handler_nursery=connections)

    async def drain(self, read_for: float = 1.0) -> None:
        """The graceful stop: accept no more connections, answer every request begun.

        A request (or WebSocket message) whose first bytes had arrived is read
        for up to ``read_for`` seconds more and answered; a connection waiting
        for its next request closes within STOP_QUIET seconds; WebSocket
        subscribers get a close frame (1001, going away) and SSE streams their
        last chunk. Returns once every connection but the remote recorders'
        (``rillet record remote``, which go with the listener) is closed: the
        caller bounds how long that may take.
        """
        now = trio.current_time()
        self._reads_end = now + read_for
        if self._accepting is not None:
            self._accepting.cancel()
        for scope, begun in self._reads.items():
            scope.deadline = min(scope.deadline, self._read_deadline(begun))
        for scope in self._subscriptions:
            scope.cancel()
        while self.answering:
            self._closed = trio.Event()
            await self._closed.wait()

    def _read_deadline(self, begun: bool) -> float:
        if self._reads_end is None:
            return math.inf
        return self._reads_end if begun else min(trio.current_time() + STOP_QUIET,
                                                 self._reads_end)

    async def _receive(self, stream: trio.abc.Stream, begun: bool) -> bytes | None:
        """What the client sent next (b"" once it closed), or None once a graceful stop
        ended reading; ``begun``: a request or message is partly read."""
        with trio.CancelScope(deadline=self._read_deadline(begun)) as reading:
            self._reads[reading] = begun
            try:
                return bytes(await stream.receive_some(65_536))
            finally:
                del self._reads[reading]
        return None

    async def _next_event(self, conn: h11.Connection, stream: trio.abc.Stream) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await self._receive(stream, conn.their_state is not h11.IDLE
                                           or bool(conn.trailing_data[0]))
                if data is None:
                    raise _Closed
                conn.receive_data(data)
                continue
            return event

    @contextlib.contextmanager
    def _subscription(self, scope: trio.CancelScope) -> Iterator[None]:
        """Cancel ``scope`` (what follows a live feed) at a graceful stop."""
        if self._reads_end is not None:
            scope.cancel()
        self._subscriptions.add(scope)
        try:
            yield
        finally:
            self._subscriptions.discard(scope)

    @property
    def stopping(self) -> bool:
        return self._reads_end is not None

    @property
    def answering(self) -> int:
        """Connections a graceful stop waits for."""
        return self.connections - self._taps

    async def _connection(self, accepted: Any, runtime: Runtime) -> None:
        self.connections += 1
        accepted.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = server_stream(accepted, self.tls, http=True)
        conn = h11.Connection(h11.SERVER)
        peer = _peer(stream)
        try:
            try:
                await self._requests(stream, conn, runtime, peer)
            except BaseExceptionGroup as group:
                # The nurseries of a subscription wrap what ended it.
                raise _collapse(group) from None
        except h11.RemoteProtocolError as error:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                # The failing request gets its answer before the connection closes.
                with trio.move_on_after(1):
                    await stream.send_all(_error(conn, error.error_status_hint,
                                                 f"bad HTTP request: {error}"))
        except _QUIET:
            pass
        except BaseException as error:
            if must_propagate(error):
                raise
            log.error("closing %s connection from %s: handling a request failed", self.kind,
                      peer, exc_info=error)
        finally:
            self.connections -= 1
            if not self.answering and self._closed is not None:
                self._closed.set()
            await trio.aclose_forcefully(stream)

    async def _requests(self, stream: trio.abc.Stream, conn: h11.Connection,
                        runtime: Runtime, peer: str) -> None:
        while True:
            raw = await self._next_event(conn, stream)
            if not isinstance(raw, h11.Request):
                return
            self.requests += 1
            request = _Request.parse(raw)
            token_filter: str | None = None
            if self.tokens is not None:
                token = request.token
                token_filter = self.tokens.filter(token)
                if token_filter is None:
                    self.unauthorized += 1
                    log.warning("refused %s %s from %s: %s token", request.method,
                                request.path, peer, "no" if token is None else "unknown")
                    await stream.send_all(_error(
                        conn, 401, "a token is required: add ?token=<token> or the header "
                        "Authorization: Bearer <token>", (("connection", "close"),)))
                    return
            keep = await self._route(stream, conn, request, token_filter, runtime, peer)
            if not keep or conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    async def _route(self, stream: trio.abc.Stream, conn: h11.Connection, request: _Request,
                     token_filter: str | None, runtime: Runtime, peer: str) -> bool:
        raise NotImplementedError

    async def _read_body(self, stream: trio.abc.Stream, conn: h11.Connection) -> bytes | None:
        """The request body, or None (and a 413 sent) when larger than ``max_body``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, stream)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    await stream.send_all(_error(
                        conn, 413, f"the body is larger than max_body={self.max_body} bytes; "
                        f"send fewer events per request", (("connection", "close"),)))
                    return None
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _Closed

    # Subscriptions --------------------------------------------------------

    async def _follow(self, channel: str, query: str, search: Search | None, send: Send,
                      frame: Callable[[Entry], bytes], describe: str,
                      wrap: Callable[[bytes], bytes] = bytes) -> bool:
        """Send what ``search`` finds then every matching event of ``channel``, until the
        peer leaves.

        ``frame`` picks an entry's bytes for this protocol and ``wrap`` frames
        a batch (chunked encoding for SSE). The follower is registered before
        the search, so no update falls between the two (see :func:`_searcher`).
        Returns True when the follower was dropped for lagging.
        """
        assert self.hub is not None
        hub = self.hub
        with trio.CancelScope() as scope:
            follower = hub.follow(channel, query, scope, describe) if channel else None
            try:
                snapshot = None if search is None else await search()
                if snapshot:
                    for start in range(0, len(snapshot), _SNAPSHOT_SLICE):
                        entries = [Entry(e) for e in snapshot[start:start + _SNAPSHOT_SLICE]]
                        await send(wrap(b"".join(frame(e) for e in entries)))
                if follower is None:
                    return False
                while True:
                    await send(wrap(await follower.next_chunk(frame)))
            except TooFarBehind:
                pass
            finally:
                if follower is not None:
                    hub.leave(follower)
        return follower is not None and follower.behind > 0

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"connections": self.connections, "requests": self.requests,
                                 "unauthorized": self.unauthorized}
        if self.hub is not None:
            stats.update(self.hub.statistics())
        return stats


@functools.cache
def _dashboard_page() -> bytes:
    """The dashboard as one page: its style and script inlined, so one URL (and token) loads it."""
    folder = resources.files("transport") / "dashboard"
    page = (folder / "index.html").read_text()
    style = (folder / "dashboard.css").read_text()
    script = (folder / "dashboard.js").read_text()
    return (page.replace("<!-- style -->", f"<style>\n{style}</style>")
                .replace("<!-- script -->", f"<script>\n{script}</script>")).encode()


@dataclass
class WsServer(_HttpListener):
    """Riemann's ws-server: WebSocket subscriptions, ``/events`` input, and the dashboard."""

    port: int = DEFAULT_WS_PORT
    dashboard: bool = True
    events_received: int = field(default=0, repr=False)

    kind = "WebSocket"

    async def _route(self, stream: trio.abc.Stream, conn: h11.Connection, request: _Request,
                     token_filter: str | None, runtime: Runtime, peer: str) -> bool:
        path = request.path
        if request.websocket:
            if await self._read_body(stream, conn) is None:
                return False
            ws = WSConnection(ConnectionType.SERVER)
            ws.initiate_upgrade_connection(list(request.raw.headers), request.raw.target)
            for event in ws.events():
                assert isinstance(event, Request)
            lock = trio.StrictFIFOLock()

            async def send(data: bytes) -> None:
                async with lock:
                    await stream.send_all(data)

            await send(ws.send(AcceptConnection()))
            ws.receive_data(conn.trailing_data[0])
            await self._websocket(stream, ws, send, request, token_filter, runtime, peer)
            return False
        if path in ("/events", "/events/") and request.method in ("POST", "PUT"):
            return await self._http_input(stream, conn, runtime)
        if await self._read_body(stream, conn) is None:
            return False
        if self.dashboard and request.method == "GET" and path in ("/", "/dashboard",
                                                                              "/dashboard/"):
            page = _dashboard_page()
            await stream.send_all(_response(conn, 200, page, "text/html; charset=utf-8",
                                            (("cache-control", "no-store"),)))
            return True
        if path.startswith(("/index", "/pubsub/")):
            await stream.send_all(_error(conn, 426, f"{path} is a WebSocket endpoint: connect "
                                         f"with a WebSocket client (ws://...)",
                                         (("upgrade", "websocket"),)))
            return True
        await stream.send_all(_error(conn, 404, f"no such path: {path}; the WebSocket server "
                                     f"serves /index, /pubsub/<channel>, /events and /"))
        return True

    async def _http_input(self, stream: trio.abc.Stream, conn: h11.Connection,
                          runtime: Runtime) -> bool:
        body = await self._read_body(stream, conn)
        if body is None:
            return False
        try:
            events = events_from_json_body(body, now=runtime.now())
        except JsonEventError as error:
            await stream.send_all(_error(conn, 400, str(error)))
            return True
        record_events(runtime, events)
        failure = runtime.stream(events)
        self.events_received += len(events)
        if failure is not None:
            await stream.send_all(_error(conn, 500, f"{type(failure).__name__}: {failure}"))
        else:
            reply = json.dumps({"ok": True, "count": len(events)}).encode() + b"\n"
            await stream.send_all(_response(conn, 200, reply))
        return True

    async def _websocket(self, stream: trio.abc.Stream, ws: WSConnection, send: Send,
                         request: _Request, token_filter: str | None, runtime: Runtime,
                         peer: str) -> None:
        path = request.path
        events_input = path in ("/events", "/events/")

        async def close(code: int, reason: str = "") -> None:
            if ws.state is ConnectionState.OPEN:
                # A close reason is at most 123 bytes.
                reason_bytes = reason.encode()[:120].decode("utf-8", "ignore")
                await send(ws.send(CloseConnection(code=code, reason=reason_bytes)))
            # The peer answers a close before the socket goes (RFC 6455 §7.1.1).
            with trio.move_on_after(1):
                await self._ws_reader(stream, ws, send, None)

        if path in ("/index", "/index/"):
            channel = "index"
        elif path.startswith("/pubsub/"):
            # Riemann keeps a trailing slash in the name, reaching a channel
            # nobody publishes to (spec §9.1.12); rillet drops it.
            channel = unquote(path[len("/pubsub/"):].removesuffix("/"))
            if not channel:
                await close(1008, "name the channel: /pubsub/<channel>?query=...")
                return
        elif events_input:
            channel = ""
        else:
            await close(1008, f"no such path: {path}")
            return
        query = request.params.get("query")
        if not events_input:
            if not query:
                await close(1008, "the query parameter is required, e.g. ?query=true")
                return
            query = _limit(query, token_filter)
            try:
                compile_query(query)
            except QuerySyntaxError as error:
                await close(1008, str(error))
                return

        async def on_message(text: str) -> None:
            self.events_received += 1
            try:
                event = event_from_json(json.loads(text), 0, now=runtime.now())
            except (ValueError, JsonEventError) as error:
                await send(ws.send(TextMessage(data=json.dumps({"error": str(error)}))))
                return
            record_events(runtime, [event])
            failure = runtime.stream([event])
            reply = "{}" if failure is None else json.dumps({"error": str(failure)})
            await send(ws.send(TextMessage(data=reply)))

        dropped = False
        failure = ""
        async with trio.open_nursery() as nursery:

            async def read_then_stop() -> None:
                await self._ws_reader(stream, ws, send, on_message if events_input else None)
                nursery.cancel_scope.cancel()

            nursery.start_soon(read_then_stop)
            # An /events reader ends at a graceful stop once the message begun is answered.
            if not events_input:
                assert query is not None
                subscribe = (path.startswith("/pubsub/")
                             or request.params.get("subscribe") == "true")
                search = (_searcher(runtime, query) if channel == "index"
                          and not path.startswith("/pubsub/") else None)
                with self._subscription(nursery.cancel_scope):
                    try:
                        dropped = await self._follow(channel if subscribe else "", query,
                                                     search, send, Entry.ws_frame,
                                                     f"WebSocket subscriber {peer} {path}")
                    except LookupError as error:  # an edge's workers did not all answer
                        failure = str(error)
                # Riemann closes an /index socket without subscribe=true once sent.
                nursery.cancel_scope.cancel()
        # A dropped subscriber's socket is full: it is just cut.
        if dropped or (events_input and not self.stopping):
            return
        with trio.move_on_after(2):
            if self.stopping:
                await close(1001, "the server is stopping")
            else:
                await close(1011 if failure else 1000, failure)

    async def _ws_reader(self, stream: trio.abc.Stream, ws: WSConnection, send: Send,
                         on_message: Callable[[str], Awaitable[None]] | None) -> None:
        parts: list[str] = []
        size = 0
        while True:
            for event in ws.events():
                if isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await send(ws.send(event.response()))
                    return
                if isinstance(event, Ping):
                    await send(ws.send(event.response()))
                elif isinstance(event, (TextMessage, BytesMessage)) and on_message is not None:
                    text = event.data if isinstance(event.data, str) else \
                        event.data.decode("utf-8", "replace")
                    size += len(text)
                    if size > self.max_body:
                        await send(ws.send(CloseConnection(code=1009, reason="message too big")))
                        return
                    parts.append(text)
                    if event.message_finished:
                        whole, parts, size = "".join(parts), [], 0
                        await on_message(whole)
            data = await self._receive(stream, bool(parts))
            if not data:
                return
            ws.receive_data(data)


@dataclass
class SseServer(_HttpListener):
    """Riemann's sse-server: ``GET /index?query=...`` as a Server-Sent Events stream."""

    port: int = DEFAULT_SSE_PORT
    headers: dict[str, str] = field(default_factory=dict)

    kind = "SSE"

    async def _route(self, stream: trio.abc.Stream, conn: h11.Connection, request: _Request,
                     token_filter: str | None, runtime: Runtime, peer: str) -> bool:
        if await self._read_body(stream, conn) is None:
            return False
        if request.path in ("/recording", "/recording/"):  # rillet record remote
            from ._tap import serve_tap

            # A remote recorder records to the end: it goes when the listener
            # stops, after what the other servers answer while draining.
            self._taps += 1
            try:
                return await serve_tap(stream, conn, runtime, peer, token_filter, self.headers)
            finally:
                self._taps -= 1
        if request.path not in ("/index", "/index/"):
            await stream.send_all(_error(conn, 404, f"no such path: {request.path}; the SSE "
                                         f"server serves /index?query=... and /recording",
                                         (("connection", "close"),)))
            return False
        query = request.params.get("query")
        if not query:
            await stream.send_all(_error(conn, 400, "the query parameter is required, e.g. "
                                         "/index?query=true"))
            return True
        query = _limit(query, token_filter)
        try:
            compile_query(query)
        except QuerySyntaxError as error:
            await stream.send_all(_error(conn, 400, str(error)))
            return True
        merged = {"content-type": "text/event-stream", "connection": "keepalive",
                  "cache-control": "no-cache"}
        merged.update({k.lower(): v for k, v in self.headers.items()})
        await stream.send_all(conn.send(h11.Response(
            status_code=200, headers=list(merged.items()))) or b"")

        def chunk(data: bytes) -> bytes:
            return conn.send(h11.Data(data=data)) or b""

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_when_closed, stream, nursery.cancel_scope)
            with self._subscription(nursery.cancel_scope):
                try:
                    await self._follow("index", query, _searcher(runtime, query),
                                       stream.send_all, Entry.sse_frame,
                                       f"SSE subscriber {peer}", wrap=chunk)
                except LookupError as error:  # an edge's workers did not all answer
                    log.warning("closing SSE subscriber %s: %s", peer, error)
        return await self._end_stream(stream, conn)

    async def _end_stream(self, stream: trio.abc.Stream, conn: h11.Connection) -> bool:
        """At a graceful stop, the last chunk: an EventSource sees its stream end, not
        break. False: the connection closes."""
        if self.stopping and conn.our_state is h11.SEND_BODY:
            with trio.move_on_after(1):
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        return False


def _searcher(runtime: Runtime, query: str) -> Search:
    """The search a new subscriber to ``"index"`` gets first: the runtime's index, or on
    a scaled-out edge (transport/_edge.py) its workers' indexes, fanned out."""
    edge = next((s for s in runtime.services if hasattr(s, "search_index")), None)

    async def search() -> list[Event]:
        if edge is not None:
            return await edge.search_index(query)  # type: ignore[no-any-return]
        # No checkpoint between the follower's registration and this search.
        return runtime.index.search(query)

    return search


async def cancel_when_closed(stream: trio.abc.ReceiveStream, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` once the client closes its side: a follower sends nothing."""
    while await stream.receive_some(4096):
        pass
    scope.cancel()


def _check_common(host: Any, port: Any, tokens: Any, max_behind: Any, max_body: Any,
                  tls: Any, caller: str) -> Tokens | None:
    _check_port(port, caller)
    check_tls(tls, caller)
    if not isinstance(host, str) or not host:
        raise StreamArgumentError(
            f"{caller}(host={host!r}): host is an address string such as "
            f"\"127.0.0.1\"")
    for name, value in (("max_behind", max_behind), ("max_body", max_body)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StreamArgumentError(
                f"{caller}({name}={value!r}): {name} must be a positive int")
    return _check_tokens(tokens, host, caller)


def ws_server(host: str = DEFAULT_HOST, port: int = DEFAULT_WS_PORT, *,
              tokens: Mapping[str, str] | None = None, max_behind: int = DEFAULT_MAX_BEHIND,
              max_body: int = DEFAULT_MAX_BODY, dashboard: bool = True,
              tls: ssl.SSLContext | None = None) -> WsServer:
    """Declare the WebSocket server in a config (Riemann's ``ws-server``), with the dashboard.

    ``tokens`` maps each accepted token to the query limiting what its holder
    sees; it is required when ``host`` is not a loopback address. ``tls``
    takes ``transport.tls(certfile=..., keyfile=...)``: then it serves https://
    and wss:// (docs/operations.md, "TLS").
    """
    from streams._config import service

    checked = _check_common(host, port, tokens, max_behind, max_body, tls, "ws_server")
    return service(WsServer(host=host, port=port, tokens=checked,  # type: ignore[no-any-return]
                            max_behind=max_behind, max_body=max_body,
                            dashboard=bool(dashboard), tls=tls))


def sse_server(host: str = DEFAULT_HOST, port: int = DEFAULT_SSE_PORT, *,
               tokens: Mapping[str, str] | None = None, max_behind: int = DEFAULT_MAX_BEHIND,
               headers: Mapping[str, str] | None = None,
               tls: ssl.SSLContext | None = None) -> SseServer:
    """Declare the Server-Sent Events server in a config (Riemann's ``sse-server``).

    ``headers`` are added to (or override) the response headers, e.g.
    ``{"Access-Control-Allow-Origin": "*"}`` for a dashboard on another origin.
    ``tls`` takes ``transport.tls(certfile=..., keyfile=...)``: then it serves https://.
    """
    from streams._config import service

    checked = _check_common(host, port, tokens, max_behind, 1, tls, "sse_server")
    if headers is not None and not (isinstance(headers, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        raise StreamArgumentError(
            f"sse_server(headers={headers!r}): headers is a dict of strings, "
            f"e.g. {{\"Access-Control-Allow-Origin\": \"*\"}}")
    return service(SseServer(host=host, port=port, tokens=checked,  # type: ignore[no-any-return]
                             max_behind=max_behind, headers=dict(headers or {}), tls=tls))
