"""The sans-I/O client protocol both TCP clients drive: fed bytes whole, byte by byte, and bad."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams._event import Event
from transport._client_protocol import (
    ClientProtocol,
    ConnectionSettings,
    Pipeline,
    RiemannConnectionError,
    RiemannError,
    parse_reply,
)
from transport._codec import OK_REPLY, ProtocolError, encode_reply, encode_request

QUERY = encode_request(query="true")
FOUND = encode_reply(events=[Event(host="web1", service="cpu", metric=0.5, time=1)])
REFUSED = encode_reply(ok=False, error="parse error")


def test_requests_queued_together_go_out_in_one_write_in_order() -> None:
    protocol = ClientProtocol()
    first = protocol.send_request(QUERY, 1)
    second = protocol.send_request(QUERY * 2, 2)
    assert protocol.outstanding == 3 and (first.count, second.count) == (1, 2)
    assert protocol.data_to_send() == QUERY * 3
    assert protocol.data_to_send() == b""


@given(st.lists(st.integers(1, len(OK_REPLY + FOUND + REFUSED)), max_size=8))
def test_replies_complete_in_request_order_however_the_bytes_split(cuts: list[int]) -> None:
    protocol = ClientProtocol()
    replies = [protocol.send_request(QUERY, 1) for _ in range(3)]
    data = OK_REPLY + FOUND + REFUSED
    start = 0
    for cut in sorted(cuts):
        protocol.receive_data(data[start:cut])
        start = cut
        # A reply is done only once every reply before it is.
        done = [reply.done for reply in replies]
        assert done == sorted(done, reverse=True)
        assert protocol.outstanding == done.count(False)
    protocol.receive_data(data[start:])
    assert protocol.outstanding == 0
    [ok], [found], [refused] = (reply.result() for reply in replies)
    assert parse_reply(ok) == []
    assert [e.host for e in parse_reply(found)] == ["web1"]
    with pytest.raises(RiemannError, match="parse error"):
        parse_reply(refused)


def test_byte_by_byte() -> None:
    protocol = ClientProtocol()
    replies = protocol.send_request(QUERY * 2, 2)
    for byte in (OK_REPLY + FOUND)[:-1]:
        protocol.receive_data(bytes([byte]))
        assert not replies.done
    protocol.receive_data(FOUND[-1:])
    assert replies.done and replies.result() == [OK_REPLY[4:], FOUND[4:]]


def test_a_reply_to_no_request_is_a_protocol_error() -> None:
    protocol = ClientProtocol()
    replies = protocol.send_request(QUERY, 1)
    with pytest.raises(ProtocolError, match="reply to no request"):
        protocol.receive_data(OK_REPLY + OK_REPLY)
    assert replies.done  # the one asked for was still matched


def test_trailing_garbage_that_is_not_a_frame_is_a_protocol_error() -> None:
    protocol = ClientProtocol()
    protocol.send_request(QUERY * 2, 2)
    with pytest.raises(ProtocolError, match="exceeds max_frame"):
        protocol.receive_data(OK_REPLY + b"HTTP/1.1 400 Bad Request\r\n")


def test_failing_fails_every_waiting_request_and_refuses_new_ones() -> None:
    protocol = ClientProtocol()
    replies = [protocol.send_request(QUERY, 1), protocol.send_request(QUERY * 2, 2)]
    protocol.fail(RiemannConnectionError("lost"))
    assert protocol.outstanding == 0 and protocol.data_to_send() == b""
    for reply in replies:
        assert reply.done
        with pytest.raises(RiemannConnectionError, match="lost") as raised:
            reply.result()
    assert raised.value is not protocol.error  # each waiter raises its own copy
    with pytest.raises(RiemannConnectionError, match="lost"):
        protocol.send_request(QUERY, 1)


def test_a_pipeline_reads_every_ack_then_reports_the_failures_once() -> None:
    protocol = ClientProtocol()
    replies = protocol.send_request(QUERY * 3, 3)
    protocol.receive_data(OK_REPLY + REFUSED + REFUSED)
    results: list[list[Event]] = []
    pipeline = Pipeline(results)
    pipeline.settle(replies)
    assert len(results) == 3
    with pytest.raises(RiemannError, match=r"2 of 3 pipelined requests failed; the first "
                                           r"\(#1\) with: parse error"):
        pipeline.finish()


def test_connect_retries_pause_with_capped_doubling() -> None:
    settings = ConnectionSettings("127.0.0.1", 5555, timeout=1, connect_attempts=5,
                                  backoff=0.5, max_backoff=1.5)
    assert list(settings.retry_delays()) == [0.0, 0.5, 1.0, 1.5, 1.5]
