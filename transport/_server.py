"""The Riemann-compatible servers (TCP and UDP) and the request handling they share.

Servers are services of a config: ``serve(runtime, task_status=...)`` runs
one with the ``streams.Runtime`` of the running config. Each request reads
the runtime's config afresh, so a reload swaps it whole between requests and
no request sees a half-built one.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import trio

from streams import Event, Runtime
from streams._clock import must_propagate
from streams._query import QuerySyntaxError

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
)
from ._defaults import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["TcpServer", "UdpServer", "handle", "tcp_server", "udp_server"]

log = logging.getLogger("rillet.server")

# Reply bytes a connection buffers before writing (see TcpServer._connection).
_FLUSH_AT = 256 * 1024


def handle(runtime: Runtime, request: Decoded) -> bytes:
    """The framed reply to one request: ok, an error, or query results."""
    failure = runtime.stream(request.events) if request.events else None
    if failure is not None:
        return _error_reply(str(failure) or type(failure).__name__)
    if request.query is None:
        return OK_REPLY
    try:
        found: list[Event] = runtime.index.search(request.query)
        try:
            return encode_reply(ok=True, events=found)
        except ValueError:
            # A stream indexed a value protobuf cannot carry. Failing the
            # reply would fail every query matching that event until it
            # expires (never, for a time in the far future), so it is left
            # out and logged instead.
            return encode_reply(ok=True, events=_encodable(found, request.query))
    except QuerySyntaxError as error:
        return _error_reply(str(error))
    except Exception as error:
        # Anything else (a query nested past the recursion limit, an
        # unencodable indexed event) is this request's failure alone.
        log.warning("query %.200r failed", request.query, exc_info=error)
        return _error_reply(f"{type(error).__name__}: {error}")


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
    connections: int = field(default=0, repr=False)
    requests: int = field(default=0, repr=False)
    protocol_errors: int = field(default=0, repr=False)
    bound_port: int | None = field(default=None, repr=False)

    async def serve(self, runtime: Runtime, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await listen_tcp(self.host, self.port, "TCP")
        for listener in listeners:
            listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.bound_port = listeners[0].socket.getsockname()[1]
        task_status.started(self.bound_port)
        await trio.serve_listeners(lambda s: self._connection(s, runtime), listeners)

    async def _connection(self, stream: Any, runtime: Runtime) -> None:
        self.connections += 1
        decoder = FrameDecoder(self.max_frame)
        peer = _peer(stream)
        try:
            while True:
                data = await stream.receive_some(262_144)
                if not data:
                    return
                decoder.feed(data)
                now = runtime.now()
                # Every complete frame of this read is handled, then one write
                # acknowledges them all: coalesced acks, order kept. Large
                # replies (queries) are written as soon as they add up, so a
                # peer that pipelines queries without reading is held back by
                # the socket instead of growing this buffer.
                replies: list[bytes] = []
                pending = 0
                for payload in decoder.frames():
                    reply = handle(runtime, decode_message(payload, now))
                    replies.append(reply)
                    pending += len(reply)
                    if pending >= _FLUSH_AT:
                        self.requests += len(replies)
                        await stream.send_all(b"".join(replies))
                        replies, pending = [], 0
                        now = runtime.now()
                if replies:
                    self.requests += len(replies)
                    await stream.send_all(replies[0] if len(replies) == 1 else b"".join(replies))
        except ProtocolError as error:
            self.protocol_errors += 1
            log.warning("closing TCP connection from %s: %s", peer, error)
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
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    def statistics(self) -> dict[str, Any]:
        return {"connections": self.connections, "requests": self.requests,
                "protocol_errors": self.protocol_errors}


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


def _peer(stream: trio.SocketStream) -> str:
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
    bound_port: int | None = field(default=None, repr=False)

    async def serve(self, runtime: Runtime, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with await bind_udp(self.host, self.port, "UDP") as sock:
            self.bound_port = sock.getsockname()[1]
            task_status.started(self.bound_port)
            while True:
                # One byte more than allowed tells a longer datagram, which the
                # kernel cuts, from one of exactly max_size: a cut that falls
                # between two events still parses, and would take half a message.
                data, peer = await sock.recvfrom(self.max_size + 1)
                self.datagrams += 1
                if len(data) > self.max_size:
                    self.dropped += 1
                    log.warning("dropped a UDP datagram from %s:%s longer than max_size=%d "
                                "bytes: send fewer events per datagram, raise max_size, or use "
                                "TCP", peer[0], peer[1], self.max_size)
                    continue
                try:
                    request = decode_datagram(data, runtime.now(), self.max_size)
                except ProtocolError as error:
                    self.dropped += 1
                    log.warning("dropped a UDP datagram from %s:%s: %s", peer[0], peer[1], error)
                    continue
                try:
                    runtime.stream(request.events)
                    if request.query is not None:  # evaluated as Riemann does; nobody gets it
                        runtime.index.search(request.query)
                except QuerySyntaxError:
                    self.dropped += 1
                except BaseException as error:
                    if must_propagate(error):
                        raise
                    # One datagram's failure must not stop the UDP server.
                    self.dropped += 1
                    log.error("a UDP datagram from %s:%s failed", peer[0], peer[1],
                              exc_info=error)

    def statistics(self) -> dict[str, Any]:
        return {"datagrams": self.datagrams, "dropped": self.dropped}


def tcp_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
               max_frame: int = DEFAULT_MAX_FRAME) -> TcpServer:
    """Declare a TCP server in a config (Riemann's ``tcp-server``)."""
    from streams._config import service

    _check_port(port, "tcp_server")
    return service(TcpServer(host=host, port=port, max_frame=max_frame))  # type: ignore[no-any-return]


def udp_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
               max_size: int = DEFAULT_MAX_DATAGRAM) -> UdpServer:
    """Declare a UDP server in a config (Riemann's ``udp-server``)."""
    from streams._config import service

    _check_port(port, "udp_server")
    return service(UdpServer(host=host, port=port, max_size=max_size))  # type: ignore[no-any-return]


def _check_port(port: Any, caller: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{caller}(port={port!r}): the port must be an int from 0 to 65535 "
                         f"(0 picks a free one)")
