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
The by census (``rillet by largest keys``), the per-stream counters
(``rillet replay --counts``, ``rillet stream NODE_ID in``), the alert log's
``node`` and the diff's ``node_a``/``node_b``, ``rillet explain``, the reload
log (the streams that start fresh), checkpoints (the state of each stream by
its place in the walk) and the scale-out handover (by id) all use it.

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

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._core import Stream, _describe
from ._partition import _ByFactory, by

__all__: list[str] = []


class Node:
    """One stream of a config: its id, the stream, and the stream it is an argument of.

    The id is made when first read: most walks (reload's, a checkpoint's, the
    census') read few of them.
    """

    __slots__ = ("_family", "_id", "_index", "parent", "stream")

    def __init__(self, stream: Stream, parent: Stream | None, family: _Family | None,
                 index: int) -> None:
        self.stream = stream
        self.parent = parent
        self._family = family  # None at the top level: index is the position there
        self._index = index
        self._id: str | None = None

    @property
    def id(self) -> str:
        found = self._id
        if found is None:
            family = self._family
            found = self._id = f"streams[{self._index}]/{step(self.stream)}" \
                if family is None else family.ids()[self._index]
        return found

    def __repr__(self) -> str:
        return f"Node({self.id!r}, {self.stream!r})"


class _Family:
    """The streams among one node's arguments, named together (``#n`` counts siblings)."""

    __slots__ = ("_ids", "streams", "under")

    def __init__(self, under: Node | str, streams: list[Stream]) -> None:
        self.under = under
        self.streams = streams
        self._ids: list[str] | None = None

    def ids(self) -> list[str]:
        found = self._ids
        if found is None:
            under = self.under if isinstance(self.under, str) else self.under.id
            seen: dict[str, int] = {}
            found = self._ids = []
            for stream in self.streams:
                name = step(stream)
                n = seen[name] = seen.get(name, 0) + 1
                # Interned: the forks of every key share the strings (a snapshot
                # pickles each once).
                found.append(sys.intern(f"{under}/{name}" if n == 1 else f"{under}/{name}#{n}"))
        return found


def nodes(streams: Iterable[Any], *,
          descend: Callable[[Stream], bool] | None = None) -> Iterator[Node]:
    """Every stream of a config (its top-level ``streams``), parents first, each once.

    ``descend(stream)`` returning False skips what is below ``stream`` (its own
    node is still yielded).
    """
    first: list[Pending] = [(stream, None, None, position) for position, stream
                            in enumerate(streams) if isinstance(stream, Stream)]
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
    found = [stream for stream in streams if isinstance(stream, Stream)]
    family = _Family(parent_id, found)
    return _walk([(stream, parent, family, i) for i, stream in enumerate(found)], descend)


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
# What the walk keeps to visit: the stream, its parent, its family (None at the top
# level) and its place in it (at the top level: its position among the streams).
Pending = tuple[Stream, Stream | None, _Family | None, int]


def _walk(first: list[Pending], descend: Callable[[Stream], bool] | None) -> Iterator[Node]:
    # Runs per key of a by when the census or a scale-out snapshot walks forks:
    # kept to the fewest calls per node.
    seen: set[int] = set()
    pending = first[::-1]
    pop, push = pending.pop, pending.append
    while pending:
        stream, parent, family, index = pop()
        key = id(stream)
        if key in seen:
            continue
        seen.add(key)
        node = Node(stream, parent, family, index)
        yield node
        if descend is None or descend(stream):
            below = [*stream.argument_streams()]
            if below:
                inner = _Family(node, below)
                for i in range(len(below) - 1, -1, -1):
                    push((below[i], stream, inner, i))
