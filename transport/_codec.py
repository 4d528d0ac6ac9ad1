"""Riemann's wire protocol as pure functions: bytes in, events out, and back.

Nothing here touches a socket (the servers and the client do that), so
framing and conversion are tested by feeding bytes:

>>> request = encode_request([Event(host="web1", service="cpu", metric=0.5, time=10)])
>>> decoder = FrameDecoder()
>>> decoder.feed(request[:3])      # any split works; nothing is complete yet
>>> decoder.next_frame() is None
True
>>> decoder.feed(request[3:])
>>> [decoded] = [decode_message(payload, now=99.0) for payload in decoder.frames()]
>>> decoded.events
[Event(host='web1', service='cpu', metric=0.5, time=10.0)]
>>> decoded.query is None
True

Decoded events are :class:`WireEvent`\\ s: they read each field from the
protobuf message on first access, because converting every field of every
event up front is most of the cost of ingesting (PERFORMANCE.md), and most
streams look at two or three fields.

Where rillet deliberately differs from Riemann:

- ``time_micros`` is the event time rounded to the nearest microsecond, not
  truncated: a decoded ``time_micros / 1e6`` truncated back loses a
  microsecond about 2 % of the time, so forwarding would drift. ``time`` (the
  seconds field) is derived from the same microseconds, truncated toward zero.
  Decoding divides exactly (``time_micros / 1_000_000``), so encode → decode
  gives back every time a double can hold to the microsecond.
- Infinite metrics are written as ``metric_d`` only. Riemann's float32
  conversion refuses them as out of range, exactly as it refuses finite
  doubles beyond float32; NaN passes that check, so NaN is written to both
  ``metric_f`` and ``metric_d``.
- A message whose ``query`` carries no ``string`` decodes to the query ``""``
  (Riemann fails on it with a null pointer), so the query parser reports it.
"""

from __future__ import annotations

import numbers
import operator
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from google.protobuf.message import DecodeError, EncodeError

from streams._event import Event, LazyEvent
from transport import _fastpath, _proto

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_MAX_FRAME",
    "OK_REPLY",
    "Decoded",
    "FrameDecoder",
    "ProtocolError",
    "WireEvent",
    "decode_datagram",
    "decode_message",
    "encode_event",
    "encode_reply",
    "encode_request",
    "frame",
]

#: Largest frame :class:`FrameDecoder` accepts by default. Riemann accepts up
#: to 2**31 - 1 bytes, but a connection buffers a whole frame before decoding
#: it; 64 MiB holds a message of several hundred thousand events.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024

#: Riemann's default UDP receive size (spec §1.6); longer datagrams arrive cut.
DEFAULT_MAX_DATAGRAM = 16384

_MAX_PREFIX = 2**32 - 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_FLOAT32_MAX = 3.4028234663852886e38
_COMPACT_AT = 64 * 1024
_PREFIX = struct.Struct(">I")
_unpack_prefix = _PREFIX.unpack_from
_pack_prefix = _PREFIX.pack
_set = object.__setattr__
_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})
# The C parser and encoder when built (see _fastpath), else None: the code below does it.
_fast_decode, _fast_encode = _fastpath.load(_NO_ATTRIBUTES)

# Attribute keys that overwrite a base field, and those Riemann drops (§1.2).
_OVERRIDING_KEYS = ("host", "service", "state", "description")
_DROPPED_KEYS = frozenset({"tags", "time", "ttl", "metric", *_OVERRIDING_KEYS})
# An attribute whose key is "host" contains these bytes (key tag, length,
# text). A message without any of them cannot override a base field, which
# lets its events skip scanning attributes on every string read.
_OVERRIDE_MARKERS = tuple(b"\n" + bytes([len(key)]) + key.encode() for key in _OVERRIDING_KEYS)
# Any Attribute in a message starts with Event field 9's tag byte, 0x4A.
_ATTRIBUTE_TAG = b"J"
# Module-level so that tests/benchmarks/bench_codec.py can time decoding with and without it.
_discard_unknown: Callable[[Any], None] = _proto.Msg.DiscardUnknownFields


class ProtocolError(ValueError):
    """Bytes that are not a valid Riemann message or frame.

    Riemann's answer to one is to close the connection without replying.
    """


# Decoding ----------------------------------------------------------------


