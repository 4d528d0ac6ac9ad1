"""rillet's Python clients for Riemann's protocol: trio and blocking TCP, and UDP.

All three speak Riemann's wire protocol and work against rillet and against
Riemann itself:

- :class:`transport.TrioClient`: async, for trio programs. Several tasks may
  share one client; their requests are pipelined on one connection and the
  replies are matched to them in order, as Riemann answers each connection
  in order (``_trio_client``).
- :class:`Client`: blocking sockets, no trio, for scripts and threads.
- :class:`UdpClient`: fire and forget, one ``Msg`` per datagram.

>>> client = Client("127.0.0.1", 5555)          # connects on first use
>>> client                                      # doctest: +ELLIPSIS
Client(host='127.0.0.1', port=5555, timeout=5.0)
>>> client.close()

Both TCP clients drive the same sans-I/O :class:`ClientProtocol`, which
frames requests and matches replies; they only move its bytes.

A TCP client connects lazily (or eagerly with ``connect``), and when a
connection breaks the call that saw it fails with
:class:`RiemannConnectionError`; the next call reconnects, retrying with
capped exponential backoff. A connection that the server closed while the
client was idle (a server restart) is noticed before sending, and replaced
without an error.

Events go out as :func:`transport._codec.encode_event` writes them; an event
without a time is sent without one, so the server stamps its receive time.
Query results are the decoded events (:class:`transport._codec.WireEvent`).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

from streams._event import Event
from transport._client_protocol import (
    ClientError,
    ClientProtocol,
    ConnectionSettings,
    Pipeline,
    Replies,
    RiemannConnectionError,
    RiemannError,
    RiemannTimeout,
    check_positive,
    check_query,
    chunks,
    events_of,
    parse_reply,
)
from transport._codec import DEFAULT_MAX_DATAGRAM, ProtocolError, encode_request
from transport._defaults import DEFAULT_HOST, DEFAULT_PORT

__all__ = [
    "Client",
    "ClientError",
    "Readable",
    "RiemannConnectionError",
    "RiemannError",
    "RiemannTimeout",
    "UdpClient",
]

RECEIVE_SIZE = 262_144


class Readable:
    """Polls a socket without blocking: is there something (or EOF) to read?

    Between requests nothing should ever be readable, since Riemann never sends
    unprompted; readable then means the server closed the connection (or reset
    it), which the clients notice before sending on it.
    """

    __slots__ = ("_fd", "_poll")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        poll = getattr(select, "poll", None)  # absent on Windows
        self._poll = poll() if poll is not None else None
        if self._poll is not None:
            self._poll.register(fd, select.POLLIN)

    def __call__(self) -> bool:
        if self._poll is not None:
            return bool(self._poll.poll(0))
        readable, _, _ = select.select([self._fd], [], [], 0)
        return bool(readable)


# Blocking ----------------------------------------------------------------


class Client(ConnectionSettings):
    """A blocking Riemann TCP client (plain sockets, no trio).

    >>> with Client("127.0.0.1", 5555) as client:              # doctest: +SKIP
    ...     client.send(Event(host="web1", service="cpu", metric=0.5))
    ...     client.query('service = "cpu"')
    [Event(host='web1', service='cpu', metric=0.5, time=1714564800.123)]

    ``timeout`` bounds each connect and each socket operation; connecting is
    retried ``connect_attempts`` times with capped exponential backoff. Not
    thread-safe: give each thread its own client.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 timeout: float = 5.0, connect_attempts: int = 3, backoff: float = 0.1,
                 max_backoff: float = 2.0) -> None:
        super().__init__(host, port, timeout=timeout, connect_attempts=connect_attempts,
                         backoff=backoff, max_backoff=max_backoff)
        self._sock: socket.socket | None = None
        self._readable: Readable | None = None
        self._protocol = ClientProtocol()
        self.requests = 0
        self.connects = 0

    @classmethod
    def connect(cls, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                timeout: float = 5.0, connect_attempts: int = 3, backoff: float = 0.1,
                max_backoff: float = 2.0) -> Client:
        """A client that is already connected; raises :class:`RiemannConnectionError` if not."""
        client = cls(host, port, timeout=timeout, connect_attempts=connect_attempts,
                     backoff=backoff, max_backoff=max_backoff)
        client._connection()
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def statistics(self) -> dict[str, Any]:
        return {"requests": self.requests, "connects": self.connects,
                "connected": self.connected}

    def close(self) -> None:
        """Close the connection. The client stays usable: the next call reconnects."""
        self._drop()

    def send(self, *events: Event | Iterable[Event]) -> None:
        """Send events in one request and wait for the ack.

        Raises :class:`RiemannError` with the server's text on ``ok: false``.
        """
        parse_reply(self._exchange(encode_request(events_of(events))))

    def query(self, query: str) -> list[Event]:
        """The indexed events matching ``query``; a bad query raises :class:`RiemannError`."""
        return parse_reply(self._exchange(encode_request(query=check_query(query))))

    def pipeline(self, events: Iterable[Event], batch_size: int = 100, *,
                 window: int = 256) -> int:
        """Send ``events`` in requests of ``batch_size``, pipelined; returns the event count.

        Up to ``window`` requests are written before their acks are read.
        """
        check_positive("batch_size", batch_size)
        counted = 0

        def batches() -> Iterator[list[Event]]:
            nonlocal counted
            batch: list[Event] = []
            for event in events:
                batch.append(event)
                if len(batch) == batch_size:
                    counted += batch_size
                    yield batch
                    batch = []
            if batch:
                counted += len(batch)
                yield batch

        self.send_many(batches(), window=window)
        return counted

    def send_many(self, batches: Iterable[Iterable[Event]], *, window: int = 256) -> int:
        """Send each batch as its own request, pipelined; returns the number of requests."""
        check_positive("window", window)
        return self._pipeline((encode_request(events_of([b])) for b in batches), window,
                              Pipeline(None))

    def query_many(self, queries: Iterable[str], *, window: int = 256) -> list[list[Event]]:
        """Run many queries pipelined on one connection; results in query order."""
        check_positive("window", window)
        results: list[list[Event]] = []
        self._pipeline((encode_request(query=q) for q in queries), window, Pipeline(results))
        return results

    def _pipeline(self, frames: Iterable[bytes], window: int, pipeline: Pipeline) -> int:
        # Write a chunk, then read the replies of the chunk before it: between
        # half a window and a window is outstanding, and the acks waiting in
        # the socket stay small enough that neither side blocks the other.
        sock, protocol = self._connection()
        previous: Replies | None = None
        try:
            for data, n in chunks(frames, max(1, window // 2)):
                replies = protocol.send_request(data, n)
                sock.sendall(protocol.data_to_send())
                self.requests += n
                if previous is not None:
                    self._receive(sock, protocol, previous)
                    pipeline.settle(previous)
                previous = replies
            if previous is not None:
                self._receive(sock, protocol, previous)
                pipeline.settle(previous)
        except OSError as error:
            raise self._broken(error) from None
        return pipeline.finish()

    def _exchange(self, data: bytes) -> bytes:
        sock, protocol = self._connection()
        replies = protocol.send_request(data, 1)
        self.requests += 1
        try:
            sock.sendall(protocol.data_to_send())
            self._receive(sock, protocol, replies)
        except OSError as error:
            raise self._broken(error) from None
        [payload] = replies.result()
        return payload

    def _receive(self, sock: socket.socket, protocol: ClientProtocol, replies: Replies) -> None:
        """Read until ``replies`` (and every reply before them) are in; later ones stay buffered."""
        while not replies.done:
            data = sock.recv(RECEIVE_SIZE)
            if not data:
                self._drop()
                raise self.lost(None)
            try:
                protocol.receive_data(data)
            except ProtocolError as error:
                self._drop()
                raise self.broke_protocol(error) from None

    def _broken(self, error: OSError) -> ClientError:
        self._drop()
        if isinstance(error, TimeoutError):
            return self.no_reply()
        return self.lost(error)

    def _connection(self) -> tuple[socket.socket, ClientProtocol]:
        sock = self._sock
        if sock is not None and self._readable is not None and self._readable():
            # Idle yet readable: the server closed or reset it (e.g. it restarted).
            self._drop()
            sock = None
        if sock is None:
            sock = self._open()
            self._sock = sock
            self._readable = Readable(sock.fileno())
            self._protocol = ClientProtocol()
        return sock, self._protocol

    def _open(self) -> socket.socket:
        started = time.monotonic()
        last: BaseException | None = None
        for delay in self.retry_delays():
            if delay:
                time.sleep(delay)
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as error:
                last = error
                continue
            # Small requests must go out at once, not wait for Nagle's timer.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
            return sock
        raise self.cannot_connect(started, last)

    def _drop(self) -> None:
        sock, self._sock, self._readable = self._sock, None, None
        if sock is not None:
            sock.close()


# UDP ---------------------------------------------------------------------


class UdpClient:
    """Fire-and-forget events over UDP: one ``Msg`` per datagram, never a reply.

    Nothing tells the sender whether the server got an event; use TCP when
    that matters. A message above ``max_size`` bytes (Riemann's receive
    buffer, 16384 by default) would arrive cut and be dropped, so it is
    refused here instead.

    >>> with UdpClient("127.0.0.1", 5555) as udp:                # doctest: +SKIP
    ...     udp.send(Event(host="web1", service="cpu", metric=0.5))
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 max_size: int = DEFAULT_MAX_DATAGRAM) -> None:
        check_positive("max_size", max_size)
        self.host = host
        self.port = port
        self.max_size = max_size
        self._sock: socket.socket | None = None
        self.datagrams = 0

    def __repr__(self) -> str:
        return f"UdpClient(host={self.host!r}, port={self.port!r}, max_size={self.max_size})"

    def __enter__(self) -> UdpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return {"datagrams": self.datagrams}

    def send(self, *events: Event | Iterable[Event]) -> None:
        """Send events in one datagram; refuses (ValueError) one above ``max_size`` bytes."""
        batch = events_of(events)
        data = encode_request(batch, framed=False)
        if len(data) > self.max_size:
            raise ValueError(
                f"{len(batch)} events encode to a {len(data)}-byte UDP message, above "
                f"max_size={self.max_size} (the server's receive buffer; a longer datagram "
                f"arrives cut and is dropped); send fewer events per call, or use TCP"
            )
        if self._sock is None:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, kind, protocol, _, address = info[0]
            sock = socket.socket(family, kind, protocol)
            try:
                sock.connect(address)  # fixes the destination; errors surface on send
            except OSError:
                sock.close()
                raise
            self._sock = sock
        self._sock.send(data)
        self.datagrams += 1

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
