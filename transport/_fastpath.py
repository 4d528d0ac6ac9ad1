"""Which decoder turns wire bytes into events: the C parser, or the pure-Python codec.

The C parser (``transport/_fastwire.c``, built by ``pip install``) builds
plain slotted :class:`~streams.Event`\\ s in bulk; the pure-Python codec
(protobuf's upb parser and lazily read :class:`~transport.WireEvent`\\ s) is
the reference, and the fallback wherever the extension was not built.

The environment variable ``RILLET_PURE_PYTHON=1`` forces the fallback (the
test suite runs both). The C parser declines (returns None) on anything it
does not decode exactly as the reference does, rare bytes that no usual
client sends and every malformed message, and the reference then decodes
them or raises its error.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from streams._compiled import PURE_PYTHON_VARIABLE
from streams._event import Event

__all__ = ["PURE_PYTHON_VARIABLE", "load"]

FastDecode = Callable[[Any, float], "tuple[list[Event], str | None] | None"]
FastEncode = Callable[["list[Event] | tuple[Event, ...]"], "bytes | None"]


def load(empty_attributes: Mapping[str, str]) -> tuple[FastDecode | None, FastEncode | None]:
    """The C parser's ``decode(data, now)`` and ``encode(events)``, or Nones for pure Python.

    ``encode`` gives the bytes of a ``Msg``'s ``events`` fields for a list of
    plain events, or None (another class, an unusual value) for protobuf to
    write them.
    """
    if os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0"):
        return None, None
    try:
        _fastwire = importlib.import_module("transport._fastwire")
    except ImportError:
        return None, None
    _fastwire.setup(Event, empty_attributes)
    decode: FastDecode = _fastwire.decode
    encode: FastEncode = _fastwire.encode
    return decode, encode