class Decoded(NamedTuple):
    """One decoded ``Msg``: the events to stream, and the query if it asked one."""

    events: list[Event]
    query: str | None


def decode_message(data: bytes | bytearray | memoryview, now: float) -> Decoded:
    """Decode one serialized ``Msg`` (a frame's payload, or a UDP datagram).

    ``now`` becomes the time of events that carry none, as Riemann does with
    its receive time.

    >>> decode_message(encode_request(query='service = "cpu"', framed=False), now=0.0)
    Decoded(events=[], query='service = "cpu"')
    >>> decode_message(b"\\xff\\xff", now=0.0)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ProtocolError: cannot parse a Riemann Msg from 2 bytes b'\\xff\\xff' (...); ...
    """
    if _fast_decode is not None:
        fast = _fast_decode(data, now)
        if fast is not None:  # else the bytes are left to protobuf, the reference
            return Decoded(*fast)
    if not isinstance(data, bytes | bytearray):
        data = bytes(data)
    try:
        message = _proto.Msg.FromString(data)
    except DecodeError as error:
        raise ProtocolError(
            f"cannot parse a Riemann Msg from {len(data)} bytes {_preview(data)} ({error}); "
            "is the peer speaking Riemann's protobuf protocol, and framing TCP with a "
            "4-byte length prefix?"
        ) from None
    # upb does not enforce proto2's required Attribute.key while parsing.
    # Serializing checks it with a bit mask per message, twice as fast as
    # IsInitialized(), which walks every field; a message without the
    # attribute tag byte has no attribute to check at all.
    if _ATTRIBUTE_TAG in data:
        try:
            message.SerializeToString()
        except EncodeError:
            missing = ", ".join(message.FindInitializationErrors())
            raise ProtocolError(
                f"Riemann Msg of {len(data)} bytes lacks required fields: {missing}; "
                "every attribute needs a key (Riemann rejects such a message too)"
            ) from None
    # Fields riemann.proto does not know are dropped here, as Riemann's
    # decoding into its event map drops them: an indexed event must neither
    # hold them (a 1 MB unknown field would stay in memory as long as the
    # event) nor pass them on in replies and forwards. It costs the pure-Python
    # codec about 0.15 us per event (tests/benchmarks/bench_codec.py); the C
    # parser never keeps them.
    _discard_unknown(message)
    # Both special classes read exactly, field by field; the usual message's
    # events skip presence checks that cannot change the answer.
    event_class: type[WireEvent] = (
        _ZeroIntegerWireEvent if _ZERO_SINT64 in data else _FastWireEvent
    )
    for marker in _OVERRIDE_MARKERS:
        if marker in data:
            event_class = _OverridingWireEvent
            break
    # Bypassing __init__ saves a third of the per-event cost of decoding.
    new, set_pb, set_now = object.__new__, _set_pb, _set_now
    events: list[WireEvent] = []
    append = events.append
    for pb in message.events:
        event = new(event_class)
        set_pb(event, pb)
        set_now(event, now)
        append(event)
    query = message.query.string if message.HasField("query") else None
    return Decoded(cast(list[Event], events), query)


def decode_datagram(
    data: bytes | bytearray | memoryview, now: float, max_size: int = DEFAULT_MAX_DATAGRAM
) -> Decoded:
    """Decode one UDP datagram: a ``Msg`` without a length prefix (spec §1.6).

    ``max_size`` is the receive buffer size; a datagram that fills it exactly
    was most likely cut short, and the error says so.
    """
    try:
        return decode_message(data, now)
    except ProtocolError as error:
        if len(data) >= max_size:
            raise ProtocolError(
                f"{error}; the datagram filled the whole {max_size}-byte receive buffer, so "
                "it was probably truncated: send fewer events per datagram, raise max_size, "
                "or use TCP"
            ) from None
        raise


def _preview(data: bytes | bytearray) -> str:
    shown = bytes(data[:16])
    return f"{shown!r}..." if len(data) > 16 else repr(shown)


# One small loader per field: reading a value first and asking for presence
# only when it reads as empty or zero is cheaper than asking first.


