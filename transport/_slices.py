"""Cut one large serialized ``Msg`` into smaller ones, so it is decoded and streamed in turns.

A ``Msg`` is a run of fields, and protobuf reads concatenated messages as one
whose repeated fields hold all of theirs. Cutting between top-level fields
therefore gives pieces that decode to the same events, in order. Only the
field headers are read here (no event is parsed), and the caller yields
between pieces.

>>> from streams import Event
>>> from transport._codec import decode_message, encode_request
>>> payload = encode_request([Event(service=str(n), time=1) for n in range(5)], "true",
...                          framed=False)
>>> pieces = message_pieces(payload, 2)
>>> [[e.service for e in decode_message(p, 0).events] for p in pieces]
[['0', '1'], ['2', '3'], ['4']]
>>> [decode_message(p, 0).query for p in pieces]
[None, None, 'true']
"""

from __future__ import annotations

__all__ = ["message_pieces"]

_EVENTS_KEY = 6 << 3 | 2  # Msg.events (riemann.proto), length-delimited


def message_pieces(payload: bytes, events_per_piece: int) -> list[bytes]:
    """The payload cut into Msgs of at most ``events_per_piece`` events each.

    Fields other than events go with the last piece, so a query is answered
    after every event was streamed. A payload that does not walk as protobuf
    fields comes back whole, for the decoder to report, so a malformed message
    is never half streamed.
    """
    end = len(payload)
    cuts: list[int] = []
    others: list[tuple[int, int]] = []
    position = events = 0
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
                return [payload]
            if key == _EVENTS_KEY:
                events += 1
                if events == events_per_piece:
                    cuts.append(position)
                    events = 0
            else:
                others.append((field_start, position))
    except IndexError:
        return [payload]
    if position != end or (not cuts and not others):
        return [payload]
    if others:
        # Rare (a query sent with events): the other fields move to the end.
        events_only = bytearray()
        last = 0
        for start, stop in others:
            events_only += payload[last:start]
            last = stop
        events_only += payload[last:]
        moved = message_pieces(bytes(events_only), events_per_piece)
        moved[-1] += b"".join(payload[start:stop] for start, stop in others)
        return moved
    pieces: list[bytes] = []
    start = 0
    for cut in cuts:
        pieces.append(payload[start:cut])
        start = cut
    if start < end:
        pieces.append(payload[start:end])
    return pieces


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
