"""Decode speed of the C parser, lazy WireEvents and eagerly built Events, side by side.

Each round decodes 100-event messages and reads host, service and metric of
every event (what a where → by → rate pipeline touches), through the C
parser (transport/_fastwire.c, when built), through the lazy
:class:`~transport._codec.WireEvent` of the pure-Python codec, and by
building a full :class:`~streams.Event` from each protobuf Event up front, as
a codec without laziness would. They run interleaved in one process so
machine noise hits all alike; the ratios are what to look at.

    .venv/bin/python tests/benchmarks/bench_codec.py [--events-per-message 100] [--rounds 7]

The pure-Python codec is also timed as it was before it dropped unknown
fields at decode (issue 10), for the cost of dropping them.

Also prints the cost of acking, encoding and forwarding for reference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from streams import Event
from transport import _codec, _proto
from transport._codec import (
    FrameDecoder,
    decode_message,
    encode_reply,
    encode_request,
)


def sample_events(n: int) -> list[Event]:
    """Events shaped like a collectd or riemann-tools stream."""
    return [
        Event(
            host=f"web{i % 50}.example.com",
            service=f"cpu-{i % 8} percent",
            state="ok",
            metric=0.25 + i,
            time=1_700_000_000.123456 + i,
            ttl=20.0,
            tags=("collectd", "linux"),
            attributes={"plugin": "cpu", "type": "percent"} if i % 4 == 0 else None,
        )
        for i in range(n)
    ]


def eager_event(pb: Any, now: float) -> Event:
    """The full spec §1.2 conversion done up front, as a non-lazy codec would."""
    if pb.HasField("metric_sint64"):
        metric: int | float | None = pb.metric_sint64
    elif pb.HasField("metric_d"):
        metric = pb.metric_d
    elif pb.HasField("metric_f"):
        metric = pb.metric_f
    else:
        metric = None
    if pb.HasField("time_micros"):
        event_time: float = pb.time_micros / 1e6
    elif pb.HasField("time"):
        event_time = pb.time
    else:
        event_time = now
    attributes = {a.key: a.value for a in pb.attributes}
    return Event(
        host=pb.host if pb.HasField("host") else None,
        service=pb.service if pb.HasField("service") else None,
        state=pb.state if pb.HasField("state") else None,
        description=pb.description if pb.HasField("description") else None,
        metric=metric,
        tags=tuple(pb.tags),
        time=event_time,
        ttl=pb.ttl if pb.HasField("ttl") else None,
        attributes=attributes,
    )


FAST = _codec._fast_decode


def run_decoder(payloads: list[bytes]) -> int:
    seen = 0
    for payload in payloads:
        for event in decode_message(payload, 0.0).events:
            event.host, event.service, event.metric  # noqa: B018
            seen += 1
    return seen


def run_lazy(payloads: list[bytes]) -> int:
    _codec._fast_decode = None  # the pure-Python codec
    try:
        return run_decoder(payloads)
    finally:
        _codec._fast_decode = FAST


DISCARD = _codec._discard_unknown


def run_lazy_keeping_unknown(payloads: list[bytes]) -> int:
    """The pure-Python codec as before issue 10: unknown fields kept at decode."""
    _codec._discard_unknown = lambda message: None
    try:
        return run_lazy(payloads)
    finally:
        _codec._discard_unknown = DISCARD


def run_eager(payloads: list[bytes]) -> int:
    seen = 0
    for payload in payloads:
        for pb in _proto.Msg.FromString(payload).events:
            event = eager_event(pb, 0.0)
            event.host, event.service, event.metric  # noqa: B018
            seen += 1
    return seen


def run_framing(stream: bytes, chunk: int) -> int:
    decoder = FrameDecoder()
    frames = 0
    for start in range(0, len(stream), chunk):
        decoder.feed(stream[start:start + chunk])
        for _ in decoder.frames():
            frames += 1
    return frames


def rate(function: Any, *args: Any, count: int) -> float:
    started = time.perf_counter()
    function(*args)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-message", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    per_message = options.events_per_message
    request = encode_request(sample_events(per_message))
    payloads = [request[4:]] * options.messages
    count = per_message * options.messages
    print(f"protobuf backend: {_proto.backend}; {per_message}-event messages "
          f"of {len(request)} bytes, {options.messages} per round, {options.rounds} rounds")

    fast: list[float] = []
    lazy, kept, eager = [], [], []
    for _ in range(options.rounds):
        if FAST is not None:
            fast.append(rate(run_decoder, payloads, count=count))
        lazy.append(rate(run_lazy, payloads, count=count))
        kept.append(rate(run_lazy_keeping_unknown, payloads, count=count))
        eager.append(rate(run_eager, payloads, count=count))
    lazy_rate, eager_rate = statistics.median(lazy), statistics.median(eager)
    kept_rate = statistics.median(kept)
    if fast:
        fast_rate = statistics.median(fast)
        print(f"decode + read host/service/metric, C parser       : {fast_rate:>12,.0f} events/s")
        print(f"C parser / lazy                                   : "
              f"{fast_rate / lazy_rate:>12.2f}x")
    else:
        print("the C parser is not built or RILLET_PURE_PYTHON is set: not measured")
    print(f"decode + read host/service/metric, lazy WireEvent : {lazy_rate:>12,.0f} events/s")
    print(f"  the same keeping unknown fields (before)        : {kept_rate:>12,.0f} events/s")
    print(f"  dropping unknown fields at decode costs         : "
          f"{1 - lazy_rate / kept_rate:>12.1%}")
    print(f"decode + read host/service/metric, eager Event    : {eager_rate:>12,.0f} events/s")
    print(f"lazy / eager                                      : {lazy_rate / eager_rate:>12.2f}x")

    _codec._fast_decode = None
    decoded = decode_message(payloads[0], 0.0).events
    _codec._fast_decode = FAST
    parsed = decode_message(payloads[0], 0.0).events
    built = sample_events(per_message)
    stream = request * options.messages
    extras = {
        "frame splitting, 64 KiB reads (frames/s)": (run_framing, (stream, 65536),
                                                      options.messages),
        "encode_reply() acks (acks/s)": (lambda: [encode_reply() for _ in range(count)], (),
                                         count),
        "forward decoded WireEvents (events/s)": (
            lambda: [encode_request(decoded) for _ in range(options.messages)], (), count),
        "forward events from the C parser (events/s)": (
            lambda: [encode_request(parsed) for _ in range(options.messages)], (), count),
        "encode built Events (events/s)": (
            lambda: [encode_request(built) for _ in range(options.messages)], (), count),
    }
    for label, (function, args, n) in extras.items():
        value = statistics.median(rate(function, *args, count=n) for _ in range(options.rounds))
        print(f"{label:<50}: {value:>12,.0f}")


if __name__ == "__main__":
    main()
