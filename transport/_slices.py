"""Cut one large serialized ``Msg`` into smaller ones, so it is decoded and streamed in turns.

A ``Msg`` is a run of fields, and protobuf reads concatenated messages as one
whose repeated fields hold all of theirs. Cutting between top-level fields
therefore gives pieces that decode to the same events, in order. The whole
message is parsed once first (in C, a small part of decoding it), so a
malformed one is refused before any of it is streamed; then only field
headers are read, a piece at a time, and the caller yields between pieces.

>>> from streams import Event
>>> from transport._codec import decode_message, encode_request
>>> payload = encode_request([Event(service=str(n), time=1) for n in range(5)], "true",
...                          framed=False)
>>> pieces = list(message_pieces(payload, 2))
>>> [[e.service for e in decode_message(p, 0).events] for p in pieces]
[['0', '1'], ['2', '3'], ['4']]
>>> [decode_message(p, 0).query for p in pieces]
[None, None, 'true']
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import DecodeError

from ._proto import Msg

__all__ = ["TooManyEvents", "message_pieces"]


class TooManyEvents(ValueError):
    """A message with more events than allowed; ``count`` says how many it has."""

    def __init__(self, count: int, max_events: int) -> None:
        self.count = count
        super().__init__(f"the message has {count} events, more than max_events={max_events}: "
                         f"send fewer events per message, or raise the server's max_events")

_EVENTS_KEY = 6 << 3 | 2  # Msg.events (riemann.proto), length-delimited


def message_pieces(payload: bytes, events_per_piece: int,
                   max_events: int | None = None) -> Iterator[bytes]:
    """The payload cut into Msgs of at most ``events_per_piece`` events each.

    Fields other than events go with the last piece, so a query is answered
    after every event was streamed. A payload that does not parse comes back
    whole, for the decoder to report. One with more than ``max_events`` events
    raises :class:`TooManyEvents` before any piece is given.
    """
    try:
        count = len(Msg.FromString(payload).events)
    except DecodeError:
        yield payload
        return
    if max_events is not None and count > max_events:
        raise TooManyEvents(count, max_events)
    end = len(payload)
    others: list[bytes] = []
    start = position = events = 0
    while position < end:
        field_start = position
        key, position = _varint(payload, position)
        wire_type = key & 7
        if wire_type == 2:
            length, position = _varint(payload, position)
            position += length
        elif wire_type == 0:
            _, position = _varint(payload, position)
        else:  # parsed above, so 1 (8 bytes) or 5 (4 bytes)
            position += 8 if wire_type == 1 else 4
        if key == _EVENTS_KEY:
            events += 1
            if events == events_per_piece:
                yield payload[start:position]
                start, events = position, 0
        else:
            # Rare (a query sent with events): it moves to the end.
            if field_start > start:
                yield payload[start:field_start]
                events = 0
            others.append(payload[field_start:position])
            start = position
    yield payload[start:end] + b"".join(others)


def _varint(data: bytes, position: int) -> tuple[int, int]:
    byte = data[position]
    if byte < 0x80:  # nearly every key and event length
        return byte, position + 1
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
