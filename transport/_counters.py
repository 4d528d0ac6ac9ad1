"""Per-stream counters: how many events entered each stream of a config, and left it.

Each stream is counted under its node id, its place in the config (see
``streams._nodes``): ``streams[0]/where/throttle/forward`` is the
``forward`` under the ``throttle`` under the first top-level ``where``. The
streams ``by`` builds per key count under the stream they are forked from,
so an id sums every key. A stream's *in* is the events it was called with;
its *out* the calls it made to other streams (a ``where``'s passes, a
``throttle``'s lets-through; each child counts, so a stream with two
children passing everything has twice its *in*).

Counting is two dict updates per stream an event passes, done by wrapping
every stream class's ``__call__``; it is off unless asked for, because the
streams' hot path otherwise pays nothing at all:

- ``rillet replay --counts`` prints the table after the replay, and
  ``rillet explain`` shows the counts of the streams it names;
- ``rillet run --count-streams`` counts live; ``instrumentation(...)`` then
  reports ``rillet stream NODE_ID in`` and ``... out`` with the other figures.

Counters must be installed before the config is loaded: a stream built
earlier holds its children's ``__call__`` as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from streams import Stream
from streams._nodes import nodes

__all__ = ["StreamCounters", "active"]

#: The counters ``rillet run --count-streams`` installed (what instrumentation reports).
active: StreamCounters | None = None
# Counters installed now: a stream class made later (a replay's sink recorders) joins them.
_installed: list[StreamCounters] = []


def adopt(cls: type) -> None:
    """Count the calls of ``cls``, a stream class made after the counters were installed."""
    for counters in _installed:
        counters._wrap(cls)


def _classes(root: type) -> Iterator[type]:
    sub: type
    for sub in root.__subclasses__():
        yield sub
        yield from _classes(sub)


def _forked(streams: list[Any]) -> dict[int, Any]:
    """fork id -> the config's stream it stands for, for the forks every ``by`` holds
    now (also those a checkpoint restored, which were never forked here)."""
    from streams import by

    mapping: dict[int, Any] = {}
    pending: list[tuple[Any, Any]] = []

    def keys_of(stream: Any) -> None:
        # changed_state and by_builder keep their by inside
        keyed = getattr(stream, "_by", stream)
        if isinstance(keyed, by):
            for forks in keyed._forks.values():
                pending.extend(zip(forks, keyed.children, strict=False))

    for node in nodes(streams):
        keys_of(node.stream)
    while pending:
        fork, template = pending.pop()
        if not isinstance(fork, Stream) or fork is template or fork.shared:
            continue
        mapping[id(fork)] = mapping.get(id(template), template)
        inner = getattr(fork, "_by", None)
        if isinstance(inner, by):
            pending.append((inner, template._by))
        keys_of(fork)
        pending.extend(zip(fork.argument_streams(), template.argument_streams(), strict=False))
    return mapping


class StreamCounters:
    """Counts the calls of every stream while installed (see the module docs)."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.outs: dict[int, int] = {}
        self._caller: list[int | None] = [None]  # the stream being called, if any
        # fork id -> the config's stream it was forked from (through nested forks)
        self.template: dict[int, Any] = {}
        self._patched: list[tuple[type, Any]] = []

    def _wrap(self, cls: type) -> None:
        if "__call__" not in cls.__dict__:
            return
        calls = self.calls
        outs = self.outs
        caller = self._caller
        original: Callable[[Any, Any], object] = cls.__dict__["__call__"]

        def counted(stream: Any, event: Any) -> object:
            key = id(stream)
            calls[key] = calls.get(key, 0) + 1
            parent = caller[0]
            if parent is not None:
                outs[parent] = outs.get(parent, 0) + 1
            caller[0] = key
            try:
                return original(stream, event)
            finally:
                caller[0] = parent

        self._patched.append((cls, ("__call__", original)))
        setattr(cls, "__call__", counted)  # noqa: B010 (any stream class)

    def install(self) -> StreamCounters:
        template = self.template
        original_fork = Stream.__dict__["fork"]

        def fork(stream: Any, memo: dict[int, Any] | None = None) -> Any:
            copy = original_fork(stream, memo)
            if copy is not stream:
                template[id(copy)] = template.get(id(stream), stream)
            return copy

        self._patched.append((Stream, ("fork", original_fork)))
        setattr(Stream, "fork", fork)  # noqa: B010 (restored by uninstall)
        for cls in {Stream, *_classes(Stream)}:
            self._wrap(cls)
        _installed.append(self)
        return self

    def restored(self, streams: list[Any]) -> None:
        """Count the forks that every ``by`` of ``streams`` holds under the stream they
        stand for: forks a checkpoint restored were never forked here."""
        self.template.update(_forked(streams))

    def uninstall(self) -> None:
        if self in _installed:
            _installed.remove(self)
        while self._patched:
            cls, (name, original) = self._patched.pop()
            setattr(cls, name, original)

    def __enter__(self) -> StreamCounters:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def table(self, streams: list[Any]) -> list[tuple[str, Any, int, int | None]]:
        """(node id, stream, in, out) for every stream of the config, parents first."""
        template = self.template

        def total(counts: dict[int, int]) -> dict[int, int]:
            found: dict[int, int] = {}
            for key, count in counts.items():
                origin = template.get(key)
                key = id(origin) if origin is not None else key
                found[key] = found.get(key, 0) + count
            return found

        ins, outs = total(self.calls), total(self.outs)
        return [(node.id, node.stream, ins.get(id(node.stream), 0),
                 None if node.stream.shared else outs.get(id(node.stream), 0))
                for node in nodes(streams)]

    def text(self, streams: list[Any]) -> str:
        lines = [f"{'in':>10} {'out':>10}  stream"]
        for path, _stream, count, out in self.table(streams):
            lines.append(f"{count:>10} {'' if out is None else out:>10}  {path}")
        return "\n".join(lines)
