"""The Riemann-compatible servers (TCP and UDP) and the request handling they share.

Servers are services of a config: ``serve(runtime, task_status=...)`` runs
one with the ``streams.Runtime`` of the running config. Each request reads
the runtime's config afresh, so a reload swaps it whole between requests and
no request sees a half-built one.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import socket
import ssl
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import trio

from streams import Event, Runtime
from streams._clock import must_propagate
from streams._query import QuerySyntaxError
from streams._ratelimit import LogLimiter
from streams._validate import StreamArgumentError

from ._codec import (
    DEFAULT_MAX_DATAGRAM,
    DEFAULT_MAX_FRAME,
    OK_REPLY,
    Decoded,
    FrameDecoder,
    ProtocolError,
    decode_datagram,
    decode_message,
    encode_event,
    encode_reply,
    frame,
)
from ._defaults import DEFAULT_HOST, DEFAULT_PORT
from ._limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_EVENTS,
    ConnectionSlots,
    accept_forever,
    check_limits,
)
from ._slices import TooManyEvents, check_pieces, cut_message
from ._tls import check_tls, server_stream

__all__ = ["TcpServer", "UdpServer", "answer", "handle", "tcp_server", "udp_server"]

log = logging.getLogger("rillet.server")

# Connection ids in recordings (UDP requests are connection 0).
_connection_ids = itertools.count(1)

# Reply bytes a connection buffers before writing (see TcpServer._connection).
_FLUSH_AT = 256 * 1024
# The longest a connection works before it lets other clients, timers and
# signals run (pipelined requests), and the longest one request works between
# two such turns (a huge message, a query over a large index). Turns are timed,
# not counted, so they stay short when the machine is busy and the same work
# takes three times as long. See docs/operations.md, "Stalls".
TURN_SECONDS = 0.002
# Events streamed or searched between two looks at the clock.
_CHUNK = 256
# Events decoded at a time from a large message (under a millisecond in C).
_PIECE = 1024
# Events per slice for code that slices its own searches (the scale-out worker).
SLICE = 4096
# Messages above this size are decoded a piece at a time (see _slices.py);
# below it, one holds at most 32k (empty) events.
_LARGE_PAYLOAD = 64 * 1024
# When stopping, a connection whose client sends nothing for this long is
# closed (what it had sent before is answered first).
STOP_QUIET = 0.1


def handle(runtime: Runtime, request: Decoded) -> bytes:
    """The framed reply to one request: ok, an error, or query results."""
    return _finish(_steps(runtime, request))


async def answer(runtime: Runtime, request: Decoded) -> bytes:
    """:func:`handle`, letting the loop run between slices of a large request."""
    steps = _steps(runtime, request)
    try:
        while True:
            next(steps)
            await trio.lowlevel.checkpoint()
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _steps(runtime: Runtime, request: Decoded) -> Generator[None, None, bytes]:
    # One home for a request's handling; it pauses (yields) each time it has
    # worked TURN_SECONDS, and the caller decides whether to let the loop run there.
    events = request.events
    failure: Exception | None = None
    turn_ends = time.perf_counter() + TURN_SECONDS
    for start in range(0, len(events), _CHUNK):
        failed = runtime.stream(events if len(events) <= _CHUNK
                                else events[start:start + _CHUNK])
        failure = failure or failed
        if time.perf_counter() >= turn_ends:
            yield
            turn_ends = time.perf_counter() + TURN_SECONDS
    if failure is not None:
        return _error_reply(str(failure) or type(failure).__name__)
    if request.query is None:
        return OK_REPLY
    try:
        parts: list[bytes] = []
        found: list[Event] = []
        for matches in runtime.index.search_slices(request.query, _CHUNK):
            found += matches
            if time.perf_counter() >= turn_ends:
                if found:
                    # Concatenated Msgs parse as one whose events are all of
                    # theirs, so each turn's matches are encoded on their own.
                    parts.append(_encode_found(found, request.query)[4:])
                    found = []
                yield
                turn_ends = time.perf_counter() + TURN_SECONDS
        if found:
            parts.append(_encode_found(found, request.query)[4:])
        return frame(b"".join(parts)) if parts else OK_REPLY
    except QuerySyntaxError as error:
        return _error_reply(str(error))
    except Exception as error:
        # Anything else (a query nested past the recursion limit, an
        # unencodable indexed event) is this request's failure alone.
        log.warning("query %.200r failed", request.query, exc_info=error)
        return _error_reply(f"{type(error).__name__}: {error}")


async def _answer_in_pieces(runtime: Runtime, payload: bytes, now: float,
                            max_events: int, conn: int = 0) -> bytes:
    """The reply to one large message, checked, decoded and streamed a piece at a time."""
    checking = check_pieces(payload, _PIECE, max_events)
    turn_ends = time.perf_counter() + TURN_SECONDS
    try:
        while True:  # every piece parses, and the count is allowed, before any is streamed
            next(checking)
            if time.perf_counter() >= turn_ends:
                await trio.lowlevel.checkpoint()
                turn_ends = time.perf_counter() + TURN_SECONDS
    except StopIteration as done:
        parses: bool = done.value
    except TooManyEvents as error:
        return _error_reply(str(error))
    _recorded(runtime, payload, now, conn)
    if not parses:  # the decoder reports what is wrong (or decodes what the cutter cannot)
        return await answer(runtime, decode_message(payload, now))
    failure: bytes | None = None
    reply = OK_REPLY
    for piece in cut_message(payload, _PIECE):
        # Decoding the whole message first would hold the loop for as long
        # as creating every event takes (a second for a few hundred thousand).
        reply = await answer(runtime, decode_message(piece, now))
        if failure is None and reply != OK_REPLY:
            failure = reply
        await trio.lowlevel.checkpoint()
    return reply if failure is None else failure


def _recorded(runtime: Runtime, payload: bytes, now: float, conn: int) -> None:
    """Hand a request the streams are about to get to ``rillet run --record``."""
    if runtime.recorder is not None:
        runtime.recorder.message(payload, now, conn)


def _finish(steps: Generator[None, None, bytes]) -> bytes:
    """Run ``steps`` through without pausing; what they return."""
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _encode_found(found: list[Event], query: str) -> bytes:
    try:
        return encode_reply(ok=True, events=found)
    except ValueError:
        # A stream indexed a value protobuf cannot carry. Failing the reply
        # would fail every query matching that event until it expires (never,
        # for a time in the far future), so it is left out and logged instead.
        return encode_reply(ok=True, events=_encodable(found, query))


def _encodable(events: list[Event], query: str) -> list[Event]:
    """The events that encode; the others are logged once per query."""
    kept: list[Event] = []
    failures: list[ValueError] = []
    for event in events:
        try:
            encode_event(event)
        except ValueError as error:
            failures.append(error)
        else:
            kept.append(event)
    if failures:
        log.warning("query %.200r: left out %d of %d matching events that cannot be encoded; "
                    "the first: %s", query, len(failures), len(events), failures[0])
    return kept


def _error_reply(message: str) -> bytes:
    # A failure's text may hold lone surrogates, which UTF-8 cannot encode.
    return encode_reply(ok=False, error=message.encode("utf-8", "replace").decode("utf-8"))


@dataclass
class TcpServer:
    """Riemann's TCP protocol: length-prefixed Msgs, one reply per request, in order."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_frame: int = DEFAULT_MAX_FRAME
    # Limits: see transport/_limits.py and docs/operations.md.
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_buffered: int = DEFAULT_MAX_BUFFERED
    max_events: int = DEFAULT_MAX_EVENTS
    tls: ssl.SSLContext | None = field(default=None, repr=False)  # see transport/_tls.py
    connections: int = field(default=0, repr=False)
    requests: int = field(default=0, repr=False)
    protocol_errors: int = field(default=0, repr=False)
    buffered: int = field(default=0, repr=False)
    idle_closed: int = field(default=0, repr=False)
    bound_port: int | None = field(default=None, repr=False)
    _log: LogLimiter = field(default_factory=lambda: LogLimiter(log), repr=False)
    _queues_of: Any = field(default=None, repr=False)
    _queue_list: tuple[Any, ...] = field(default=(), repr=False)
    _edge: Any = field(default=None, repr=False)
    # A graceful stop (see drain): when reading ends, the pending reads, the
    # accept loops, and what drain waits for.
    _reads_end: float | None = field(default=None, repr=False, compare=False)
    _reads: set[trio.CancelScope] = field(default_factory=set, repr=False, compare=False)
    _accepting: list[trio.CancelScope] = field(default_factory=list, repr=False, compare=False)
    _closed: trio.Event | None = field(default=None, repr=False, compare=False)

    async def serve(self, runtime: Runtime, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await listen_tcp(self.host, self.port, "TCP")
        for listener in listeners:
            listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.bound_port = listeners[0].socket.getsockname()[1]
        self._reads_end = None
        task_status.started(self.bound_port)
        slots = ConnectionSlots(self.max_connections)

        async def handle(stream: trio.SocketStream) -> None:
            self.connections += 1
            try:
                # Under TLS the handshake happens on the first read, under idle_timeout.
                await self._connection(server_stream(stream, self.tls), runtime)
            finally:
                self.connections -= 1
                slots.release()
                if self.connections == 0 and self._closed is not None:
                    self._closed.set()

        async def accept(listener: trio.SocketListener) -> None:
            with trio.CancelScope() as scope:
                self._accepting.append(scope)
                await accept_forever(listener, slots, handle, nursery, self._log)

        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(accept, listener)

    async def drain(self, read_for: float = 1.0) -> None:
        """The graceful stop: accept no more connections, answer every request read.

        For ``read_for`` seconds a connection still reads what its client had
        sent (a read waits at most STOP_QUIET seconds, so an idle connection
        closes at once), and answers it; then it closes. Returns once every
        connection is closed: the caller bounds how long that may take.
        """
        now = trio.current_time()
        self._reads_end = now + read_for
        for scope in self._accepting:
            scope.cancel()  # accept_forever closes its listener
        for scope in self._reads:
            scope.deadline = min(scope.deadline, now + STOP_QUIET)
        while self.connections:
            self._closed = trio.Event()
            await self._closed.wait()

    @property
    def answering(self) -> int:
        """Connections a graceful stop waits for."""
        return self.connections

    def _read_deadline(self, idle_timeout: float) -> float:
        now = trio.current_time()
        if self._reads_end is None:
            return now + idle_timeout
        return min(now + STOP_QUIET, self._reads_end)

    async def _connection(self, stream: Any, runtime: Runtime) -> None:
        decoder = FrameDecoder(self.max_frame)
        peer = _peer(stream)
        conn = next(_connection_ids)
        if runtime.recorder is not None:
            runtime.recorder.connection(runtime.now(), conn, True, f"tcp {peer}")
        idle_timeout = math.inf if self.idle_timeout is None else self.idle_timeout
        held = 0  # bytes of a partial frame this connection holds, part of self.buffered
        try:
            while True:
                data: bytes | bytearray | None = None
                with trio.CancelScope(deadline=self._read_deadline(idle_timeout)) as reading:
                    self._reads.add(reading)
                    try:
                        data = await stream.receive_some(262_144)
                    finally:
                        self._reads.discard(reading)
                if data is None:
                    if self._reads_end is not None:
                        return  # stopping, and every request read was answered
                    self.idle_closed += 1
                    log.debug("closing TCP connection from %s: silent for idle_timeout=%s s",
                              peer, self.idle_timeout)
                    return
                if not data:
                    return
                decoder.feed(data)
                now = runtime.now()
                queues = self._queues(runtime)
                # Every complete frame of this read is handled, then one write
                # acknowledges them all: coalesced acks, order kept. Large
                # replies (queries) are written as soon as they add up, so a
                # peer that pipelines queries without reading is held back by
                # the socket instead of growing this buffer.
                # A read of many small pipelined requests is also written out
                # (which lets the loop run) every TURN_SECONDS, so it cannot
                # hold the other clients for as long as it lasts.
                replies: list[bytes] = []
                pending = 0
                turn_ends = time.perf_counter() + TURN_SECONDS
                for payload in decoder.frames():
                    if queues and any(queue.crowded() for queue in queues):
                        # Backpressure: stop reading until the queues drain,
                        # rather than make them drop what clients sent.
                        if replies:
                            self.requests += len(replies)
                            await self._send(stream, b"".join(replies))
                            replies, pending = [], 0
                        for queue in queues:
                            await queue.wait_for_room()
                        now = runtime.now()
                    if len(payload) > _LARGE_PAYLOAD:
                        reply = await _answer_in_pieces(runtime, payload, now, self.max_events,
                                                        conn)
                        now = runtime.now()
                    else:
                        request = decode_message(payload, now)
                        if len(request.events) > self.max_events:
                            reply = _error_reply(str(TooManyEvents(len(request.events),
                                                                   self.max_events)))
                        else:
                            _recorded(runtime, payload, now, conn)
                            if request.query is not None and self._edge is not None:
                                reply = await self._edge.answer(runtime, request)
                            elif request.query is None and len(request.events) <= _CHUNK:
                                reply = handle(runtime, request)
                            else:
                                reply = await answer(runtime, request)
                    replies.append(reply)
                    pending += len(reply)
                    if pending >= _FLUSH_AT or time.perf_counter() >= turn_ends:
                        self.requests += len(replies)
                        await self._send(stream, b"".join(replies))
                        replies, pending = [], 0
                        turn_ends = time.perf_counter() + TURN_SECONDS
                        now = runtime.now()
                if replies:
                    self.requests += len(replies)
                    await self._send(stream, replies[0] if len(replies) == 1
                                     else b"".join(replies))
                self.buffered += decoder.buffered - held
                held = decoder.buffered
                if held and self.buffered > self.max_buffered:
                    raise ProtocolError(
                        f"partial frames held across connections reached {self.buffered} "
                        f"bytes, more than max_buffered={self.max_buffered}; this connection's "
                        f"frame of {held} bytes so far is refused (raise max_buffered, or send "
                        f"smaller messages)")
        except ProtocolError as error:
            self.protocol_errors += 1
            self._log.warning("protocol", "closing TCP connection from %s: %s", peer, error)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        except BaseException as error:
            if must_propagate(error):
                raise
            # Riemann closes the connection on a fatal error escaping the
            # streams; letting it out here would end every connection.
            log.error("closing TCP connection from %s: handling a request failed", peer,
                      exc_info=error)
        finally:
            self.buffered -= held
            if runtime.recorder is not None:
                runtime.recorder.connection(runtime.now(), conn, False, f"tcp {peer}")
            await trio.aclose_forcefully(stream)

    def _queues(self, runtime: Runtime) -> tuple[Any, ...]:
        """The async_queues TCP connections wait for when crowded (backpressure)."""
        services = runtime.services
        if services is not self._queues_of:
            self._queues_of = services
            self._queue_list = tuple(s for s in services if hasattr(s, "wait_for_room"))
            # A scaled-out edge (transport/_edge.py) stores events before they are acknowledged.
            self._edge = next((s for s in services if hasattr(s, "durable")), None)
        return self._queue_list

    async def _send(self, stream: Any, replies: bytes) -> None:
        if self._edge is not None:
            try:
                await self._edge.durable()
            except ConnectionError as error:
                # Not stored, so never "ok": the client hears why, then the connection
                # closes (the requests after it in this write get no reply).
                await stream.send_all(_error_reply(str(error)))
                raise
        await stream.send_all(replies)

    def statistics(self) -> dict[str, Any]:
        return {"connections": self.connections, "requests": self.requests,
                "protocol_errors": self.protocol_errors, "buffered": self.buffered,
                "idle_closed": self.idle_closed}


async def listen_tcp(host: str, port: int, kind: str) -> list[trio.SocketListener]:
    """Listeners on ``host:port``, logged; a failure names the server and the address."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as error:
        raise _bind_error(error, kind, host, port) from error
    log.info("%s server listening on %s:%s", kind, host,
             listeners[0].socket.getsockname()[1])
    return listeners


async def bind_udp(host: str, port: int, kind: str) -> trio.socket.SocketType:
    """A UDP socket bound to ``host:port``, logged; a failure names the server and the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    try:
        await sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise _bind_error(error, kind, host, port) from error
    log.info("%s server listening on %s:%s", kind, host, sock.getsockname()[1])
    return sock


def _bind_error(error: OSError, kind: str, host: str, port: int) -> OSError:
    """The same error, saying which server could not listen where."""
    return OSError(error.errno, f"cannot listen for {kind} on {host}:{port}: "
                                f"{error.strerror or error}")


def _peer(stream: Any) -> str:
    while not hasattr(stream, "socket"):  # under TLS
        stream = stream.transport_stream
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


@dataclass
class UdpServer:
    """Riemann's UDP protocol: one Msg per datagram, never a reply; garbage is counted."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_size: int = DEFAULT_MAX_DATAGRAM
    datagrams: int = field(default=0, repr=False)
    dropped: int = field(default=0, repr=False)
    kernel_dropped: int = field(default=0, repr=False)
    bound_port: int | None = field(default=None, repr=False)
    # Garbage from a (spoofable) peer is logged once per interval with a count.
    _log: LogLimiter = field(default_factory=lambda: LogLimiter(log), repr=False)

    async def serve(self, runtime: Runtime, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with await bind_udp(self.host, self.port, "UDP") as sock:
            self.bound_port = sock.getsockname()[1]
            # Linux tells, with each datagram queued after a drop, how many the
            # kernel dropped on this socket so far because its buffer was full
            # (a flood, a held loop).
            overflow = getattr(socket, "SO_RXQ_OVFL", 40 if sys.platform == "linux" else None)
            ancillary = 0
            if overflow is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, overflow, 1)
                    ancillary = socket.CMSG_SPACE(4)
            task_status.started(self.bound_port)
            while True:
                # One byte more than allowed tells a longer datagram, which the
                # kernel cuts, from one of exactly max_size: a cut that falls
                # between two events still parses, and would take half a message.
                data, extra, _, address = await sock.recvmsg(self.max_size + 1, ancillary)
                peer: tuple[Any, ...] = address  # type: ignore[assignment]
                for level, kind, value in extra:
                    if level == socket.SOL_SOCKET and kind == overflow and len(value) >= 4:
                        self.kernel_dropped = int.from_bytes(value[:4], sys.byteorder)
                self.datagrams += 1
                if len(data) > self.max_size:
                    self.dropped += 1
                    self._log.warning("long", "dropped a UDP datagram from %s:%s longer than "
                                      "max_size=%d bytes: send fewer events per datagram, raise "
                                      "max_size, or use TCP", peer[0], peer[1], self.max_size)
                    continue
                now = runtime.now()
                _recorded(runtime, data, now, 0)
                try:
                    request = decode_datagram(data, now, self.max_size)
                except ProtocolError as error:
                    self.dropped += 1
                    self._log.warning("garbage", "dropped a UDP datagram from %s:%s: %s",
                                      peer[0], peer[1], error)
                    continue
                try:
                    runtime.stream(request.events)
                    if request.query is not None:  # evaluated as Riemann does; nobody gets it
                        turn_ends = time.perf_counter() + TURN_SECONDS
                        for _ in runtime.index.search_slices(request.query, _CHUNK):
                            if time.perf_counter() >= turn_ends:
                                await trio.lowlevel.checkpoint()
                                turn_ends = time.perf_counter() + TURN_SECONDS
                except QuerySyntaxError:
                    self.dropped += 1
                except BaseException as error:
                    if must_propagate(error):
                        raise
                    # One datagram's failure must not stop the UDP server.
                    self.dropped += 1
                    self._log.error(type(error).__name__, "a UDP datagram from %s:%s failed",
                                    peer[0], peer[1], exc_info=error)

    def statistics(self) -> dict[str, Any]:
        return {"datagrams": self.datagrams, "dropped": self.dropped,
                "kernel_dropped": self.kernel_dropped}


def tcp_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
               max_frame: int = DEFAULT_MAX_FRAME,
               max_connections: int = DEFAULT_MAX_CONNECTIONS,
               idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
               max_buffered: int = DEFAULT_MAX_BUFFERED,
               max_events: int = DEFAULT_MAX_EVENTS,
               tls: ssl.SSLContext | None = None) -> TcpServer:
    """Declare a TCP server in a config (Riemann's ``tcp-server``).

    The limits are described in docs/operations.md ("Limits"); ``tls`` takes
    ``transport.tls(certfile=..., keyfile=...)`` ("TLS").
    """
    from streams._config import service

    _check_port(port, "tcp_server")
    check_limits("tcp_server", max_connections=max_connections, idle_timeout=idle_timeout,
                 max_buffered=max_buffered, max_events=max_events)
    check_tls(tls, "tcp_server")
    return service(TcpServer(  # type: ignore[no-any-return]
        host=host, port=port, max_frame=max_frame, max_connections=max_connections,
        idle_timeout=idle_timeout, max_buffered=max_buffered, max_events=max_events, tls=tls))


def udp_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
               max_size: int = DEFAULT_MAX_DATAGRAM) -> UdpServer:
    """Declare a UDP server in a config (Riemann's ``udp-server``)."""
    from streams._config import service

    _check_port(port, "udp_server")
    return service(UdpServer(host=host, port=port, max_size=max_size))  # type: ignore[no-any-return]


def _check_port(port: Any, caller: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise StreamArgumentError(
            f"{caller}(port={port!r}): the port must be an int from 0 to 65535 "
            f"(0 picks a free one)")