def _string_loader(name: str) -> Callable[[WireEvent], str | None]:
    read = operator.attrgetter(name)  # as fast as pb.host written out

    def load(event: WireEvent) -> str | None:
        pb = event._pb
        value: str | bytes = read(pb)
        if value.__class__ is str:
            return value if value or pb.HasField(name) else None
        return _text(value)

    load.__name__ = f"_load_{name}"
    return load


_load_host = _string_loader("host")
_load_service = _string_loader("service")
_load_state = _string_loader("state")
_load_description = _string_loader("description")


def _load_metric(event: WireEvent) -> int | float | None:
    pb = event._pb
    integer: int = pb.metric_sint64
    if integer or pb.HasField("metric_sint64"):
        return integer
    number: float = pb.metric_d
    if number or pb.HasField("metric_d"):
        return number
    number = pb.metric_f
    if number or pb.HasField("metric_f"):
        return number
    return None


def _load_metric_without_zero_integers(event: WireEvent) -> int | float | None:
    # Only for messages whose bytes hold no metric_sint64 of 0 (see
    # decode_message): then an integer that reads 0 is absent, and a float
    # metric costs no presence check at all.
    pb = event._pb
    integer: int = pb.metric_sint64
    if integer:
        return integer
    number: float = pb.metric_d
    if number:
        return number
    return _load_metric(event)


def _load_time(event: WireEvent) -> float:
    pb = event._pb
    micros: int = pb.time_micros
    if micros or pb.HasField("time_micros"):
        # int / int rounds correctly; micros / 1e6 would round micros to a
        # double first and read 576460752305 s as 576460752304.9999.
        return micros / 1_000_000
    seconds: int = pb.time
    if seconds or pb.HasField("time"):
        return seconds
    return event._now


def _load_ttl(event: WireEvent) -> float | None:
    pb = event._pb
    ttl: float = pb.ttl
    return ttl if ttl or pb.HasField("ttl") else None


def _text(value: str | bytes) -> str:
    # upb hands back bytes for a proto2 string that is not UTF-8. Riemann's
    # Java protobuf reads such a string with U+FFFD in place of bad bytes, and
    # streams (and re-encoding) need a str.
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")


def _load_tags(event: WireEvent) -> tuple[str, ...]:
    tags = tuple(event._pb.tags)
    if bytes in map(type, tags):
        return tuple(map(_text, tags))
    return tags


def _load_attributes(event: WireEvent) -> Mapping[str, str]:
    attributes = {
        attribute.key: attribute.value
        for attribute in event._pb.attributes
        if attribute.key not in _DROPPED_KEYS
    }
    if not attributes:
        return _NO_ATTRIBUTES
    if bytes in map(type, attributes) or bytes in map(type, attributes.values()):
        attributes = {_text(key): _text(value) for key, value in attributes.items()}
    return attributes


def _overridden(name: str, load: Callable[[WireEvent], str | None]) -> Callable[
    [WireEvent], str | None
]:
    """Riemann applies attributes after base fields: the last attribute ``name`` wins."""

    def load_overridden(event: WireEvent) -> str | None:
        value = load(event)
        for attribute in event._pb.attributes:
            if attribute.key == name:
                value = _text(attribute.value)
        return value

    return load_overridden


class WireEvent(LazyEvent):
    """An event that reads its fields from a decoded protobuf ``Event`` on demand.

    Fields follow spec §1.2: absent strings are None, the metric is the first
    present of ``metric_sint64``, ``metric_d`` and ``metric_f``, and the time
    is ``time_micros / 1e6``, else ``time``, else the receive time given to
    :func:`decode_message`. Streams cannot tell it from an :class:`Event`;
    ``evolve`` returns a plain ``Event``, so a ``WireEvent`` is always exactly
    what arrived, and :func:`encode_event` forwards its message as is (or
    completed, see there).

    The scalar fields are properties that read the message on every access:
    that costs about a third of filling the slot through ``LazyEvent``, whose
    first read of an empty slot raises and catches an AttributeError. Tags and
    attributes are containers, built once on first read and kept in the slot,
    so that ``event.tags is event.tags``.
    """

    __slots__ = ("_now", "_pb")

    _pb: Any
    _now: float

    def __init__(self, pb: Any, now: float) -> None:
        _set_pb(self, pb)
        _set_now(self, now)

    host = property(_load_host)
    service = property(_load_service)
    state = property(_load_state)
    description = property(_load_description)
    metric = property(_load_metric)
    time = property(_load_time)
    ttl = property(_load_ttl)

    def _load(self, name: str) -> Any:
        return getattr(type(self), name).fget(self) if name in _SCALARS else _CONTAINERS[name](self)


