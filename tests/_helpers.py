"""Helpers shared by the stream tests."""

from __future__ import annotations

from typing import Any

from hypothesis import settings

from streams.testing import Sink

#: Hypothesis settings for property tests whose examples drive whole streams.
relaxed = settings(deadline=None, max_examples=60)


def through(build: Any, inputs: list[Any]) -> list[Any]:
    """Feed ``inputs`` to ``build(sink)`` on the current clock; what reached the sink."""
    sink = Sink()
    stream = build(sink)
    for item in inputs:
        stream(item)
    return sink.events


def run_serving(config: Any, index: Any, body: Any, *, timeout: float = 30) -> Any:
    """Run ``serve(config)`` in a fresh trio run around ``await body(running)``; the Running."""
    import functools

    import trio

    from transport import serve

    result: list[Any] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(functools.partial(serve, config, index=index))
            result.append(running)
            with trio.fail_after(timeout):
                await body(running)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return result[0]
