"""rillet's trio client for Riemann's TCP protocol, and its batching sender.

Several tasks may share one :class:`TrioClient`; their requests are pipelined
on one connection and the replies are matched to them in order by the same
sans-I/O :class:`transport._client_protocol.ClientProtocol` the blocking
:class:`transport.Client` drives. Connecting, reconnecting, timeouts and
errors behave as the blocking client's (see ``transport._client``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import trio

from streams._event import Event
from transport._client import RECEIVE_SIZE, Readable
from transport._client_protocol import (
    ClientError,
    ClientProtocol,
    ConnectionSettings,
    Pipeline,
    Replies,
    RiemannConnectionError,
    check_positive,
    check_query,
    chunks,
    events_of,
    parse_reply,
)
from transport._codec import ProtocolError, encode_request
from transport._defaults import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["TrioBatcher", "TrioClient"]


class TrioClient(ConnectionSettings):
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
        self._readable: Readable | None = None
        self._protocol = ClientProtocol()
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

    async def __aenter__(self) -> TrioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def statistics(self) -> dict[str, Any]:
        return {"requests": self.requests, "connects": self.connects,
                "outstanding": self._protocol.outstanding, "connected": self.connected}

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
        replies = await self._submit(encode_request(events_of(events)), 1)
        [payload] = await self._reply(replies)
        parse_reply(payload)

    async def query(self, query: str) -> list[Event]:
        """The indexed events matching ``query`` (Riemann's query language).

        A query that does not parse raises :class:`RiemannError` with the
        server's parse error.
        """
        replies = await self._submit(encode_request(query=check_query(query)), 1)
        [payload] = await self._reply(replies)
        return parse_reply(payload)

    async def send_many(self, batches: Iterable[Iterable[Event]], *, window: int = 256) -> int:
        """Send each batch as its own request, pipelined; returns the number of requests.

        Up to ``window`` requests are outstanding at a time, written in chunks
        of ``window // 2``. Every ack is awaited even if some say ``ok:
        false``; then one :class:`RiemannError` reports how many failed.
        """
        check_positive("window", window)
        return await self._pipeline((encode_request(events_of([b])) for b in batches), window,
                                    Pipeline(None))

    async def query_many(self, queries: Iterable[str], *, window: int = 256
                         ) -> list[list[Event]]:
        """Run many queries pipelined on one connection; results in query order."""
        check_positive("window", window)
        results: list[list[Event]] = []
        await self._pipeline((encode_request(query=q) for q in queries), window,
                             Pipeline(results))
        return results

    def batch(self, max_events: int = 100, max_delay: float = 0.1, *,
              max_outstanding: int = 64) -> TrioBatcher:
        """A buffered sender; see :class:`TrioBatcher`. Use it with ``async with``."""
        return TrioBatcher(self, max_events=max_events, max_delay=max_delay,
                           max_outstanding=max_outstanding)

    async def _pipeline(self, frames: Iterable[bytes], window: int, pipeline: Pipeline) -> int:
        in_flight: deque[Replies] = deque()
        outstanding = 0
        for data, n in chunks(frames, max(1, window // 2)):
            while in_flight and outstanding + n > window:
                replies = in_flight.popleft()
                await self._reply(replies)
                outstanding -= replies.count
                pipeline.settle(replies)
            in_flight.append(await self._submit(data, n))
            outstanding += n
        for replies in in_flight:
            await self._reply(replies)
            pipeline.settle(replies)
        return pipeline.finish()

    # Connection ----------------------------------------------------------

    async def _connection(self) -> tuple[trio.SocketStream, ClientProtocol]:
        """The live connection and its protocol, (re)connecting if needed."""
        if self._closed:
            raise RiemannConnectionError(
                f"{self!r} is closed; create a new client (or use it in 'async with' only once)")
        stream = self._stream
        if stream is not None and self._protocol.idle and self._readable is not None \
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
                    self._readable = Readable(stream.socket.fileno())
                    self._protocol = ClientProtocol()
        return stream, self._protocol

    async def _open(self) -> trio.SocketStream:
        started = time.monotonic()
        last: BaseException | None = None
        for delay in self.retry_delays():
            if delay:
                await trio.sleep(delay)
            try:
                with trio.fail_after(self.timeout):
                    stream = await trio.open_tcp_stream(self.host, self.port)
            except trio.TooSlowError:
                last = TimeoutError()
                continue
            except OSError as error:
                last = error
                continue
            self.connects += 1
            return stream
        raise self.cannot_connect(started, last)

    async def _submit(self, data: bytes, count: int) -> Replies:
        """Queue ``count`` framed requests, a reply for each, and see them written.

        Whichever task finds no write in progress becomes the writer and
        sends everything queued, its own and what other tasks queue while it
        writes, in one write per round: many tasks pipeline their requests
        instead of taking turns. A failed write fails every waiting reply, so
        each task learns of it from its own reply.
        """
        stream, protocol = await self._connection()
        # Queued with no await in between, so the order of the replies is the
        # order of the requests on the wire.
        replies = protocol.send_request(data, count)
        self.requests += count
        if self._writing_on is not stream:
            await self._write(stream, protocol)
        return replies

    async def _write(self, stream: trio.SocketStream, protocol: ClientProtocol) -> None:
        self._writing_on = stream
        try:
            while data := protocol.data_to_send():
                with trio.fail_after(self.timeout):
                    await stream.send_all(data)
        except trio.TooSlowError:
            self._fail(stream, self.not_reading())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            self._fail(stream, self.lost(error))
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

    async def _reply(self, replies: Replies) -> list[bytes]:
        """Wait for ``replies``, reading (and distributing) replies if nobody else is."""
        while not replies.done:
            async with self._receive_lock:
                if replies.done:
                    break
                stream = self._stream
                assert stream is not None, "a waiting reply outlived its connection"
                try:
                    with trio.fail_after(self.timeout):
                        data = await stream.receive_some(RECEIVE_SIZE)
                except trio.TooSlowError:
                    self._fail(stream, self.no_reply())
                    break
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                    self._fail(stream, self.lost(error))
                    break
                if not data:
                    self._fail(stream, self.lost(None))
                    break
                try:
                    self._protocol.receive_data(data)
                except ProtocolError as error:
                    self._fail(stream, self.broke_protocol(error))
        return replies.result()

    def _fail(self, stream: trio.SocketStream, error: ClientError) -> None:
        """Close ``stream`` and fail every request waiting on it with ``error``."""
        if self._stream is stream:
            self._stream = None
            self._readable = None
            self._protocol.fail(error)
            stream.socket.close()  # trio's close wakes tasks blocked on the socket


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
        check_positive("max_events", max_events)
        check_positive("max_outstanding", max_outstanding)
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
        self._to_ack, self._acks = trio.open_memory_channel[tuple[Replies, int]](max_outstanding)
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
        new = events_of(events)
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
                    replies = await self.client._submit(encode_request(batch), 1)
                except ClientError as error:
                    self._record(error, len(batch))
                    continue
                self._submitted += 1
                self.batches += 1
                await self._to_ack.send((replies, len(batch)))
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
        async for replies, count in self._acks:
            try:
                [payload] = await self.client._reply(replies)
                parse_reply(payload)
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
