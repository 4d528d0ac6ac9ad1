"""Hypothesis fuzzing of what any client controls (issue 10): byte streams, messages cut into
pieces, and query text. The refusals are the documented ones, never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Event
from streams._query import QuerySyntaxError, compile_query
from streams.testing import events
from transport._codec import FrameDecoder, ProtocolError, decode_message, encode_request
from transport._slices import TooManyEvents, message_pieces

SAMPLES = [Event(), Event(host="web1", service="cpu", state="ok", metric=0.5, time=1,
                          tags=("a",), x="y", ttl=10), Event(metric=float("nan"), time=-1)]

# Query text built from the grammar's own pieces, so most of it gets past the lexer.
_TOKENS = st.sampled_from([
    " ", "(", ")", "and", "or", "not", "tagged", "=", "!=", "<", "<=", ">", ">=", "=~", "~=",
    "host", "service", "metric", "tags", "x", "nil", "null", "true", "false", "1", "-2.5e3",
    "12N", "0x1F", "Infinity", "NaN", '"a"', '"%a%b"', '"(a+)+"', '"\\\\d"', '"\\u00e9"', '"',
    "\\", "~", "!", ",", "'",
])
query_texts = st.one_of(st.lists(_TOKENS, max_size=20).map("".join), st.text(max_size=40))


@settings(max_examples=400)
@given(query_texts)
def test_any_query_text_compiles_or_is_refused_with_a_syntax_error(text: str) -> None:
    try:
        query = compile_query(text)
    except QuerySyntaxError as error:
        assert "column" in str(error)
        return
    for event in SAMPLES:
        assert query(event) in (True, False)
    assert str(compile_query(str(query.ast)).ast) == str(query.ast)  # NaN != NaN


@given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=10))
def test_any_byte_stream_however_split_gives_frames_or_a_protocol_error(
        data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame=1 << 16)
    position = 0
    try:
        for size in [*cuts, len(data)]:
            decoder.feed(data[position:position + size])
            position += size
            for payload in decoder.frames():
                for event in decode_message(payload, 0.0).events:
                    event.as_dict()
    except ProtocolError:
        pass


@given(st.lists(events(), max_size=12), st.one_of(st.none(), st.just("true")),
       st.integers(1, 5))
def test_a_message_cut_into_pieces_decodes_to_the_same_events_and_query(
        sent: list[Event], query: str | None, per_piece: int) -> None:
    payload = encode_request(sent, query, framed=False)
    whole = decode_message(payload, 0.0)
    pieces = [decode_message(piece, 0.0) for piece in message_pieces(payload, per_piece)]
    assert [e.as_dict() for p in pieces for e in p.events] == [
        e.as_dict() for e in whole.events]
    assert all(len(p.events) <= per_piece for p in pieces)
    assert [p.query for p in pieces if p.query is not None] == ([] if query is None else [query])
    if len(sent) > 2:
        try:
            next(message_pieces(payload, per_piece, max_events=2))
        except TooManyEvents as error:
            assert error.count == len(sent)
        else:
            raise AssertionError("max_events was not enforced")
