"""The wire codec: spec §1.2 decoding, §1.3 encoding, §1.4 framing.

Framing is tested the h11 way: the same frames must come out however the
byte stream is split.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import struct
import subprocess
import sys
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams._event import Event
from transport import _proto
from transport._codec import (
    DEFAULT_MAX_FRAME,
    OK_REPLY,
    FrameDecoder,
    ProtocolError,
    WireEvent,
    decode_datagram,
    decode_message,
    encode_event,
    encode_reply,
    encode_request,
    frame,
)

NOW = 1_700_000_000.25


def wire(*events: dict[str, Any], **message: Any) -> bytes:
    """A serialized Msg built field by field, as another client would send it."""
    msg = _proto.Msg(**message)
    for fields in events:
        fields = dict(fields)
        attributes = fields.pop("attributes", ())
        pb = msg.events.add(**fields)
        for attribute in attributes:
            pb.attributes.add(**attribute)
    return bytes(msg.SerializePartialToString())


def decode_one(**fields: Any) -> WireEvent:
    [event] = decode_message(wire(fields), NOW).events
    return event


# Decoding (§1.2) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "name", "expected"),
    [
        ({"host": "web1"}, "host", "web1"),
        ({}, "host", None),
        ({"host": ""}, "host", ""),  # present though empty
        ({"service": "cpu"}, "service", "cpu"),
        ({"service": ""}, "service", ""),
        ({}, "service", None),
        ({"state": "ok"}, "state", "ok"),
        ({}, "state", None),
        ({"description": "🔥 héllo"}, "description", "🔥 héllo"),
        ({"description": ""}, "description", ""),
        ({}, "description", None),
        ({"host": "ホスト"}, "host", "ホスト"),
    ],
)
def test_decode_strings(fields: dict[str, Any], name: str, expected: str | None) -> None:
    assert getattr(decode_one(**fields), name) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"metric_f": 1.23}, 1.2300000190734863),  # float32, widened
        ({"metric_d": 1.23}, 1.23),
        ({"metric_sint64": 7}, 7),
        ({"metric_sint64": -(2**63)}, -(2**63)),
        ({"metric_sint64": 0}, 0),
        ({"metric_d": 0.0}, 0.0),
        ({"metric_f": 0.0}, 0.0),
        ({"metric_sint64": 3, "metric_d": 4.5, "metric_f": 5.5}, 3),
        ({"metric_sint64": 0, "metric_d": 4.5, "metric_f": 5.5}, 0),
        ({"metric_d": 4.5, "metric_f": 5.5}, 4.5),
        ({"metric_d": 0.0, "metric_f": 5.5}, 0.0),
        ({"metric_f": 5.5}, 5.5),
        ({"metric_d": math.inf}, math.inf),
    ],
)
def test_decode_metric_precedence(fields: dict[str, Any], expected: Any) -> None:
    metric = decode_one(**fields).metric
    assert metric == expected and type(metric) is type(expected)
    # The same event beside others whose integers are absent or non-zero reads the same.
    beside = wire({"metric_d": 2.5}, fields, {"metric_sint64": 9})
    assert decode_message(beside, NOW).events[1].metric == expected
    assert type(metric) is type(expected)


def test_decode_nan_metric() -> None:
    assert math.isnan(decode_one(metric_d=math.nan, metric_f=1.0).metric)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"time_micros": 1_500_000, "time": 9}, 1.5),
        ({"time_micros": 0, "time": 9}, 0.0),
        ({"time_micros": -1_500_000}, -1.5),
        ({"time_micros": 576460752305_000000}, 576460752305.0),  # beyond 2**53 µs
        ({"time": 9}, 9),
        ({"time": 0}, 0),
        ({}, NOW),  # receive time: every decoded event has a time
    ],
)
def test_decode_time_precedence(fields: dict[str, Any], expected: float) -> None:
    time = decode_one(**fields).time
    assert time == expected
    assert type(time) is type(expected)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, None), ({"ttl": 0.0}, 0.0), ({"ttl": 60}, 60.0), ({"ttl": 0.1}, 0.10000000149011612)],
)
def test_decode_ttl(fields: dict[str, Any], expected: float | None) -> None:
    assert decode_one(**fields).ttl == expected


def test_decode_tags() -> None:
    assert decode_one().tags == ()
    event = decode_one(tags=["b", "a", "b", "ünï"])
    assert event.tags == ("b", "a", "b", "ünï")
    assert event.tags is event.tags  # built once


@pytest.mark.parametrize(
    ("fields", "expected_fields", "expected_attributes"),
    [
        ({"attributes": [{"key": "env", "value": "prod"}]}, {}, {"env": "prod"}),
        ({"attributes": [{"key": "env"}]}, {}, {"env": ""}),  # no value reads as ""
        ({"attributes": [{"key": "ns/name", "value": "x"}]}, {}, {"ns/name": "x"}),
        ({"attributes": [{"key": "ключ", "value": "значение"}]}, {}, {"ключ": "значение"}),
        ({"attributes": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}, {},
         {"a": "2"}),
        # dropped: they would clash with fields of another type
        (
            {"metric_d": 2.0, "time": 5, "ttl": 3.0, "tags": ["t"], "attributes": [
                {"key": "tags", "value": "x"}, {"key": "time", "value": "x"},
                {"key": "ttl", "value": "x"}, {"key": "metric", "value": "x"},
            ]},
            {"metric": 2.0, "time": 5, "ttl": 3.0, "tags": ("t",)},
            {},
        ),
        # applied after the base fields, so they win
        (
            {"host": "base", "service": "s", "attributes": [
                {"key": "host", "value": "attr"}, {"key": "state", "value": "critical"},
                {"key": "description", "value": "d"}, {"key": "other", "value": "o"},
            ]},
            {"host": "attr", "service": "s", "state": "critical", "description": "d"},
            {"other": "o"},
        ),
        ({"host": "base", "attributes": [{"key": "host"}]}, {"host": ""}, {}),
        (
            {"service": "base", "attributes": [
                {"key": "service", "value": "one"}, {"key": "service", "value": "two"},
            ]},
            {"service": "two"},
            {},
        ),
    ],
)
def test_decode_attributes(
    fields: dict[str, Any], expected_fields: dict[str, Any], expected_attributes: dict[str, str]
) -> None:
    event = decode_one(**fields)
    for name, value in expected_fields.items():
        assert getattr(event, name) == value, name
    assert dict(event.attributes) == expected_attributes
    for key, value in expected_attributes.items():
        assert event.get(key) == value


def test_override_applies_only_to_the_event_carrying_it() -> None:
    data = wire(
        {"host": "plain"},
        {"host": "base", "attributes": [{"key": "host", "value": "attr"}]},
        {"service": "s", "attributes": [{"key": "env", "value": "prod"}]},
    )
    events = decode_message(data, NOW).events
    assert [e.host for e in events] == ["plain", "attr", None]
    assert events[2].get("env") == "prod"


def test_decoded_message_fields() -> None:
    decoded = decode_message(wire({"host": "a"}, {"host": "b"}), NOW)
    assert [e.host for e in decoded.events] == ["a", "b"]
    assert decoded.query is None
    assert decode_message(b"", NOW) == ([], None)
    assert decode_message(wire(query={"string": "host = nil"}), NOW).query == "host = nil"
    assert decode_message(wire(query={}), NOW).query == ""  # left to the query parser


def test_states_ok_and_error_of_inbound_messages_are_ignored() -> None:
    msg = _proto.Msg(ok=False, error="boom")
    msg.states.add(host="old", service="state")
    msg.events.add(host="new")
    decoded = decode_message(msg.SerializeToString(), NOW)
    assert [e.host for e in decoded.events] == ["new"]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_any_bytes_like(kind: Any) -> None:
    [event] = decode_message(kind(wire({"host": "h", "metric_sint64": 1})), NOW).events
    assert (event.host, event.metric) == ("h", 1)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",
        b"\x32\x05\x22",  # event field claims 5 bytes, 1 follows
        b"\x0a",  # truncated tag
        b"garbage that is not protobuf",
    ],
)
def test_garbage_raises_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="cannot parse a Riemann Msg"):
        decode_message(data, NOW)


def test_attribute_without_its_required_key_fails_the_whole_message() -> None:
    data = wire({"host": "fine"}, {"host": "h", "attributes": [{"value": "orphan"}]})
    with pytest.raises(ProtocolError, match=r"events\[1\]\.attributes\[0\]\.key"):
        decode_message(data, NOW)


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)


def test_truncated_datagram_error_says_it_was_probably_cut() -> None:
    whole = encode_request([Event(host="h" * 100, service="s")], framed=False)
    [event] = decode_datagram(whole, NOW).events
    assert event.host == "h" * 100
    with pytest.raises(ProtocolError, match="probably truncated"):
        decode_datagram(whole[:50], NOW, max_size=50)
    with pytest.raises(ProtocolError) as caught:
        decode_datagram(whole[:50], NOW, max_size=16384)
    assert "truncated" not in str(caught.value)


# WireEvent is an Event ------------------------------------------------------


@pytest.mark.usefixtures("pure_codec")
def test_wire_event_behaves_as_an_event() -> None:
    event = decode_one(host="h", service="s", metric_sint64=3, time=10, tags=["t"],
                       attributes=[{"key": "env", "value": "prod"}])
    plain = Event(host="h", service="s", metric=3, time=10, tags=("t",), env="prod")
    assert isinstance(event, Event)
    assert event == plain and plain == event
    assert hash(event) == hash(plain)
    assert repr(event) == repr(plain)
    assert event.as_dict() == plain.as_dict()
    assert pickle.loads(pickle.dumps(event)) == plain
    changed = event.evolve(metric=4)
    assert type(changed) is Event
    assert changed == plain.evolve(metric=4)
    with pytest.raises(AttributeError, match="immutable"):
        event.host = "x"
    with pytest.raises(AttributeError, match="custom fields"):
        event.env  # noqa: B018


# Encoding (§1.3) -----------------------------------------------------------


def fields_of(pb: Any) -> dict[str, Any]:
    return {field.name: value for field, value in pb.ListFields()}


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (3, {"metric_sint64": 3, "metric_f": 3.0}),
        (0, {"metric_sint64": 0, "metric_f": 0.0}),
        (-(2**63), {"metric_sint64": -(2**63), "metric_f": -(2.0**63)}),
        (2**63, {"metric_d": 2.0**63, "metric_f": 2.0**63}),  # beyond int64
        (2**200, {"metric_d": 2.0**200}),  # beyond float32
        (10**400, {"metric_d": math.inf}),  # beyond double: saturates like Java
        (True, {"metric_sint64": 1, "metric_f": 1.0}),
        (0.5, {"metric_d": 0.5, "metric_f": 0.5}),
        (1.23, {"metric_d": 1.23, "metric_f": 1.2300000190734863}),
        (-0.0, {"metric_d": -0.0, "metric_f": -0.0}),
        (3.4028234663852886e38, {"metric_d": 3.4028234663852886e38,
                                 "metric_f": 3.4028234663852886e38}),
        (1e300, {"metric_d": 1e300}),  # finite but beyond float32: Riemann refuses too
        (math.inf, {"metric_d": math.inf}),  # documented: treated as out of float32 range
        (-math.inf, {"metric_d": -math.inf}),
        (Fraction(1, 4), {"metric_d": 0.25, "metric_f": 0.25}),
    ],
)
def test_encode_metric(metric: Any, expected: dict[str, Any]) -> None:
    written = fields_of(encode_event(Event(metric=metric)))
    assert written == expected
    for name, value in expected.items():
        assert type(written[name]) is type(value)


def test_encode_nan_metric_writes_both_float_fields() -> None:
    written = fields_of(encode_event(Event(metric=math.nan)))
    assert set(written) == {"metric_d", "metric_f"}
    assert all(math.isnan(value) for value in written.values())


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (10, {"time": 10, "time_micros": 10_000_000}),
        (1.5, {"time": 1, "time_micros": 1_500_000}),
        (-1.5, {"time": -1, "time_micros": -1_500_000}),  # toward zero
        (0, {"time": 0, "time_micros": 0}),
        (1_700_000_000.123456, {"time": 1_700_000_000, "time_micros": 1_700_000_000_123_456}),
        (0.0000014, {"time": 0, "time_micros": 1}),  # nearest microsecond
        (2**40, {"time": 2**40, "time_micros": 2**40 * 1_000_000}),  # ints stay exact
        (576460752305.0, {"time": 576460752305, "time_micros": 576460752305_000000}),
        (-0.0000004, {"time": 0, "time_micros": 0}),
    ],
)
def test_encode_time(time: float, expected: dict[str, int]) -> None:
    assert fields_of(encode_event(Event(time=time))) == expected


def test_encode_time_rounds_so_decoded_micros_survive() -> None:
    # trunc(8.000001 * 1e6) would be 8000000: truncation loses a microsecond.
    assert 8.000001 * 1e6 < 8_000_001
    pb = encode_event(decode_one(time_micros=8_000_001).evolve(state="ok"))
    assert pb.time_micros == 8_000_001


def test_encode_strings_tags_ttl_and_attributes() -> None:
    event = Event(
        host="", service="sérvice", state="ok", description="d", ttl=0.1, tags=("a", "b"),
        attributes={"n": 4, "yes": True, "no": False, "s": "x", "f": 1.5},
    )
    pb = encode_event(event)
    assert (pb.host, pb.service, pb.state, pb.description) == ("", "sérvice", "ok", "d")
    assert pb.HasField("host")
    assert pb.ttl == pytest.approx(0.1)
    assert list(pb.tags) == ["a", "b"]
    assert {a.key: a.value for a in pb.attributes} == {
        "n": "4", "yes": "true", "no": "false", "s": "x", "f": "1.5",
    }


def test_encode_empty_event_writes_nothing() -> None:
    assert fields_of(encode_event(Event())) == {}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (Event(metric="1.5"), r"metric='1\.5'.*must be an int or float"),  # type: ignore[arg-type]
        (Event(time=math.nan), r"time=nan.*finite seconds"),
        (Event(time=math.inf), r"time=inf"),
        (Event(time=10.0**19), r"time=1e\+19 .*out of range"),  # even seconds overflow int64
        (Event(ttl="5"), r"ttl='5'.*a float"),  # type: ignore[arg-type]
        (Event(tags=("a", 1)), r"tags=\('a', 1\)"),  # type: ignore[arg-type]
        (Event(host=5), r"host=5.*a str"),  # type: ignore[arg-type]
    ],
)
def test_encode_errors_name_the_field(event: Event, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_event(event)


@pytest.mark.usefixtures("pure_codec")
def test_unchanged_wire_event_reuses_its_message() -> None:
    event = decode_one(host="h", time=5, attributes=[{"key": "host", "value": "o"}])
    assert encode_event(event) is event._pb
    rebuilt = encode_event(event.evolve(state="ok"))
    assert rebuilt is not event._pb
    assert (rebuilt.host, rebuilt.state, rebuilt.time) == ("o", "ok", 5)


@pytest.mark.usefixtures("pure_codec")
@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"metric_sint64": 42}, {"metric_sint64": 42, "metric_f": 42.0}),
        ({"metric_sint64": 0}, {"metric_sint64": 0, "metric_f": 0.0}),
        ({"metric_d": 2.5}, {"metric_d": 2.5, "metric_f": 2.5}),
        ({"metric_d": 1e300}, {"metric_d": 1e300}),  # beyond float32, as Riemann
        ({"metric_sint64": 2**62}, {"metric_sint64": 2**62, "metric_f": float(2**62)}),
        ({"metric_f": 1.5}, {"metric_f": 1.5}),
        ({"metric_d": 2.5, "metric_f": 2.5}, {"metric_d": 2.5, "metric_f": 2.5}),
        ({}, {}),
    ],
)
def test_reused_event_always_carries_metric_f_when_it_has_a_metric(
        sent: dict[str, Any], expected: dict[str, Any]) -> None:
    event = decode_one(host="h", time=5, **sent)
    pb = encode_event(event)
    assert {k: v for k, v in fields_of(pb).items() if k.startswith("metric")} == expected
    assert {k: v for k, v in fields_of(event._pb).items() if k.startswith("metric")} == sent
    # A message that already carries metric_f (or no metric) is reused as is.
    assert (pb is event._pb) == ("metric_f" in sent or not sent)


@pytest.mark.usefixtures("pure_codec")
def test_reused_event_without_time_is_sent_with_its_receive_time() -> None:
    event = decode_one(host="h")
    pb = encode_event(event)
    assert pb.time_micros == round(NOW * 1e6)
    assert pb.time == int(NOW)
    assert not event._pb.HasField("time_micros")  # the decoded message is left alone
    assert event.time == NOW


def test_encode_reply() -> None:
    assert encode_reply() == OK_REPLY == frame(_proto.Msg(ok=True).SerializeToString())
    failed = _proto.Msg.FromString(encode_reply(ok=False, error="no index")[4:])
    assert (failed.ok, failed.error, len(failed.events)) == (False, "no index", 0)
    results = [decode_one(host="a", time=1), Event(host="b", metric=2, time=3)]
    reply = _proto.Msg.FromString(encode_reply(events=results)[4:])
    assert reply.ok and not reply.HasField("error")
    assert decode_message(reply.SerializeToString(), NOW).events == results


def test_encode_request() -> None:
    events = [Event(host="a", time=1), Event(service="b", metric=0.5, time=2)]
    framed = encode_request(events, query='host = "a"')
    assert framed[:4] == struct.pack(">I", len(framed) - 4)
    assert framed[4:] == encode_request(events, query='host = "a"', framed=False)
    decoded = decode_message(framed[4:], NOW)
    assert decoded.events == events
    assert decoded.query == 'host = "a"'
    assert encode_request(iter(events)) == encode_request(events)


def test_frame() -> None:
    assert frame(b"") == b"\x00\x00\x00\x00"
    assert frame(b"x" * 300) == b"\x00\x00\x01\x2c" + b"x" * 300


# Framing (§1.4) ------------------------------------------------------------


def frames_of(chunks: list[bytes], **options: Any) -> list[bytes]:
    decoder = FrameDecoder(**options)
    out: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        out.extend(decoder.frames())
    assert decoder.buffered == 0
    return out


PAYLOADS = [b"", b"a", b"\x00" * 3, bytes(range(256)) * 5, b"last"]
STREAM = b"".join(frame(p) for p in PAYLOADS)


def test_frames_fed_whole() -> None:
    assert frames_of([STREAM]) == PAYLOADS


def test_frames_fed_byte_by_byte() -> None:
    assert frames_of([STREAM[i:i + 1] for i in range(len(STREAM))]) == PAYLOADS


@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_frames_fed_in_random_splits(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert frames_of(chunks) == PAYLOADS


def test_trailing_partial_frame_stays_buffered() -> None:
    decoder = FrameDecoder()
    partial = frame(b"incomplete")[:-3]
    decoder.feed(frame(b"one") + partial)
    assert list(decoder.frames()) == [b"one"]
    assert decoder.next_frame() is None
    assert decoder.buffered == len(partial)
    decoder.feed(b"ete")
    assert list(decoder.frames()) == [b"incomplete"]
    assert decoder.buffered == 0


def test_oversize_prefix_fails_after_four_bytes_without_waiting_for_the_body() -> None:
    decoder = FrameDecoder()
    for byte in b"\x7f\xff\xff":
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.feed(b"\xf0")
    with pytest.raises(ProtocolError, match=r"2147483632 .* exceeds max_frame=67108864"):
        decoder.next_frame()


def test_max_frame_is_inclusive_and_configurable() -> None:
    assert frames_of([frame(b"12345")], max_frame=5) == [b"12345"]
    decoder = FrameDecoder(max_frame=4)
    decoder.feed(frame(b"12345"))
    with pytest.raises(ProtocolError, match="max_frame=4"):
        decoder.next_frame()
    assert FrameDecoder().max_frame == DEFAULT_MAX_FRAME


@pytest.mark.parametrize("max_frame", [0, -1, 2**32, 1.5, "64M"])
def test_bad_max_frame_is_refused(max_frame: Any) -> None:
    with pytest.raises(ValueError, match="max_frame must be an int"):
        FrameDecoder(max_frame=max_frame)


def test_garbage_behind_a_valid_prefix_fails_in_decode() -> None:
    [payload] = frames_of([frame(b"\xff\xfenot protobuf")])
    with pytest.raises(ProtocolError):
        decode_message(payload, NOW)


def test_many_small_frames_and_a_big_message() -> None:
    big = [Event(host=f"h{i}", service="s", metric=i, time=i) for i in range(10_000)]
    request = encode_request(big)
    small = [encode_request([Event(host=str(i))]) for i in range(3_000)]
    stream = b"".join(small) + request + b"".join(small)
    expected = [s[4:] for s in small] + [request[4:]] + [s[4:] for s in small]
    assert frames_of([stream]) == expected
    assert frames_of([stream[i:i + 997] for i in range(0, len(stream), 997)]) == expected
    smalls = b"".join(small)
    assert frames_of([smalls[i:i + 1] for i in range(len(smalls))]) == expected[:3_000]
    assert decode_message(request[4:], NOW).events == big


def test_feed_accepts_bytes_like_and_empty() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"")
    decoder.feed(memoryview(frame(b"ab"))[:3])
    decoder.feed(bytearray(frame(b"ab")[3:]))
    assert list(decoder.frames()) == [b"ab"]
    assert repr(decoder) == "FrameDecoder(max_frame=67108864)"


# Properties ----------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
optional_text = st.none() | text
metrics = (
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)
# Times that survive microsecond encoding: whole seconds, or whole microseconds
# up to 2**51 µs (year 2041; from 2**52 on a double cannot tell microseconds apart).
times = st.integers(-(2**40), 2**40) | st.integers(-(2**51), 2**51).map(
    lambda us: us / 1_000_000
)
attribute_keys = text.filter(
    lambda k: k not in {"host", "service", "state", "description", "tags", "time", "ttl",
                        "metric"}
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    return Event(
        host=draw(optional_text),
        service=draw(optional_text),
        state=draw(optional_text),
        description=draw(optional_text),
        metric=draw(metrics),
        tags=draw(st.lists(text, max_size=3).map(tuple)),
        time=draw(times),
        # ttl travels as float32; draw only values it holds exactly.
        ttl=draw(st.none() | st.floats(width=32, allow_nan=False)),
        attributes=draw(st.dictionaries(attribute_keys, text, max_size=3)),
    )


@given(st.lists(events(), max_size=5), st.data())
def test_round_trip_however_the_bytes_split(sent: list[Event], data: st.DataObject) -> None:
    stream = encode_request(sent)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=5))
    bounds = [0, *sorted(cuts), len(stream)]
    [payload] = frames_of([stream[a:b] for a, b in itertools.pairwise(bounds)])
    received = decode_message(payload, NOW).events
    assert received == sent
    for got, want in zip(received, sent, strict=True):
        assert type(got.metric) is type(want.metric)
    # forwarding what arrived rebuilds nothing and changes no byte
    assert encode_request(received) == stream


@given(st.binary(max_size=64))
def test_decoding_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    try:
        decoded = decode_message(data, NOW)
    except ProtocolError:
        return
    for event in decoded.events:
        event.as_dict()


@given(events())
def test_decoded_events_read_the_same_after_evolve(event: Event) -> None:
    [received] = decode_message(encode_request([event], framed=False), NOW).events
    assert received.evolve() == event
    assert encode_event(received.evolve()).SerializeToString() == encode_event(
        event
    ).SerializeToString()


def spec_decode(pb: Any, now: float) -> dict[str, Any]:
    """Spec §1.2 written out plainly, to check the lazy decoder against."""
    fields: dict[str, Any] = {
        name: getattr(pb, name) if pb.HasField(name) else None
        for name in ("host", "service", "state", "description")
    }
    fields["metric"] = next(
        (getattr(pb, name) for name in ("metric_sint64", "metric_d", "metric_f")
         if pb.HasField(name)),
        None,
    )
    fields["tags"] = tuple(pb.tags)
    if pb.HasField("time_micros"):
        fields["time"] = pb.time_micros / 1_000_000
    else:
        fields["time"] = pb.time if pb.HasField("time") else now
    fields["ttl"] = pb.ttl if pb.HasField("ttl") else None
    attributes = {}
    for attribute in pb.attributes:
        if attribute.key in ("host", "service", "state", "description"):
            fields[attribute.key] = attribute.value
        elif attribute.key not in ("tags", "time", "ttl", "metric"):
            attributes[attribute.key] = attribute.value
    fields["attributes"] = attributes
    return fields


maybe = st.none() | st.just("")
wire_fields = st.fixed_dictionaries(
    {},
    optional={
        "host": maybe | text, "service": maybe | text, "state": text, "description": text,
        "metric_sint64": st.integers(-(2**63), 2**63 - 1),
        "metric_d": st.floats(allow_nan=False), "metric_f": st.floats(width=32, allow_nan=False),
        "time": st.integers(-(2**63), 2**63 - 1), "time_micros": st.integers(-(2**63), 2**63 - 1),
        "ttl": st.floats(width=32, allow_nan=False), "tags": st.lists(text, max_size=3),
        "attributes": st.lists(
            st.fixed_dictionaries(
                {"key": st.sampled_from(["host", "service", "state", "description", "tags",
                                         "time", "ttl", "metric", "env", ""]) | text},
                optional={"value": text},
            ),
            max_size=4,
        ),
    },
).map(lambda fields: {k: v for k, v in fields.items() if v is not None})


@given(st.lists(wire_fields, max_size=4))
def test_lazy_decoding_matches_the_spec_written_out(sent: list[dict[str, Any]]) -> None:
    data = wire(*sent)
    message = _proto.Msg.FromString(data)
    received = decode_message(data, NOW).events
    assert len(received) == len(sent)
    for event, pb in zip(received, message.events, strict=True):
        expected = spec_decode(pb, NOW)
        got = {name: getattr(event, name) for name in expected}
        got["attributes"] = dict(got["attributes"])
        assert got == expected
        # and forwarding it sends the same fields back
        assert spec_decode(encode_event(event), NOW) == expected


# Backend -------------------------------------------------------------------


def test_pure_python_protobuf_backend_warns_loudly() -> None:
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    result = subprocess.run(
        [sys.executable, "-c", "import transport._proto as p; print(p.backend)"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert result.stdout.strip() == "python"
    assert "100x slower" in result.stderr
    assert _proto.backend != "python"


@pytest.mark.parametrize("time", [10**15, 10.0**15, -(10**15), 2**63 - 1])
def test_times_whose_microseconds_overflow_int64_go_out_as_whole_seconds(time: float) -> None:
    pb = encode_event(Event(service="far", time=time))
    assert not pb.HasField("time_micros") and pb.time == int(time)
    assert decode_message(encode_request([Event(service="far", time=time)], framed=False),
                          NOW).events[0].time == int(time)


def test_unknown_fields_are_dropped_at_decode_and_never_passed_on(codec: str) -> None:
    # Riemann decodes into its event map, which has no room for them; rillet's
    # replies and forwards must not carry bytes a client sent beside its events.
    from _helpers import varint

    def unknown(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    attribute = b"\n\x03env\x12\x04prod" + unknown(7, b"FOREIGN-A")
    pb = _proto.Event(host="h", service="s", metric_f=1.5, time=10).SerializeToString()
    event = pb + b"J" + varint(len(attribute)) + attribute + unknown(111, b"FOREIGN-E" * 100)
    query = b"\n\x04true" + unknown(9, b"FOREIGN-Q")
    message = b"2" + varint(len(event)) + event + b"*" + varint(len(query)) + query + \
        unknown(99, b"FOREIGN-M")
    decoded = decode_message(message, now=0.0)
    [got] = decoded.events
    assert (got.host, got.service, got.metric, got.attributes, decoded.query) == \
        ("h", "s", 1.5, {"env": "prod"}, "true")
    for out in (encode_reply(events=decoded.events), encode_request(decoded.events),
                encode_event(got).SerializeToString()):
        assert b"FOREIGN" not in out
        assert len(out) < 100
