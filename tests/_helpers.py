"""Helpers shared by the stream tests."""

from __future__ import annotations

from typing import Any

from streams.testing import Sink


def through(build: Any, inputs: list[Any]) -> list[Any]:
    """Feed ``inputs`` to ``build(sink)`` on the current clock; what reached the sink."""
    sink = Sink()
    stream = build(sink)
    for item in inputs:
        stream(item)
    return sink.events
