"""Cut one large serialized ``Msg`` into smaller ones, so it is decoded and streamed in turns.

A ``Msg`` is a run of fields, and protobuf reads concatenated messages as one
whose repeated fields hold all of theirs. Cutting between top-level fields
therefore gives pieces that decode to the same events, in order. Every piece
is parsed once first (in C, a small part of decoding it), so a malformed
message is refused before any of it is streamed; the caller lets the loop run
between pieces, in that check and while it decodes and streams them.

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

from collections.abc import Generator, Iterator

from google.protobuf.message import DecodeError

from ._proto import Msg

__all__ = ["TooManyEvents", "check_pieces", "cut_message", "message_pieces"]


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
    checking = check_pieces(payload, events_per_piece, max_events)
    try:
        while True:
            next(checking)
    except StopIteration as done:
        parses = done.value
    if not parses:
        yield payload
        return
    yield from cut_message(payload, events_per_piece)


def check_pieces(payload: bytes, events_per_piece: int,
                 max_events: int | None = None) -> Generator[None, None, bool]:
    """Whether every piece of ``payload`` parses, pausing (yielding) after each piece.

    Parsing a large message whole in one call would hold the event loop for
    as long as it takes (tens of milliseconds for 100,000 events on a busy
    machine); a piece at a time, the caller lets the loop run when its turn
    is over. Raises :class:`TooManyEvents` once the count passes ``max_events``.
    """
    count = 0
    try:
        for piece, events in _cut(payload, events_per_piece):
            if max_events is not None and count + events > max_events:
                count += events  # past the limit only counted, for the error to say how many
            else:
                count += len(Msg.FromString(piece).events)
            yield
    except DecodeError:
        if max_events is None or count <= max_events:
            return False
    if max_events is not None and count > max_events:
        raise TooManyEvents(count, max_events)
    return True


def cut_message(payload: bytes, events_per_piece: int) -> Iterator[bytes]:
    """The pieces, cut between top-level fields by reading field headers only.

    Raises ``DecodeError`` on bytes that are not a run of protobuf fields
    (a group, a field running past the end): :func:`check_pieces` then
    leaves the payload to the decoder.
    """
    for piece, _ in _cut(payload, events_per_piece):
        yield piece


def _cut(payload: bytes, events_per_piece: int) -> Iterator[tuple[bytes, int]]:
    """:func:`cut_message`, with the number of events in each piece."""
    end = len(payload)
    others: list[bytes] = []
    start = position = events = 0
    try:
        while position < end:
            field_start = position
            key, position = _varint(payload, position)
            wire_type = key & 7
            if wire_type == 2:
                length, position = _varint(payload, position)
                position += length
            elif wire_type == 0:
                _, position = _varint(payload, position)
            elif wire_type in (1, 5):
                position += 8 if wire_type == 1 else 4
            else:
                raise DecodeError(f"wire type {wire_type} at byte {field_start}")
            if position > end:
                raise DecodeError(f"a field at byte {field_start} runs past the end")
            if key == _EVENTS_KEY:
                events += 1
                if events == events_per_piece:
                    yield payload[start:position], events
                    start, events = position, 0
            else:
                # Rare (a query sent with events): it moves to the end.
                if field_start > start:
                    yield payload[start:field_start], events
                    events = 0
                others.append(payload[field_start:position])
                start = position
    except IndexError:  # a varint cut by the end
        raise DecodeError("a field header runs past the end") from None
    yield payload[start:end] + b"".join(others), events


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