_SCALARS = frozenset({"host", "service", "state", "description", "metric", "time", "ttl"})
_CONTAINERS = {"tags": _load_tags, "attributes": _load_attributes}
_set_pb = WireEvent.__dict__["_pb"].__set__
_set_now = WireEvent.__dict__["_now"].__set__


class _OverridingWireEvent(WireEvent):
    """A WireEvent from a message in which attributes may overwrite base fields.

    Scanning attributes on every string read is wasted on the usual message,
    so :func:`decode_message` picks this class only when the raw bytes show
    an attribute key that could override.
    """

    __slots__ = ()

    metric = property(_load_metric)
    host = property(_overridden("host", _load_host))
    service = property(_overridden("service", _load_service))
    state = property(_overridden("state", _load_state))
    description = property(_overridden("description", _load_description))


class _FastWireEvent(WireEvent):
    """A WireEvent from a message without any explicit ``metric_sint64 = 0``."""

    __slots__ = ()

    metric = property(_load_metric_without_zero_integers)


class _ZeroIntegerWireEvent(WireEvent):
    """A WireEvent from a message that may carry ``metric_sint64 = 0``."""

    __slots__ = ()


#: The bytes of an Event field 13 (metric_sint64, varint) holding 0.
_ZERO_SINT64 = b"\x68\x00"
_UNCHANGED = (WireEvent, _FastWireEvent, _ZeroIntegerWireEvent, _OverridingWireEvent)


# Encoding ----------------------------------------------------------------


def encode_event(event: Event) -> Any:
    """The protobuf ``Event`` for ``event``, written as Riemann writes it (spec §1.3).

    A :class:`WireEvent` is returned as the message it was decoded from, so
    forwarding and query replies do not rebuild what arrived; a copy is made
    only to fill in what Riemann always writes and the sender left out: the
    receive time, and ``metric_f`` beside a ``metric_sint64`` or ``metric_d``.

    >>> pb = encode_event(Event(service="cpu", metric=3, time=1.5, tags=("a",), env="prod"))
    >>> print(pb, end="")
    time: 1
    service: "cpu"
    tags: "a"
    attributes {
      key: "env"
      value: "prod"
    }
    time_micros: 1500000
    metric_sint64: 3
    metric_f: 3
    """
    if type(event) in _UNCHANGED:
        return _reuse(cast(WireEvent, event))
    pb = _proto.Event()
    _encode_into(pb, event)
    return pb


def _reuse(event: WireEvent) -> Any:
    pb = event._pb
    timed = pb.time_micros or pb.time or pb.HasField("time_micros") or pb.HasField("time")
    # Riemann always writes metric_f, and clients such as bernhard read no
    # other metric field; most senders write it too, so this is usually the
    # one truthy read.
    has_float = pb.metric_f or pb.HasField("metric_f") or not (
        pb.HasField("metric_sint64") or pb.HasField("metric_d"))
    if timed and has_float:
        return pb
    # Complete a copy, leaving alone the message the event reads from.
    complete = _proto.Event()
    complete.CopyFrom(pb)
    if not timed:
        # It arrived without a time and was streamed with the receive time.
        _set_time(complete, event._now)
    if not has_float:
        _set_metric_f(complete, _load_metric(event))
    return complete


def _encode_into(pb: Any, event: Event) -> None:
    try:
        _fill(pb, event)
    except (TypeError, ValueError, OverflowError) as error:
        raise _encoding_error(event, error) from None


def _fill(pb: Any, event: Event) -> None:
    value: Any = event.host
    if value is not None:
        pb.host = value
    value = event.service
    if value is not None:
        pb.service = value
    value = event.state
    if value is not None:
        pb.state = value
    value = event.description
    if value is not None:
        pb.description = value
    value = event.metric
    if value is not None:
        _set_metric(pb, value)
    value = event.time
    if value is not None:
        _set_time(pb, value)
    value = event.ttl
    if value is not None:
        pb.ttl = value
    value = event.tags
    if value:
        pb.tags.extend(value)
    value = event.attributes
    if value:
        add = pb.attributes.add
        for key, item in value.items():
            if item is not None:
                add(key=key, value=_attribute_text(item))


