"""rillet's Python clients for Riemann's protocol: trio and blocking TCP, and UDP.

All three speak the wire protocol of spec §1.4/§1.6 and work against rillet
and against Riemann itself:

- :class:`TrioClient`: async, for trio programs. Several tasks may share one
  client; their requests are pipelined on one connection and the replies are
  matched to them in order, as Riemann answers each connection in order.
- :class:`Client`: blocking sockets, no trio, for scripts and threads.
- :class:`UdpClient`: fire and forget, one ``Msg`` per datagram.

>>> client = Client("127.0.0.1", 5555)          # connects on first use
>>> client                                      # doctest: +ELLIPSIS
Client(host='127.0.0.1', port=5555, timeout=5.0)
>>> client.close()

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

import math
import select
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import trio
from google.protobuf.message import DecodeError

from streams._event import Event
from transport import _proto
from transport._codec import (
    DEFAULT_MAX_DATAGRAM,
    OK_REPLY,
    FrameDecoder,
    ProtocolError,
    decode_message,
    encode_request,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Client",
    "ClientError",
    "RiemannConnectionError",
    "RiemannError",
    "RiemannTimeout",
    "TrioBatcher",
    "TrioClient",
    "UdpClient",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555

# The payload of the ack to a request without a query: nearly every reply, so
# recognising its bytes spares parsing them.
_OK_PAYLOAD = OK_REPLY[4:]
_RECEIVE_SIZE = 262_144


class ClientError(Exception):
    """Base of the errors the clients raise for a failed request."""


class RiemannError(ClientError):
    """The server answered ``ok: false``: a stream failed, or the query is bad.

    ``message`` is the server's error text, as it sent it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RiemannConnectionError(ClientError, ConnectionError):
    """The client could not connect, or the connection broke during a request.

    A request whose connection broke may or may not have been processed; the
    next call on the client opens a new connection.
    """


class RiemannTimeout(ClientError, TimeoutError):
    """No reply (or no progress sending) within the client's ``timeout``.

    The connection is closed, since a late reply would be matched to the
    wrong request; the next call reconnects.
    """


# Shared, I/O-free helpers --------------------------------------------------


def _events(arguments: Sequence[Event | Iterable[Event]]) -> list[Event]:
    """Flatten ``send(e1, e2)`` and ``send([e1, e2])`` into one list of events."""
    events: list[Event] = []
    for argument in arguments:
        if isinstance(argument, Event):
            events.append(argument)
        elif isinstance(argument, str | bytes) or not isinstance(argument, Iterable):
            raise TypeError(
                f"send() takes Events or iterables of Events, got {argument!r}; "
                f"build one with streams.Event(host=..., service=..., metric=...)"
            )
        else:
            for event in argument:
                if not isinstance(event, Event):
                    raise TypeError(
                        f"send() takes Events or iterables of Events, got {event!r} inside "
                        f"{type(argument).__name__}; build one with streams.Event(...)"
                    )
                events.append(event)
    return events


def _parse_reply(payload: bytes) -> list[Event]:
    """The events of a reply, or :class:`RiemannError` if it says ``ok: false``."""
    if payload == _OK_PAYLOAD:
        return []
    try:
        message = _proto.Msg.FromString(payload)
    except DecodeError as error:
        raise RiemannConnectionError(
            f"the server sent a reply that is not a Riemann Msg ({error}); is the port a "
            f"Riemann TCP port?"
        ) from None
    if not message.ok:
        raise RiemannError(message.error or "the server replied ok=false without an error text")
    if not message.events:
        return []
    events: list[Event] = list(decode_message(payload, time.time()).events)
    return events


def _check_settings(timeout: float, connect_attempts: int, backoff: float,
                    max_backoff: float) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}; "
                         f"e.g. timeout=5.0")
    if isinstance(connect_attempts, bool) or not isinstance(connect_attempts, int) \
            or connect_attempts < 1:
        raise ValueError(f"connect_attempts must be an int >= 1, got {connect_attempts!r}; "
                         f"e.g. connect_attempts=3")
    for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
                or math.isnan(value):
            raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _delays(backoff: float, max_backoff: float) -> Iterator[float]:
    """Capped exponential backoff: backoff, 2×backoff, 4×backoff, … max_backoff."""
    delay = backoff
    while True:
        yield delay
        delay = min(delay * 2, max_backoff)


