"""The C parser against protobuf, the reference: the same bytes give the same events or errors.

Hypothesis writes Riemann messages field by field (every field type, edge
values, repeated and unknown fields, wrong wire types, groups, non-UTF-8
text), then also truncates and corrupts them, and feeds each to both
decoders. The C parser may decline bytes (it returns None and the reference
decides), but whatever it decodes must equal the reference's result exactly
(the known fields; neither keeps a field riemann.proto does not know),
and every message built the usual way must be decoded by it, not declined.
"""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _helpers import varint
from conftest import require_extension
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams import Event
from transport import _codec, _fastpath
from transport._codec import (
    ProtocolError,
    decode_message,
    encode_event,
    encode_reply,
    encode_request,
)

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_700_000_000.25

fast = _codec._fast_decode


@pytest.fixture(scope="module")
def c_parser() -> None:
    require_extension(fast, "transport/_fastwire.c")


needs_c = pytest.mark.usefixtures("c_parser")


# A protobuf writer small enough to emit what protobuf's own API refuses to:
# non-UTF-8 strings, wrong wire types, unknown fields and groups.


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_delimited(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


texts = st.one_of(
    st.text(max_size=12).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=12),  # mostly not UTF-8
    st.sampled_from([b"", b"host", b"service", b"state", b"description", b"tags", b"time",
                     b"ttl", b"metric", b"env", b"\xff", b"\xed\xa0\x80", b"caf\xc3\xa9"]),
)
int64s = st.one_of(st.integers(-(2**63), 2**63 - 1),
                   st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1,
                                    -(2**63), 10**15, 1_700_000_000_123_456]))
floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
floats64 = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def unknown_field(draw: st.DrawFn, numbers: tuple[int, ...] = (11, 12, 16, 100, 2**29 - 1)
                  ) -> bytes:
    number = draw(st.sampled_from(numbers))
    wire = draw(st.sampled_from([0, 1, 2, 5, 3]))
    if wire == 0:
        return key(number, 0) + varint(draw(st.integers(0, 2**64 - 1)))
    if wire == 1:
        return key(number, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire == 5:
        return key(number, 5) + draw(st.binary(min_size=4, max_size=4))
    if wire == 3:  # a group, which the C parser leaves to the reference
        return key(number, 3) + key(number, 4)
    return length_delimited(number, draw(st.binary(max_size=8)))


@st.composite
def attribute(draw: st.DrawFn) -> bytes:
    parts = []
    if draw(st.booleans()) or draw(st.booleans()):
        parts.append(length_delimited(1, draw(texts)))
    if draw(st.booleans()):
        parts.append(length_delimited(2, draw(texts)))
    if draw(st.integers(0, 9)) == 0:
        parts.append(draw(unknown_field()))
    if draw(st.integers(0, 9)) == 0:
        parts.append(length_delimited(1, draw(texts)))  # a second key: the last wins
    return b"".join(draw(st.permutations(parts)))


@st.composite
def event_field(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["string", "time", "time_micros", "sint", "d", "f", "ttl",
                                 "tag", "attribute", "attribute", "unknown", "wrong wire"]))
    if kind == "string":
        return length_delimited(draw(st.sampled_from([2, 3, 4, 5])), draw(texts))
    if kind in ("time", "time_micros"):
        return key(1 if kind == "time" else 10, 0) + varint(draw(int64s))
    if kind == "sint":
        n = draw(int64s)
        return key(13, 0) + varint((n << 1) ^ (n >> 63))
    if kind == "d":
        return key(14, 1) + struct.pack("<d", draw(floats64))
    if kind in ("f", "ttl"):
        return key(15 if kind == "f" else 8, 5) + struct.pack("<f", draw(floats32))
    if kind == "tag":
        return length_delimited(7, draw(texts))
    if kind == "attribute":
        return length_delimited(9, draw(attribute()))
    if kind == "unknown":
        return draw(unknown_field())
    field = draw(st.sampled_from([1, 2, 8, 9, 13, 14, 15]))
    return key(field, 0 if field in (2, 8, 9, 14, 15) else 2) + (
        varint(1) if field in (2, 8, 9, 14, 15) else varint(1) + b"x")


@st.composite
def message(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        body = b"".join(draw(st.lists(event_field(), max_size=10)))
        parts.append(length_delimited(6, body))
    if draw(st.booleans()):
        parts.append(length_delimited(5, b"".join(
            draw(st.lists(st.one_of(texts.map(lambda t: length_delimited(1, t)),
                                    unknown_field()), max_size=2)))))
    if draw(st.integers(0, 4)) == 0:
        parts.append(key(2, 0) + varint(draw(st.integers(0, 2))))
    if draw(st.integers(0, 4)) == 0:
        parts.append(length_delimited(3, draw(texts)))
    if draw(st.integers(0, 4)) == 0:  # a State: parsed by protobuf, unused by rillet
        parts.append(length_delimited(4, b"".join(draw(st.lists(event_field(), max_size=3)))))
    if draw(st.integers(0, 4)) == 0:
        parts.append(draw(unknown_field()))
    return b"".join(draw(st.permutations(parts)))


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = draw(message())
    how = draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if how == "garbage":
        return draw(st.binary(max_size=40))
    assume(data)
    at = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        return data[:at]
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]


