"""A stream's place in the config: the one name rillet gives it, and the one walk that finds it.

Every stream of a config has a *node id*, its path from the top-level
streams: ``streams[2]/where/by('host')/throttle`` is the ``throttle`` under
the ``by('host')`` under the ``where`` that is the third top-level stream. A
step is the stream's class name, with its fields for the ``by`` family
(``by``, ``by_builder``, ``by_fn``), and ``#2``, ``#3``... after the second,
third... sibling with the same step: ``split(where(a, x), where(b, y))``
holds ``.../split/where`` and ``.../split/where#2``.

An id depends on the config's structure only, never on object identities
or line numbers, so a stream has the same id in a replay and live, and
across a reload of an unchanged config; editing a threshold keeps every id.
The by census (``rillet by keys``), the per-stream counters (``rillet replay
--counts``, ``rillet stream PATH in``), the alert log's ``node``, ``rillet
explain``, reload, checkpoints and the scale-out handover all use it.

The walk visits parents before children, depth first, in argument order
(configuration streams and children, looking through lists and tuples:
:meth:`Stream.argument_streams`), each stream once: a stream placed twice (a
shared sink) is named by its first place. The streams a ``by`` forks per key
are named as the templates they copy (:func:`nodes_under`).

>>> from streams import by, index, split, throttle, where
>>> from streams.testing import Sink
>>> page = Sink()
>>> config = [where("metric > 90", by("host", throttle(1, 60, page)), index),
...           split(where('state = "ok"', page), where('state = "critical"', page))]
>>> for node in nodes(config):
...     print(node.id)
streams[0]/where
streams[0]/where/by('host')
streams[0]/where/by('host')/throttle
streams[0]/where/by('host')/throttle/Sink
streams[0]/where/index
streams[1]/split
streams[1]/split/where
streams[1]/split/where#2
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from ._core import Stream, _describe
from ._partition import _ByFactory, by

__all__: list[str] = []


class Node(NamedTuple):
    """One stream of a config: its id, the stream, and the stream it is an argument of."""

    id: str
    stream: Stream
    parent: Stream | None


def nodes(streams: Iterable[Any], *,
          descend: Callable[[Stream], bool] | None = None) -> Iterator[Node]:
    """Every stream of a config (its top-level ``streams``), parents first, each once.

    ``descend(stream)`` returning False skips what is below ``stream`` (its own
    node is still yielded).
    """
    first: list[Pending] = [(f"streams[{position}]/{step(stream)}", stream, None)
                            for position, stream in enumerate(streams)
                            if isinstance(stream, Stream)]
    return _walk(first, descend)


def nodes_under(parent_id: str, streams: Iterable[Any], *, parent: Stream | None = None,
                descend: Callable[[Stream], bool] | None = None) -> Iterator[Node]:
    """The streams below ``streams``, named as children of the node ``parent_id``: a
    ``by``'s forks for one key are named as the templates they copy.

    >>> from streams import Event, by, rate
    >>> from streams.testing import Sink
    >>> top = by("host", rate(5, Sink()))
    >>> top(Event(host="a", metric=1, time=0))
    >>> [n.id for n in nodes_under("streams[0]/by('host')", top._forks["a"], parent=top)]
    ["streams[0]/by('host')/rate", "streams[0]/by('host')/rate/Sink"]
    """
    return _walk(_children(parent_id, parent, streams), descend)


def step(stream: Stream) -> str:
    """The last step of a stream's id, before any ``#n``: its class name, and its
    fields for the ``by`` family (by then it is also its key in the census)."""
    name = type(stream).__name__
    if isinstance(stream, _KEYED):
        return f"{name}({_fields(stream.fields)})"
    if name.startswith("_"):
        # A private class behind a public name (``index``) goes by what the config wrote.
        text = repr(stream)
        if text.isidentifier():
            return text
    return name


def _fields(fields: Any) -> str:
    # Functions print by name (a repr would hold an address, different every run).
    if type(fields) is list or type(fields) is tuple:
        if all(isinstance(f, str) for f in fields):
            return repr(fields)
        inner = ", ".join(_fields(f) for f in fields)
        return f"[{inner}]" if type(fields) is list else f"({inner})"
    return _describe(fields)


_KEYED = (by, _ByFactory)
Pending = tuple[str, Stream, Stream | None]


def _children(parent_id: str, parent: Stream | None, streams: Iterable[Any]) -> list[Pending]:
    seen: dict[str, int] = {}
    found = []
    for stream in streams:
        if not isinstance(stream, Stream):
            continue
        name = step(stream)
        n = seen[name] = seen.get(name, 0) + 1
        found.append((f"{parent_id}/{name}" if n == 1 else f"{parent_id}/{name}#{n}",
                      stream, parent))
    return found


def _walk(first: list[Pending], descend: Callable[[Stream], bool] | None) -> Iterator[Node]:
    seen: set[int] = set()
    pending = first[::-1]
    while pending:
        node_id, stream, parent = pending.pop()
        if id(stream) in seen:
            continue
        seen.add(id(stream))
        yield Node(node_id, stream, parent)
        if descend is None or descend(stream):
            pending.extend(reversed(_children(node_id, stream, stream.argument_streams())))