def _chunks(frames: Iterable[bytes], size: int) -> Iterator[tuple[bytes, int]]:
    """Join up to ``size`` frames at a time: one write (one syscall) per chunk."""
    chunk: list[bytes] = []
    for data in frames:
        chunk.append(data)
        if len(chunk) == size:
            yield b"".join(chunk), size
            chunk = []
    if chunk:
        yield b"".join(chunk), len(chunk)


class _Readable:
    """Polls a socket without blocking: is there something (or EOF) to read?

    Between requests nothing should ever be readable, since Riemann never sends
    unprompted; readable then means the server closed the connection (or reset
    it), which the client notices before sending on it.
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


def _failed_pipeline(failures: list[tuple[int, RiemannError]], total: int) -> RiemannError:
    first_index, first = failures[0]
    return RiemannError(
        f"{len(failures)} of {total} pipelined requests failed; the first (#{first_index}) "
        f"with: {first.message}"
    )


# Trio --------------------------------------------------------------------


class _Slot:
    """Where the reply to one request on a :class:`TrioClient` lands."""

    __slots__ = ("done", "error", "payload")

    def __init__(self) -> None:
        self.done = False
        self.payload = b""
        self.error: ClientError | None = None

    def result(self) -> bytes:
        if self.error is not None:
            # Each waiter raises its own copy: one exception object raised in
            # several tasks would collect all their tracebacks.
            raise type(self.error)(*self.error.args)
        return self.payload


class _Settings:
    """Where a TCP client connects and how it times out and retries (both clients)."""

    def __init__(self, host: str, port: int, *, timeout: float, connect_attempts: int,
                 backoff: float, max_backoff: float) -> None:
        _check_settings(timeout, connect_attempts, backoff, max_backoff)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_attempts = connect_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff


class TrioClient(_Settings):
    """A Riemann TCP client for trio.

    ``timeout`` bounds each connect, each write and each wait for a reply;
    failing to connect is retried ``connect_attempts`` times, sleeping
    ``backoff`` seconds, doubling up to ``max_backoff``.

    Any number of tasks can use one client at once, and their requests are
    pipelined without a background task: requests written while a write is
    in progress go out together in the next one, and whichever task needs a
    reply reads the connection and hands every reply it reads to the waiting
    request it answers (replies come in request order).
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 timeout: float = 5.0, connect_attempts: int = 3, backoff: float = 0.1,
                 max_backoff: float = 2.0) -> None:
        super().__init__(host, port, timeout=timeout, connect_attempts=connect_attempts,
                         backoff=backoff, max_backoff=max_backoff)
        self._stream: trio.SocketStream | None = None
        self._readable: _Readable | None = None
        self._decoder = FrameDecoder()
        self._pending: deque[_Slot] = deque()
        self._outgoing: list[bytes] = []
        self._writing_on: trio.SocketStream | None = None
        self._connect_lock = trio.Lock()
        self._receive_lock = trio.Lock()
        self._closed = False
        self.requests = 0
        self.connects = 0

    @classmethod
    async def connect(cls, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                      timeout: float = 5.0, connect_attempts: int = 3, backoff: float = 0.1,
                      max_backoff: float = 2.0) -> TrioClient:
        """A client that is already connected; raises :class:`RiemannConnectionError` if not."""
        client = cls(host, port, timeout=timeout, connect_attempts=connect_attempts,
                     backoff=backoff, max_backoff=max_backoff)
        await client._connection()
        return client

    def __repr__(self) -> str:
        return f"TrioClient(host={self.host!r}, port={self.port!r}, timeout={self.timeout!r})"

    async def __aenter__(self) -> TrioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def statistics(self) -> dict[str, Any]:
        return {"requests": self.requests, "connects": self.connects,
                "outstanding": len(self._pending), "connected": self.connected}

    async def aclose(self) -> None:
        """Close the connection; requests still waiting fail. Calls afterwards raise."""
        self._closed = True
        if self._stream is not None:
            self._fail(self._stream, RiemannConnectionError(
                f"the client for {self.host}:{self.port} was closed while this request "
                f"waited for its reply"))

    # Requests ------------------------------------------------------------

    async def send(self, *events: Event | Iterable[Event]) -> None:
        """Send events in one request and wait for the ack.

        Raises :class:`RiemannError` with the server's text if it answers
        ``ok: false`` (a stream raised).
        """
        [slot] = await self._submit(encode_request(_events(events)), 1)
        _parse_reply(await self._reply(slot))

    async def query(self, query: str) -> list[Event]:
        """The indexed events matching ``query`` (Riemann's query language).

        A query that does not parse raises :class:`RiemannError` with the
        server's parse error.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a query string such as 'service = \"cpu\"', "
                            f"got {query!r}")
        [slot] = await self._submit(encode_request(query=query), 1)
        return _parse_reply(await self._reply(slot))

    async def send_many(self, batches: Iterable[Iterable[Event]], *, window: int = 256) -> int:
        """Send each batch as its own request, pipelined; returns the number of requests.

        Up to ``window`` requests are outstanding at a time, written in chunks
        of ``window // 2``. Every ack is awaited even if some say ``ok:
        false``; then one :class:`RiemannError` reports how many failed.
        """
        _check_positive("window", window)
        return await self._pipeline((encode_request(_events([b])) for b in batches), window,
                                    None)

    async def query_many(self, queries: Iterable[str], *, window: int = 256
                         ) -> list[list[Event]]:
        """Run many queries pipelined on one connection; results in query order."""
        _check_positive("window", window)
        results: list[list[Event]] = []
        await self._pipeline((encode_request(query=q) for q in queries), window, results)
        return results

    def batch(self, max_events: int = 100, max_delay: float = 0.1, *,
              max_outstanding: int = 64) -> TrioBatcher:
        """A buffered sender; see :class:`TrioBatcher`. Use it with ``async with``."""
        return TrioBatcher(self, max_events=max_events, max_delay=max_delay,
                           max_outstanding=max_outstanding)

    async def _pipeline(self, frames: Iterable[bytes], window: int,
                        results: list[list[Event]] | None) -> int:
        in_flight: deque[list[_Slot]] = deque()
        outstanding = 0
        count = 0
        failures: list[tuple[int, RiemannError]] = []

        async def settle_oldest() -> None:
            nonlocal outstanding, count
            slots = in_flight.popleft()
            await self._reply(slots[-1])  # reading up to the last fills the others
            outstanding -= len(slots)
            for slot in slots:
                try:
                    events = _parse_reply(slot.result())
                except RiemannError as error:
                    failures.append((count, error))
                    events = []
                if results is not None:
                    results.append(events)
                count += 1

        for data, n in _chunks(frames, max(1, window // 2)):
            while in_flight and outstanding + n > window:
                await settle_oldest()
            in_flight.append(await self._submit(data, n))
            outstanding += n
        while in_flight:
            await settle_oldest()
        if failures:
            raise _failed_pipeline(failures, count)
        return count

    # Connection ----------------------------------------------------------

    async def _connection(self) -> trio.SocketStream:
        """The live connection, (re)connecting if needed."""
        if self._closed:
            raise RiemannConnectionError(
                f"{self!r} is closed; create a new client (or use it in 'async with' only once)")
        stream = self._stream
        if stream is not None and not self._pending and self._readable is not None \
                and self._readable():
            # Idle yet readable: the server closed or reset it (e.g. it restarted).
            self._fail(stream, RiemannConnectionError("connection closed by the server"))
            stream = None
        if stream is None:
            async with self._connect_lock:
                # Another task may have connected while this one waited.
                stream = self._stream
                if stream is None:
                    stream = await self._open()
                    self._stream = stream
                    self._readable = _Readable(stream.socket.fileno())
                    self._decoder = FrameDecoder()
        return stream

    async def _open(self) -> trio.SocketStream:
        delays = _delays(self.backoff, self.max_backoff)
        started = time.monotonic()
        last: BaseException | None = None
        for attempt in range(1, self.connect_attempts + 1):
            try:
                with trio.fail_after(self.timeout):
                    stream = await trio.open_tcp_stream(self.host, self.port)
            except (OSError, trio.TooSlowError) as error:
                last = error
                if attempt < self.connect_attempts:
                    await trio.sleep(next(delays))
                continue
            self.connects += 1
            return stream
        raise _connect_error(self.host, self.port, self.connect_attempts,
                             time.monotonic() - started, last)

    async def _submit(self, data: bytes, count: int) -> list[_Slot]:
        """Queue ``count`` framed requests, a slot for each reply, and see them written.

        Whichever task finds no write in progress becomes the writer and
        sends everything queued, its own and what other tasks queue while it
        writes, in one write per round: many tasks pipeline their requests
        instead of taking turns. A failed write fails every waiting slot, so
        each task learns of it from its own reply.
        """
        stream = await self._connection()
        slots = [_Slot() for _ in range(count)]
        # Slots and bytes are queued together, with no await in between, so
        # the order of the slots is the order of the requests on the wire.
        self._pending.extend(slots)
        self._outgoing.append(data)
        self.requests += count
        if self._writing_on is not stream:
            await self._write(stream)
        return slots

    async def _write(self, stream: trio.SocketStream) -> None:
        self._writing_on = stream
        outgoing = self._outgoing
        try:
            while outgoing and self._stream is stream:
                data = outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
                outgoing.clear()
                with trio.fail_after(self.timeout):
                    await stream.send_all(data)
        except trio.TooSlowError:
            self._fail(stream, RiemannTimeout(
                f"could not write a request to {self.host}:{self.port} within {self.timeout} s; "
                f"the server is not reading (overloaded or stuck); the next call reconnects"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            self._fail(stream, _lost(self.host, self.port, error))
        except BaseException:
            # Cancelled mid-write: the peer may hold half a frame, so
            # nothing more can be written on this connection.
            self._fail(stream, RiemannConnectionError(
                "a request was cancelled half-written, so the connection was closed; the next "
                "call reconnects"))
            raise
        finally:
            if self._writing_on is stream:
                self._writing_on = None

    async def _reply(self, slot: _Slot) -> bytes:
        """Wait for ``slot``'s reply, reading (and distributing) replies if nobody else is."""
        while not slot.done:
            async with self._receive_lock:
                if slot.done:
                    break
                stream = self._stream
                assert stream is not None, "a pending slot outlived its connection"
                try:
                    with trio.fail_after(self.timeout):
                        data = await stream.receive_some(_RECEIVE_SIZE)
                except trio.TooSlowError:
                    self._fail(stream, RiemannTimeout(
                        f"no reply from {self.host}:{self.port} within {self.timeout} s; "
                        f"raise timeout= if the server is just slow"))
                    break
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                    self._fail(stream, _lost(self.host, self.port, error))
                    break
                if not data:
                    self._fail(stream, _lost(self.host, self.port, None))
                    break
                self._distribute(stream, data)
        return slot.result()

    def _distribute(self, stream: trio.SocketStream, data: bytes) -> None:
        decoder, pending = self._decoder, self._pending
        decoder.feed(data)
        try:
            for payload in decoder.frames():
                if not pending:
                    raise ProtocolError("the server sent a reply to no request")
                slot = pending.popleft()
                slot.payload = payload
                slot.done = True
        except ProtocolError as error:
            self._fail(stream, RiemannConnectionError(
                f"{self.host}:{self.port} broke Riemann's protocol ({error}); is it a Riemann "
                f"TCP port?"))

    def _fail(self, stream: trio.SocketStream, error: ClientError) -> ClientError:
        """Close ``stream`` and fail every request waiting on it with ``error``."""
        if self._stream is stream:
            self._stream = None
            self._readable = None
            for slot in self._pending:
                slot.error = error
                slot.done = True
            self._pending.clear()
            self._outgoing.clear()
            stream.socket.close()  # trio's close wakes tasks blocked on the socket
        return error