def _set_metric(pb: Any, metric: Any) -> None:
    if type(metric) is not float and isinstance(metric, int):
        if _INT64_MIN <= metric <= _INT64_MAX:
            pb.metric_sint64 = metric if type(metric) is int else int(metric)
        else:
            pb.metric_d = _int_as_double(metric)
        _set_metric_f(pb, metric)
        return
    if type(metric) is not float and not isinstance(metric, numbers.Real):
        raise TypeError(f"metric must be a real number, not {type(metric).__name__}")
    number = float(metric)
    pb.metric_d = number
    _set_metric_f(pb, number)


def _set_metric_f(pb: Any, metric: Any) -> None:
    # NaN fails both comparisons yet passes Riemann's float32 range check.
    if -_FLOAT32_MAX <= metric <= _FLOAT32_MAX or metric != metric:
        pb.metric_f = metric


def _int_as_double(metric: int) -> float:
    try:
        return float(metric)
    except OverflowError:  # beyond double range: Java's double conversion saturates
        return float("inf") if metric > 0 else float("-inf")


def _set_time(pb: Any, time: Any) -> None:
    if type(time) is int:
        micros = time * 1_000_000
        seconds = time
    else:
        time = float(time)
        # Whole seconds and the fraction (both exact) are scaled apart: time * 1e6
        # in one step rounds to a double and is off by up to 64 µs past 2**53 µs.
        whole = int(time)
        micros = whole * 1_000_000 + round((time - whole) * 1e6)
        seconds = micros // 1_000_000 if micros >= 0 else -(-micros // 1_000_000)
    if _INT64_MIN <= micros <= _INT64_MAX:
        pb.time_micros = micros
    # Beyond ±292,000 years only whole seconds fit on the wire; past int64
    # seconds, assigning raises and the caller reports the bad time.
    pb.time = seconds


def _attribute_text(value: Any) -> str:
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


_EXPECTED = {
    "host": "a str",
    "service": "a str",
    "state": "a str",
    "description": "a str",
    "metric": "an int or float",
    "time": "finite seconds since the epoch, as an int or float",
    "ttl": "a float",
    "tags": "a tuple of str",
    "attributes": "a mapping of str keys to values",
}


def _encoding_error(event: Event, error: Exception) -> ValueError:
    """Find, the slow way and only on failure, which field could not be encoded."""
    for name, expected in _EXPECTED.items():
        value = getattr(event, name)
        if value is None or value == () or (name == "attributes" and not value):
            continue
        try:
            _fill(_proto.Event(), Event(**{name: value}))
        except (TypeError, ValueError, OverflowError) as field_error:
            return ValueError(
                f"cannot encode {name}={value!r} for Riemann ({field_error}): {name} must be "
                f"{expected} in protobuf's range; the event was {event!r}"
            )
    return ValueError(f"cannot encode {event!r} for Riemann: {error}")


