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
