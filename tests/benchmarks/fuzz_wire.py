"""Coverage-guided fuzzing of what a client controls: frames, messages and queries (atheris).

On demand, not in the suite (pip install atheris):

    .venv/bin/python tests/benchmarks/fuzz_wire.py -max_total_time=60

Each input is split into a frame stream for the decoder and a query text; any
exception other than the documented refusals is a finding (the fuzzer stops and
writes the input to crash-*). Add every finding to the Hypothesis tests in
tests/test_fuzz.py.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from streams import Event
    from streams._query import QuerySyntaxError, compile_query
    from transport._codec import FrameDecoder, ProtocolError, decode_message
    from transport._slices import message_pieces

SAMPLE = Event(host="web1", service="cpu", state="ok", metric=0.5, time=1, tags=("a",), x="y")


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    query = provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 200))
    stream = provider.ConsumeBytes(provider.remaining_bytes())
    try:
        compiled = compile_query(query)
    except (QuerySyntaxError, RecursionError):
        pass
    else:
        compiled(SAMPLE)
    decoder = FrameDecoder(max_frame=1 << 16)
    try:
        decoder.feed(stream)
        for payload in decoder.frames():
            whole = decode_message(payload, 0.0)
            for event in whole.events:
                event.as_dict()
            pieces = [e for p in message_pieces(payload, 3) for e in decode_message(p, 0.0).events]
            assert [e.as_dict() for e in pieces] == [e.as_dict() for e in whole.events]
    except ProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