def _messages(events: Iterable[Event]) -> Any:
    message = _proto.Msg()
    if events:
        pbs = message.events
        add = pbs.add
        for event in events:
            if type(event) in _UNCHANGED:
                # Its message was decoded without unknown fields (decode_message).
                pbs.append(_reuse(cast(WireEvent, event)))
            else:
                _encode_into(add(), event)
    return message


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length as 4 big-endian bytes (spec §1.4).

    >>> frame(b"abc")
    b'\\x00\\x00\\x00\\x03abc'
    """
    if len(payload) > _MAX_PREFIX:
        raise ValueError(
            f"a {len(payload)}-byte payload does not fit Riemann's 4-byte length prefix; "
            "send the events in several messages"
        )
    return _pack_prefix(len(payload)) + payload


def encode_reply(ok: bool = True, error: str | None = None, events: Iterable[Event] = ()) -> bytes:
    """A framed response ``Msg``: ``ok``, the ``error`` if any, and query results.

    >>> encode_reply(ok=False, error="no index")
    b'\\x00\\x00\\x00\\x0c\\x10\\x00\\x1a\\x08no index'
    """
    if ok and error is None and not events:
        return OK_REPLY
    fast = _encoded_events(events)
    message = _messages(events) if fast is None else _proto.Msg()
    message.ok = ok
    if error is not None:
        message.error = error
    return frame(message.SerializeToString() + (fast or b""))


def encode_request(
    events: Iterable[Event] = (), query: str | None = None, *, framed: bool = True
) -> bytes:
    """A request ``Msg`` carrying ``events`` and optionally a ``query``.

    Framed for TCP by default; ``framed=False`` gives a UDP datagram.

    >>> encode_request(query="true")
    b'\\x00\\x00\\x00\\x08*\\x06\\n\\x04true'
    """
    fast = _encoded_events(events)
    message = _messages(events) if fast is None else _proto.Msg()
    if query is not None:
        message.query.string = query
    payload: bytes = message.SerializeToString() + (fast or b"")
    return frame(payload) if framed else payload


def _encoded_events(events: Iterable[Event]) -> bytes | None:
    """The C encoder's ``events`` fields for a list of plain events, else None.

    protobuf writes a Msg's fields in field-number order and ``events`` is
    the last, so these bytes go after the rest of the serialized message.
    """
    if _fast_encode is None or not events or not isinstance(events, list | tuple):
        return None
    return _fast_encode(events)


#: The framed ``Msg{ok: true}`` that acknowledges a request; a server that has
#: handled n requests from one read can send ``OK_REPLY * n`` in one write.
OK_REPLY: bytes = frame(_proto.Msg(ok=True).SerializeToString())


# Framing -----------------------------------------------------------------


class FrameDecoder:
    """Splits a TCP byte stream into Riemann frames; does no I/O itself.

    Feed it whatever the socket returned, then take every complete payload:

    >>> decoder = FrameDecoder(max_frame=1024)
    >>> decoder.feed(frame(b"one") + frame(b"two") + frame(b"three")[:5])
    >>> list(decoder.frames())
    [b'one', b'two']
    >>> decoder.buffered
    5

    A length prefix above ``max_frame`` raises :class:`ProtocolError` as soon
    as its 4 bytes are in, without waiting for the body:

    >>> decoder.feed(b"hree" + b"\\x7f\\xff\\xff\\xf0")
    >>> decoder.next_frame()
    b'three'
    >>> decoder.next_frame()  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ProtocolError: frame length prefix 2147483632 (bytes 7fff fff0) exceeds max_frame=1024; ...
    """

    __slots__ = ("_buffer", "_offset", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if type(max_frame) is not int or not 0 < max_frame <= _MAX_PREFIX:
            raise ValueError(
                f"max_frame must be an int from 1 to {_MAX_PREFIX} bytes, got {max_frame!r}; "
                f"for example FrameDecoder(max_frame={DEFAULT_MAX_FRAME})"
            )
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._offset = 0  # start of the first payload not yet returned

    def __repr__(self) -> str:
        return f"FrameDecoder(max_frame={self.max_frame})"

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame (a partial frame at EOF)."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes from the stream; an empty ``data`` is allowed and changes nothing."""
        buffer = self._buffer
        offset = self._offset
        # Consumed bytes are dropped only here, so returning n frames from one
        # read moves the leftover partial frame at most once, not n times.
        if offset:
            if offset == len(buffer):
                buffer.clear()
                self._offset = 0
            elif offset >= _COMPACT_AT or offset * 2 >= len(buffer):
                del buffer[:offset]
                self._offset = 0
        buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete payload, or None until more bytes are fed."""
        buffer = self._buffer
        start = self._offset
        available = len(buffer) - start
        if available < 4:
            return None
        (length,) = _unpack_prefix(buffer, start)
        if length > self.max_frame:
            prefix = bytes(buffer[start:start + 4]).hex(" ", 2)
            raise ProtocolError(
                f"frame length prefix {length} (bytes {prefix}) exceeds max_frame="
                f"{self.max_frame}; the peer is not speaking Riemann's length-prefixed "
                "protocol, or sends bigger messages than allowed: raise max_frame or send "
                "fewer events per message"
            )
        end = start + 4 + length
        if end > len(buffer):
            return None
        with memoryview(buffer) as view:
            payload = bytes(view[start + 4:end])
        self._offset = end
        return payload

    def frames(self) -> Iterator[bytes]:
        """Every complete payload now buffered, in order."""
        next_frame = self.next_frame
        while (payload := next_frame()) is not None:
            yield payload