def _connect_error(host: str, port: int, attempts: int, elapsed: float,
                   error: BaseException | None) -> RiemannConnectionError:
    reason = "timed out" if isinstance(error, trio.TooSlowError | TimeoutError) else str(error)
    return RiemannConnectionError(
        f"cannot connect to Riemann at {host}:{port} ({attempts} attempt"
        f"{'s' if attempts != 1 else ''} over {elapsed:.1f} s; last error: {reason}); "
        f"is the server running and listening on that address and port?"
    )


def _lost(host: str, port: int, error: BaseException | None) -> RiemannConnectionError:
    reason = "the server closed it" if error is None else str(error) or type(error).__name__
    return RiemannConnectionError(
        f"connection to {host}:{port} lost before the reply ({reason}); the request may or "
        f"may not have been processed; the next call reconnects"
    )


class TrioBatcher:
    """Buffers events and sends them in batches, pipelining the acks.

    A batch goes out when ``max_events`` are buffered or ``max_delay``
    seconds after its first event, whichever comes first. Up to
    ``max_outstanding`` batches wait for their acks at once; past that,
    :meth:`add` waits, so a slow server slows the producer instead of
    growing memory.

    >>> async def report(client: TrioClient) -> None:
    ...     async with client.batch(max_events=100, max_delay=0.1) as batch:
    ...         for n in range(1000):
    ...             await batch.add(Event(service="requests", metric=n))

    Leaving the block normally sends what is buffered and waits for every ack;
    leaving it with an exception drops what was not sent yet. A failed batch
    (``ok: false`` or a lost connection) is raised, once, from the next
    :meth:`add`, :meth:`flush` or the block's end, counting the events lost;
    batches after it are still sent.
    """

    def __init__(self, client: TrioClient, *, max_events: int = 100, max_delay: float = 0.1,
                 max_outstanding: int = 64) -> None:
        _check_positive("max_events", max_events)
        _check_positive("max_outstanding", max_outstanding)
        if isinstance(max_delay, bool) or not isinstance(max_delay, int | float) \
                or not max_delay >= 0:
            raise ValueError(f"max_delay must be a number of seconds >= 0, got {max_delay!r}; "
                             f"e.g. max_delay=0.1")
        self.client = client
        self.max_events = max_events
        self.max_delay = max_delay
        self.max_outstanding = max_outstanding
        self.sent = 0  # events acknowledged
        self.failed = 0  # events in batches that failed
        self.batches = 0
        self._buffer: list[Event] = []
        self._deadline = math.inf
        self._buffered = trio.Event()
        self._flush_lock = trio.Lock()
        self._error: ClientError | None = None
        self._submitted = 0
        self._settled = 0
        self._settled_lot = trio.lowlevel.ParkingLot()
        self._to_ack, self._acks = trio.open_memory_channel[tuple[_Slot, int]](max_outstanding)
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return (f"TrioBatcher({self.client!r}, max_events={self.max_events}, "
                f"max_delay={self.max_delay}, max_outstanding={self.max_outstanding})")

    def statistics(self) -> dict[str, Any]:
        return {"buffered": len(self._buffer), "outstanding": self._submitted - self._settled,
                "sent": self.sent, "failed": self.failed, "batches": self.batches}

    async def __aenter__(self) -> TrioBatcher:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        self._nursery.start_soon(self._timer)
        self._nursery.start_soon(self._acker)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        assert self._nursery is not None, "TrioBatcher must be used with 'async with'"
        try:
            if exc_type is None:
                await self.flush()
        finally:
            self._nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)

    async def add(self, *events: Event | Iterable[Event]) -> None:
        """Buffer events; sends a batch when ``max_events`` are buffered."""
        self._raise_failure()
        if self._nursery is None:
            raise RuntimeError("use the batcher inside 'async with client.batch() as batch:'")
        new = _events(events)
        if not new:
            return
        if not self._buffer:
            self._deadline = trio.current_time() + self.max_delay
            self._buffered.set()
        self._buffer.extend(new)
        while len(self._buffer) >= self.max_events:
            await self._send_buffered()

    async def flush(self) -> None:
        """Send what is buffered and wait until every batch so far is acknowledged."""
        await self._send_buffered(everything=True)
        target = self._submitted
        while self._settled < target:
            await self._settled_lot.park()
        self._raise_failure()

    def _raise_failure(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def _send_buffered(self, everything: bool = False) -> None:
        async with self._flush_lock:
            while self._buffer and (everything or len(self._buffer) >= self.max_events
                                    or trio.current_time() >= self._deadline):
                batch = self._buffer[:self.max_events]
                del self._buffer[:self.max_events]
                self._deadline = (trio.current_time() + self.max_delay if self._buffer
                                  else math.inf)
                try:
                    [slot] = await self.client._submit(encode_request(batch), 1)
                except ClientError as error:
                    self._record(error, len(batch))
                    continue
                self._submitted += 1
                self.batches += 1
                await self._to_ack.send((slot, len(batch)))
            # Only a set event is replaced: the timer may be waiting on the
            # current one, and the next add() must wake it.
            if not self._buffer and self._buffered.is_set():
                self._buffered = trio.Event()

    async def _timer(self) -> None:
        while True:
            await self._buffered.wait()
            await trio.sleep_until(self._deadline)
            await self._send_buffered()

    async def _acker(self) -> None:
        async for slot, count in self._acks:
            try:
                _parse_reply(await self.client._reply(slot))
            except ClientError as error:
                self._record(error, count)
            else:
                self.sent += count
            self._settled += 1
            self._settled_lot.unpark_all()

    def _record(self, error: ClientError, count: int) -> None:
        self.failed += count
        if self._error is None:
            self._error = type(error)(f"a batch of {count} events was not accepted: {error}")


# Blocking ----------------------------------------------------------------


class Client(_Settings):
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
        self._readable: _Readable | None = None
        self._decoder = FrameDecoder()
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

    def __repr__(self) -> str:
        return f"Client(host={self.host!r}, port={self.port!r}, timeout={self.timeout!r})"

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
        [payload] = self._exchange(encode_request(_events(events)), 1)
        _parse_reply(payload)

    def query(self, query: str) -> list[Event]:
        """The indexed events matching ``query``; a bad query raises :class:`RiemannError`."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a query string such as 'service = \"cpu\"', "
                            f"got {query!r}")
        [payload] = self._exchange(encode_request(query=query), 1)
        return _parse_reply(payload)

    def pipeline(self, events: Iterable[Event], batch_size: int = 100, *,
                 window: int = 256) -> int:
        """Send ``events`` in requests of ``batch_size``, pipelined; returns the event count.

        Up to ``window`` requests are written before their acks are read.
        """
        _check_positive("batch_size", batch_size)
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
        _check_positive("window", window)
        return self._pipeline((encode_request(_events([b])) for b in batches), window, None)

    def query_many(self, queries: Iterable[str], *, window: int = 256) -> list[list[Event]]:
        """Run many queries pipelined on one connection; results in query order."""
        _check_positive("window", window)
        results: list[list[Event]] = []
        self._pipeline((encode_request(query=q) for q in queries), window, results)
        return results

    def _pipeline(self, frames: Iterable[bytes], window: int,
                  results: list[list[Event]] | None) -> int:
        # Write a chunk, then read the replies of the chunk before it: between
        # half a window and a window is outstanding, and the acks waiting in
        # the socket stay small enough that neither side blocks the other.
        count = 0
        failures: list[tuple[int, RiemannError]] = []
        sock = self._connection()
        previous = 0
        try:
            for data, n in _chunks(frames, max(1, window // 2)):
                sock.sendall(data)
                self.requests += n
                if previous:
                    count = self._settle(self._read(sock, previous), count, failures, results)
                previous = n
            if previous:
                count = self._settle(self._read(sock, previous), count, failures, results)
        except OSError as error:
            raise self._broken(error) from None
        if failures:
            raise _failed_pipeline(failures, count)
        return count

    @staticmethod
    def _settle(payloads: list[bytes], count: int, failures: list[tuple[int, RiemannError]],
                results: list[list[Event]] | None) -> int:
        for payload in payloads:
            try:
                events = _parse_reply(payload)
            except RiemannError as error:
                failures.append((count, error))
                events = []
            if results is not None:
                results.append(events)
            count += 1
        return count

    def _exchange(self, data: bytes, count: int) -> list[bytes]:
        sock = self._connection()
        self.requests += count
        try:
            sock.sendall(data)
            return self._read(sock, count)
        except OSError as error:
            raise self._broken(error) from None

    def _read(self, sock: socket.socket, count: int) -> list[bytes]:
        """The next ``count`` replies; replies to later pipelined requests stay buffered."""
        decoder = self._decoder
        payloads: list[bytes] = []
        while len(payloads) < count:
            try:
                payload = decoder.next_frame()
            except ProtocolError as error:
                self._drop()
                raise RiemannConnectionError(
                    f"{self.host}:{self.port} broke Riemann's protocol ({error}); is it a "
                    f"Riemann TCP port?") from None
            if payload is not None:
                payloads.append(payload)
                continue
            data = sock.recv(_RECEIVE_SIZE)
            if not data:
                self._drop()
                raise _lost(self.host, self.port, None)
            decoder.feed(data)
        return payloads

    def _broken(self, error: OSError) -> ClientError:
        self._drop()
        if isinstance(error, TimeoutError):
            return RiemannTimeout(
                f"no reply from {self.host}:{self.port} within {self.timeout} s; raise "
                f"timeout= if the server is just slow; the next call reconnects")
        return _lost(self.host, self.port, error)

    def _connection(self) -> socket.socket:
        sock = self._sock
        if sock is not None and self._readable is not None and self._readable():
            # Idle yet readable: the server closed or reset it (e.g. it restarted).
            self._drop()
            sock = None
        if sock is None:
            sock = self._open()
            self._sock = sock
            self._readable = _Readable(sock.fileno())
            self._decoder = FrameDecoder()
        return sock

    def _open(self) -> socket.socket:
        delays = _delays(self.backoff, self.max_backoff)
        started = time.monotonic()
        last: BaseException | None = None
        for attempt in range(1, self.connect_attempts + 1):
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as error:
                last = error
                if attempt < self.connect_attempts:
                    time.sleep(next(delays))
                continue
            # Small requests must go out at once, not wait for Nagle's timer.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
            return sock
        raise _connect_error(self.host, self.port, self.connect_attempts,
                             time.monotonic() - started, last)

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
        _check_positive("max_size", max_size)
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
        batch = _events(events)
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
