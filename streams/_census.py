"""What a running config holds: the keys of every ``by`` and the events dropped for clock skew.

Self-instrumentation reports these (``rillet by keys``, ``rillet streams
skewed``). Each ``by`` is named by its node id, its place in the config
(see ``streams._nodes``): the top-level stream's position and the streams on
the way, e.g. ``streams[1]/where/by('host')``. A ``by`` nested under another
is counted over every fork of the outer one, under one name.

>>> from streams import Event, by, moving_time_window, where
>>> from streams.testing import Sink
>>> top = where("metric > 0", by("host", by("service", moving_time_window(60, Sink()))))
>>> for host, service in [("a", "x"), ("a", "y"), ("b", "x")]:
...     top(Event(host=host, service=service, metric=1, time=0))
>>> found = census([top])
>>> found.by_keys
{"streams[0]/where/by('host')": 2, "streams[0]/where/by('host')/by('service')": 3}
>>> found.total_keys, found.largest, found.skewed, found.estimated
(5, ("streams[0]/where/by('host')/by('service')", 3), 0, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._core import Stream
from ._nodes import Node, nodes, nodes_under
from ._partition import _Built, _ByFactory, by

__all__: list[str] = []

#: Forks of one ``by`` walked per census; beyond it the nested figures are
#: scaled up from this sample (``estimated``), so a report costs a bounded time.
FORKS_WALKED = 1000


@dataclass
class Census:
    """Keys per ``by`` (by name), events dropped for clock skew, whether scaled from a sample."""

    by_keys: dict[str, int] = field(default_factory=dict)
    skewed: int = 0
    estimated: bool = False

    @property
    def total_keys(self) -> int:
        return sum(self.by_keys.values())

    @property
    def largest(self) -> tuple[str, int] | None:
        """The ``by`` holding the most keys, with its count."""
        if not self.by_keys:
            return None
        return max(self.by_keys.items(), key=lambda item: item[1])

    def _add(self, other: Census, scale: float) -> None:
        for name, keys in other.by_keys.items():
            self.by_keys[name] = self.by_keys.get(name, 0) + round(keys * scale)
        self.skewed += round(other.skewed * scale)
        self.estimated = self.estimated or other.estimated or scale != 1


def census(streams: Iterable[Any], *, forks_walked: int = FORKS_WALKED) -> Census:
    """Walk a config's top-level streams (and the forks of its ``by`` streams)."""
    found = Census()
    _Walk(forks_walked).count(nodes(streams, descend=_holds_streams), found)
    return found


def _holds_streams(stream: Stream) -> bool:
    # A by's templates never see an event: its forks are walked instead.
    return not stream.shared and not stream.templates


_KEYED = (by, _ByFactory)


class _Walk:
    """One census: remembers which templates hold nothing to count, for the forks
    of a nested by share their templates."""

    def __init__(self, forks_walked: int) -> None:
        self.forks_walked = forks_walked
        self.worth: dict[int, bool] = {}

    def count(self, walk: Iterator[Node], found: Census) -> None:
        for node in walk:
            stream = node.stream
            if stream.shared:
                continue
            skewed = getattr(stream, "skewed", 0)
            if type(skewed) is int:
                found.skewed += skewed
            if isinstance(stream, _KEYED):
                node_id = node.id
                found.by_keys[node_id] = found.by_keys.get(node_id, 0) + len(stream)
                self.forks(stream if isinstance(stream, by) else stream._by, node_id, found)

    def forks(self, keyed: by, node_id: str, found: Census) -> None:
        # Forks are walked only when a template (or, for by_builder/by_fn, the
        # first key's streams) holds something to count: a by over plain streams
        # costs one len() however many keys it has.
        forks = list(keyed._forks.values())
        if not forks or not self.worth_walking(keyed, node_id, forks[0]):
            return
        sample = forks[:self.forks_walked]
        nested = Census()
        for streams in sample:
            self.count(nodes_under(node_id, _fork_streams(streams), parent=keyed,
                                   descend=_holds_streams), nested)
        found._add(nested, len(forks) / len(sample))

    def worth_walking(self, keyed: by, node_id: str, first_fork: tuple[Any, ...]) -> bool:
        built = any(isinstance(c, _Built) for c in keyed.children)
        known = None if built else self.worth.get(id(keyed.children))
        if known is None:
            templates = _fork_streams(first_fork) if built or not keyed.children \
                else keyed.children
            known = any(_counted(node.stream) for node in nodes_under(
                node_id, templates, descend=_holds_streams))
            if not built:
                self.worth[id(keyed.children)] = known
        return known


def _counted(stream: Stream) -> bool:
    return not stream.shared and (isinstance(stream, _KEYED)
                                  or type(getattr(stream, "skewed", None)) is int)


def _fork_streams(streams: tuple[Any, ...]) -> Iterator[Any]:
    for stream in streams:
        if isinstance(stream, _Built):
            yield from stream.children  # the streams its factory built for the key
        else:
            yield stream
