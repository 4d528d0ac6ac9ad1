"""The client side of Riemann's TCP protocol without I/O: requests in, bytes out, replies back.

One :class:`ClientProtocol` is one connection's bookkeeping. The trio and
blocking clients (``_trio_client``, ``_client``) own the socket, write what
:meth:`ClientProtocol.data_to_send` returns and feed what they read to
:meth:`ClientProtocol.receive_data`; the protocol matches every reply to its
request in order, as Riemann answers each connection in order:

>>> from transport._codec import OK_REPLY, encode_request
>>> protocol = ClientProtocol()
>>> first = protocol.send_request(encode_request(query="true"), 1)
>>> second = protocol.send_request(encode_request(query="true") * 2, 2)
>>> len(protocol.data_to_send())              # both requests in one write
36
>>> protocol.receive_data(OK_REPLY * 2 + OK_REPLY[:3])   # any split works
>>> first.done, second.done, protocol.outstanding
(True, False, 1)
>>> protocol.receive_data(OK_REPLY[3:])
>>> [parse_reply(payload) for payload in second.result()]
[[], []]

A reply to no request, or a frame that is not Riemann's, raises
:class:`ProtocolError`; the wrapper then fails every waiting request
(:meth:`ClientProtocol.fail`) and drops the connection, and the next call
opens a new one with a new protocol.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from google.protobuf.message import DecodeError

from streams._event import Event
from transport import _proto
from transport._codec import OK_REPLY, FrameDecoder, ProtocolError, decode_message

__all__ = [
    "ClientError",
    "ClientProtocol",
    "ConnectionSettings",
    "Pipeline",
    "Replies",
    "RiemannConnectionError",
    "RiemannError",
    "RiemannTimeout",
    "check_positive",
    "check_query",
    "chunks",
    "events_of",
    "parse_reply",
]

# The payload of the ack to a request without a query: nearly every reply, so
# recognising its bytes spares parsing them.
_OK_PAYLOAD = OK_REPLY[4:]


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


# Requests and replies --------------------------------------------------------


def events_of(arguments: Sequence[Event | Iterable[Event]]) -> list[Event]:
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


def check_query(query: object) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a query string such as 'service = \"cpu\"', "
                        f"got {query!r}")
    return query


def parse_reply(payload: bytes) -> list[Event]:
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


def check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def chunks(frames: Iterable[bytes], size: int) -> Iterator[tuple[bytes, int]]:
    """Join up to ``size`` frames at a time: one write (one syscall) per chunk."""
    chunk: list[bytes] = []
    for data in frames:
        chunk.append(data)
        if len(chunk) == size:
            yield b"".join(chunk), size
            chunk = []
    if chunk:
        yield b"".join(chunk), len(chunk)


class Replies:
    """Where the replies to ``count`` requests sent together land, or the error that ended
    their connection."""

    __slots__ = ("count", "done", "error", "payloads")

    def __init__(self, count: int) -> None:
        self.count = count
        self.done = False
        self.payloads: list[bytes] = []
        self.error: ClientError | None = None

    def result(self) -> list[bytes]:
        """The payloads in request order; raises the error if the connection failed first."""
        if self.error is not None:
            # Each waiter raises its own copy: one exception object raised in
            # several tasks would collect all their tracebacks.
            raise type(self.error)(*self.error.args)
        return self.payloads


class Pipeline:
    """Settles the replies of pipelined requests in order, then reports the failures at once.

    Every ack is read even when some say ``ok: false``; :meth:`finish` then
    raises one :class:`RiemannError` counting them, naming the first.
    """

    __slots__ = ("count", "failures", "results")

    def __init__(self, results: list[list[Event]] | None) -> None:
        self.count = 0
        self.failures: list[tuple[int, RiemannError]] = []
        self.results = results

    def settle(self, replies: Replies) -> None:
        results, count = self.results, self.count
        for payload in replies.result():
            try:
                events = parse_reply(payload)
            except RiemannError as error:
                self.failures.append((count, error))
                events = []
            if results is not None:
                results.append(events)
            count += 1
        self.count = count

    def finish(self) -> int:
        if self.failures:
            first_index, first = self.failures[0]
            raise RiemannError(
                f"{len(self.failures)} of {self.count} pipelined requests failed; the first "
                f"(#{first_index}) with: {first.message}"
            )
        return self.count


# One connection ----------------------------------------------------------------


class ClientProtocol:
    """One connection's requests and replies, matched in order; does no I/O.

    :meth:`send_request` queues framed requests and returns the
    :class:`Replies` they will get; :meth:`data_to_send` takes every byte queued since the last
    call, so requests queued while a write is in progress go out together;
    :meth:`receive_data` completes replies in request order.
    """

    __slots__ = ("_decoder", "_outgoing", "_waiting", "error")

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self._waiting: deque[Replies] = deque()
        self._outgoing: list[bytes] = []
        self.error: ClientError | None = None

    @property
    def idle(self) -> bool:
        """No request is waiting for its reply."""
        return not self._waiting

    @property
    def outstanding(self) -> int:
        """Requests sent or queued whose reply has not arrived."""
        return sum(replies.count - len(replies.payloads) for replies in self._waiting)

    def send_request(self, data: bytes, count: int) -> Replies:
        """Queue ``count`` framed requests (joined in ``data``); where their replies land."""
        if self.error is not None:
            raise type(self.error)(*self.error.args)
        replies = Replies(count)
        self._waiting.append(replies)
        self._outgoing.append(data)
        return replies

    def data_to_send(self) -> bytes:
        """Every queued request's bytes, in order, as one write; b"" when none."""
        outgoing = self._outgoing
        if not outgoing:
            return b""
        data = outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
        outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the connection; completes the replies they finish.

        A frame that is not Riemann's, or a reply to no request, raises
        :class:`ProtocolError`; the connection is then useless (:meth:`fail`).
        """
        decoder, waiting = self._decoder, self._waiting
        decoder.feed(data)
        next_frame = decoder.next_frame
        while (payload := next_frame()) is not None:
            if not waiting:
                raise ProtocolError("the server sent a reply to no request")
            replies = waiting[0]
            payloads = replies.payloads
            payloads.append(payload)
            if len(payloads) == replies.count:
                replies.done = True
                waiting.popleft()

    def fail(self, error: ClientError) -> None:
        """The connection is gone: every waiting request fails with ``error``."""
        if self.error is None:
            self.error = error
        for replies in self._waiting:
            replies.error = error
            replies.done = True
        self._waiting.clear()
        self._outgoing.clear()


# Connecting --------------------------------------------------------------------


class ConnectionSettings:
    """Where a TCP client connects and how it times out and retries, and its error texts."""

    def __init__(self, host: str, port: int, *, timeout: float, connect_attempts: int,
                 backoff: float, max_backoff: float) -> None:
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
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_attempts = connect_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(host={self.host!r}, port={self.port!r}, "
                f"timeout={self.timeout!r})")

    def retry_delays(self) -> Iterator[float]:
        """The pause before each connect attempt: 0, then backoff doubling up to max_backoff."""
        delay = self.backoff
        yield 0.0
        for _ in range(self.connect_attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_backoff)

    def cannot_connect(self, started: float, error: BaseException | None
                       ) -> RiemannConnectionError:
        """The error after the last attempt; ``started`` is the first attempt's monotonic time."""
        attempts = self.connect_attempts
        reason = "timed out" if isinstance(error, TimeoutError) else str(error)
        return RiemannConnectionError(
            f"cannot connect to Riemann at {self.host}:{self.port} ({attempts} attempt"
            f"{'s' if attempts != 1 else ''} over {time.monotonic() - started:.1f} s; last "
            f"error: {reason}); is the server running and listening on that address and port?"
        )

    def lost(self, error: BaseException | None) -> RiemannConnectionError:
        reason = "the server closed it" if error is None else str(error) or type(error).__name__
        return RiemannConnectionError(
            f"connection to {self.host}:{self.port} lost before the reply ({reason}); the "
            f"request may or may not have been processed; the next call reconnects"
        )

    def broke_protocol(self, error: ProtocolError) -> RiemannConnectionError:
        return RiemannConnectionError(
            f"{self.host}:{self.port} broke Riemann's protocol ({error}); is it a Riemann "
            f"TCP port?")

    def no_reply(self) -> RiemannTimeout:
        return RiemannTimeout(
            f"no reply from {self.host}:{self.port} within {self.timeout} s; raise timeout= "
            f"if the server is just slow; the next call reconnects")

    def not_reading(self) -> RiemannTimeout:
        return RiemannTimeout(
            f"could not write a request to {self.host}:{self.port} within {self.timeout} s; "
            f"the server is not reading (overloaded or stuck); the next call reconnects")