def comparable(value: Any) -> Any:
    """A value with its exact type, NaNs and signed zeros made comparable."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value) if not math.isnan(value) else "nan")
    if isinstance(value, tuple):
        return ("tuple", *map(comparable, value))
    if isinstance(value, dict) or hasattr(value, "items"):
        return ("mapping", [(comparable(k), comparable(v)) for k, v in value.items()])
    return (type(value).__name__, value)


def fields(event: Event) -> list[Any]:
    return [comparable(getattr(event, name)) for name in
            ("host", "service", "state", "description", "metric", "tags", "time", "ttl",
             "attributes")]


def reference(data: bytes) -> Any:
    saved, _codec._fast_decode = _codec._fast_decode, None
    try:
        decoded = decode_message(data, NOW)
    except ProtocolError as error:
        return ("error", str(error))
    finally:
        _codec._fast_decode = saved
    # Unknown fields are dropped as the reference decodes, as Riemann does: the
    # message an event keeps (and replies and forwards reuse) holds none.
    for event in decoded.events:
        assert not holds_unknown_fields(event._pb)  # type: ignore[attr-defined]
    return ("ok", [fields(e) for e in decoded.events], comparable(decoded.query))


def holds_unknown_fields(pb: Any) -> bool:
    known = type(pb)()
    known.CopyFrom(pb)
    known.DiscardUnknownFields()
    # Partial: the reference lets some messages without a required field through.
    return len(known.SerializePartialToString()) != len(pb.SerializePartialToString())


def check(data: bytes) -> bool:
    """Asserts the C parser agrees with the reference; True if it decoded, not declined."""
    assert fast is not None
    expected = reference(data)
    got = fast(data, NOW)
    if expected[0] == "error":
        assert got is None, f"the C parser accepted what protobuf rejects: {expected[1]}"
    elif got is not None:
        events, query = got
        assert all(type(e) is Event for e in events)
        assert ("ok", [fields(e) for e in events], comparable(query)) == expected
    # Through decode_message (declining included), errors are the reference's own.
    try:
        through = ("ok", *(lambda d: ([fields(e) for e in d.events], comparable(d.query)))(
            decode_message(data, NOW)))
    except ProtocolError as error:
        through = ("error", str(error))
    assert through == expected
    return got is not None


slow = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_c
@slow
@given(message())
def test_written_messages_decode_as_protobuf_decodes_them(data: bytes) -> None:
    check(data)


@needs_c
@slow
@given(damaged())
def test_damaged_messages_give_the_same_events_or_the_same_error(data: bytes) -> None:
    check(data)


plain_events = st.builds(
    Event,
    host=st.none() | st.text(max_size=8), service=st.none() | st.text(max_size=8),
    state=st.none() | st.sampled_from(["ok", "critical", ""]),
    description=st.none() | st.text(max_size=20),
    metric=st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False),
    tags=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    time=st.none() | st.integers(0, 2**40) | st.floats(0, 2e9),
    ttl=st.none() | st.floats(0, 1e6, width=32),
    attributes=st.dictionaries(st.text(min_size=1, max_size=5).filter(
        lambda k: k not in ("host", "service", "state", "description", "tags", "time", "ttl",
                            "metric")), st.text(max_size=5), max_size=3),
)


@needs_c
@slow
@given(st.lists(plain_events, max_size=5), st.none() | st.text(max_size=10))
def test_messages_that_clients_send_are_decoded_by_the_c_parser(
        events: list[Event], query: str | None) -> None:
    assert check(encode_request(events, query=query, framed=False))


@needs_c
def test_edge_values_are_decoded_exactly() -> None:
    for micros in (1, -1, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 576460752305_000_000):
        data = length_delimited(6, key(10, 0) + varint(micros))
        assert check(data)
        assert fast(data, NOW)[0][0].time == micros / 1_000_000  # type: ignore[index]
    overriding = length_delimited(6, length_delimited(4, b"a") + length_delimited(
        9, length_delimited(1, b"host") + length_delimited(2, b"b")) + length_delimited(
        9, length_delimited(1, b"host")))
    assert check(overriding)
    (event,), _ = fast(overriding, NOW)  # type: ignore[misc]
    assert event.host == "" and event.attributes == {}  # the last attribute wins
    # Padded varints (as a tag, as a length) that the reference's byte scans miss.
    for padded in (b"\x8a\x00\x04host", b"\x0a\x84\x00host"):
        check(length_delimited(6, length_delimited(4, b"a") + length_delimited(
            9, padded + length_delimited(2, b"b"))))
    check(length_delimited(6, b"\xca\x00\x02\x12\x00"))  # a keyless attribute, padded tag
    assert check(length_delimited(6, length_delimited(3, b"\xffcpu")))
    assert fast(length_delimited(6, length_delimited(3, b"\xffcpu")), NOW)[0][0].service == (
        "\ufffdcpu")  # type: ignore[index]


@needs_c
def test_events_built_by_the_c_parser_are_plain_and_hold_only_their_values() -> None:
    data = encode_request([Event(host="h", service="s", metric=1.5, time=2, tags=("t",),
                                 env="prod")], framed=False)
    (event,) = decode_message(data, NOW).events
    assert type(event) is Event and not hasattr(event, "_pb")
    # Encoded as Riemann encodes: the metric beside metric_f, the time in both fields.
    pb = encode_event(event)
    assert (pb.metric_d, pb.metric_f, pb.time, pb.time_micros) == (1.5, 1.5, 2, 2_000_000)
    # Events share repeated short strings instead of copying them, across messages too.
    many = decode_message(encode_request([Event(host="web1", service=f"s{i}", time=1)
                                          for i in range(3)], framed=False), NOW).events
    again = decode_message(encode_request([Event(host="web1", service="s1")], framed=False),
                           NOW).events
    assert many[0].host is many[1].host is many[2].host is again[0].host
    assert many[1].service is again[0].service


def test_the_environment_variable_selects_the_pure_python_code_and_its_suite_passes() -> None:
    # Without pytest-cov's variables, which would trace the inner run too.
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("COV_CORE")}
    environment[_fastpath.PURE_PYTHON_VARIABLE] = "1"
    probe = subprocess.run(
        [sys.executable, "-c", "from transport import _codec; from streams import _compiled; "
                               "print(_codec._fast_decode, _compiled.speedups)"],
        env=environment, capture_output=True, text=True, check=True, cwd=ROOT)
    assert probe.stdout.strip() == "None None"
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov",
         "tests/test_codec.py", "tests/test_server.py", "tests/test_client.py",
         "tests/test_filters.py", "tests/test_partition.py", "tests/test_index.py",
         "tests/test_core.py"],
        env=environment, capture_output=True, text=True, cwd=ROOT, timeout=110)
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-2000:]


# The encoder: the same events give the same bytes as protobuf, or are left to it.

fast_encode = _codec._fast_encode

unusual_events = st.builds(
    Event,
    host=st.none() | st.text(max_size=6),  # lone surrogates included
    service=st.none() | st.text(max_size=6),
    state=st.none() | st.sampled_from(["ok", "", "critical"]),
    description=st.none() | st.text(max_size=60),
    metric=st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
    | st.sampled_from([2**24, 2**24 + 1, -(2**24) - 1, 3.4028234663852886e38, 3.5e38, 1e-46,
                       float("nan"), float("inf"), -0.0]),
    tags=st.lists(st.text(max_size=4), max_size=3).map(tuple),
    time=st.none() | st.integers(-(2**63), 2**63) | st.floats()
    | st.sampled_from([9e12, 9e12 + 1, -9e12, 0.5, 2.5, 1e-7, 1_700_000_000.1234565]),
    ttl=st.none() | st.floats() | st.integers(-(2**25), 2**25) | st.just(True),
    attributes=st.dictionaries(
        st.text(min_size=1, max_size=4).filter(lambda k: k not in
                                               ("host", "service", "state", "description",
                                                "tags", "time", "ttl", "metric")),
        st.none() | st.text(max_size=4) | st.booleans() | st.integers(0, 9), max_size=3),
)


def protobuf_bytes(events: list[Event]) -> bytes | None:
    saved, _codec._fast_encode = _codec._fast_encode, None
    try:
        return encode_request(events, framed=False)
    except ValueError:
        return None
    finally:
        _codec._fast_encode = saved


@needs_c
@slow
@given(st.lists(unusual_events, min_size=1, max_size=4))
def test_the_c_encoder_writes_what_protobuf_writes_or_leaves_it(events: list[Event]) -> None:
    assert fast_encode is not None
    expected = protobuf_bytes(events)
    got = fast_encode(events)
    if expected is None:
        assert got is None, "the C encoder wrote what protobuf refuses"
    elif got is not None:
        assert got == expected


@needs_c
@slow
@given(st.lists(plain_events, min_size=1, max_size=5), st.none() | st.text(max_size=10))
def test_usual_events_are_written_by_the_c_encoder(events: list[Event],
                                                   query: str | None) -> None:
    assert fast_encode is not None
    usual = [e.evolve(metric=int(e.metric) % 2**24 if isinstance(e.metric, int) else e.metric,
                      time=None if e.time is None else min(e.time, 9e12))
             for e in events]
    assert fast_encode(usual) is not None
    saved, _codec._fast_encode = _codec._fast_encode, None
    try:
        reference = encode_request(usual, query=query)
    finally:
        _codec._fast_encode = saved
    assert encode_request(usual, query=query) == reference
    assert encode_reply(events=usual) == reference_reply(usual)


def reference_reply(events: list[Event]) -> bytes:
    saved, _codec._fast_encode = _codec._fast_encode, None
    try:
        return encode_reply(events=events)
    finally:
        _codec._fast_encode = saved
