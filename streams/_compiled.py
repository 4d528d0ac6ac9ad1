"""The compiled hops (``streams/_speedups.c``), or None where they are not used.

``pip install`` builds the extension when it can; without a compiler rillet
runs on the pure-Python streams, which stay the reference: ``where``'s and
``by``'s ``__call__``, the broadcast to several children, the config's
dispatcher and the expiry sweep's judgement. The environment variable
``RILLET_PURE_PYTHON=1`` forces the pure-Python streams (and codec: the test
suite runs both). Setting :data:`speedups` to None does the same for the
streams built afterwards (the tests comparing the two do).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from ._event import Event, effective_ttl

__all__ = ["PURE_PYTHON_VARIABLE", "entry_types", "speedups"]

#: Set to 1 to run the pure-Python streams and codec even where the C extensions are built.
PURE_PYTHON_VARIABLE = "RILLET_PURE_PYTHON"


def _load() -> Any:
    if os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0"):
        return None
    try:
        module = importlib.import_module("streams._speedups")
    except ImportError:
        return None
    module.setup(Event, float(effective_ttl(None)))
    return module


#: The extension module, or None for the pure-Python streams.
speedups: Any = _load()
_built = speedups


def entry_types() -> tuple[type, ...]:
    """The classes of compiled entry points (definitions, like the functions they stand for)."""
    if _built is None:
        return ()
    return (_built.Where, _built.By, _built.Broadcast, _built.Dispatch)
