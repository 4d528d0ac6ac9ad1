"""Stream state per partition: what a worker hands to the next owner of a partition.

Reload keeps a stream's state by keeping the running object; a partition that
moves to another worker process cannot, so its state travels as data. A
worker exports, with each partition's index snapshot, the state of the
config's streams that belongs to that partition, and the new owner puts it
into its own (identical) streams before replaying what came after.

Which state belongs to a partition: a ``by`` (and ``changed_state``, which
is a ``by`` over host and service) whose fields include every partition key
field gives each key its own forks, and a key's partition follows from its
values; everything under such a key's forks belongs to that partition. State
outside such forks (a top-level ``throttle`` or ``rate`` seeing every host
of the worker) mixes partitions: it stays with the worker and the new owner
keeps its own. Streams are matched by their node id (their place in the
config, see ``streams._nodes``; a key's forks are named as the templates they
copy) and their class, and the snapshot is used only by a worker whose config
has the same source text. A snapshot carries its format: one written in
another (by an older rillet, during a rolling upgrade) restores no stream
state, and says so.

Carried (the streams whose per-key state decides which alerts repeat):
``by``, ``changed_state``, ``changed``, ``throttle``, ``runs``. Every other
stateful stream (windows, rates, ``stable``, ``by_builder``...) starts
fresh on the new owner, as it did before state was carried.

This module is the one place that knows how those streams hold their state.

>>> from streams import Event, by, changed_state, VirtualClock, Runtime
>>> from transport._jetstream import ScaleOut
>>> settings = ScaleOut(partitions=4)
>>> def config(out): return [by("host", changed_state(out.append))]
>>> first, seen = config([]), []
>>> with Runtime(VirtualClock(10)):
...     for host in ("a", "b"): first[0](Event(host=host, service="s", state="critical"))
...     state = export(first, settings)
>>> sorted(state)                  # partition -> that partition's state
[1, 3]
>>> second = config(seen)
>>> with Runtime(VirtualClock(20)):
...     _ = restore(second, state[settings.partition(Event(host="a"))])
...     second[0](Event(host="a", service="s", state="critical"))   # no change: no alert
...     second[0](Event(host="b", service="s", state="critical"))   # b's state stayed behind
>>> [e.host for e in seen]
['b']
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from streams import Event, Stream, by, changed, changed_state, runs, throttle
from streams._nodes import Node, nodes, nodes_under

from ._jetstream import ScaleOut

__all__ = ["drop", "export", "restore"]

log = logging.getLogger("rillet.handover")

#: What :func:`export` writes per partition: ``{"format": FORMAT, "nodes": {node id: State}}``.
#: The first format (nested by argument position, before node ids) is refused.
FORMAT = "rillet.handover/2"
# A node's exported state: (class name, its own state or None, and for a by: {key: the
# states of the key's forks by node id, named as the templates they copy}).
State = tuple[str, Any, dict[Any, dict[str, Any]] | None]


def _plain(value: Any) -> Any:
    """A value that pickles and means the same in another process (a wire event
    decoded lazily becomes a plain Event)."""
    if hasattr(value, "as_dict") and not isinstance(value, Event):
        return Event(**value.as_dict())
    return value


def _changed_state(stream: changed) -> Any:
    return (_plain(stream._previous_value), _plain(stream._previous_event))


def _set_changed(stream: changed, state: Any) -> None:
    stream._previous_value, stream._previous_event = state


def _throttle_state(stream: throttle) -> Any:
    windows = stream._windows
    return (windows.anchor, windows.start, stream._count)


def _set_throttle(stream: throttle, state: Any) -> None:
    anchor, start, count = state
    windows = stream._windows
    windows.stop()
    windows.anchor = anchor
    stream._count = 0
    if start is not None:
        # The window the old owner had open goes on here (same anchor, so the
        # same end) with the events it already passed, if it is not over yet.
        windows.observe()
        if windows.start == start:
            stream._count = count


def _runs_state(stream: runs) -> Any:
    return (_plain(stream._previous), stream._length)


def _set_runs(stream: runs, state: Any) -> None:
    stream._previous, stream._length = state


_CARRIED: dict[type, tuple[Callable[[Any], Any], Callable[[Any, Any], None]]] = {
    changed: (_changed_state, _set_changed),
    throttle: (_throttle_state, _set_throttle),
    runs: (_runs_state, _set_runs),
}


def _key_partition(stream: by, settings: ScaleOut,
                   known: dict[Any, int] | None = None) -> Callable[[Any], int] | None:
    """How a key of ``stream`` maps to its partition, or None when its fields do not
    include every partition key field (its keys span partitions). ``known``
    remembers the answers (by fields and key), for several calls in a row."""
    fields = stream.fields
    names = [fields] if isinstance(fields, str) else fields
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names) \
            or not set(settings.key) <= set(names):
        return None

    def of(key: Any) -> int:
        values = {names[0]: key} if len(names) == 1 else dict(zip(names, key, strict=True))
        return settings.partition(SimpleNamespace(**values))

    if known is None:
        return of
    fields_key = tuple(names)

    def remembered(key: Any) -> int:
        partition = known.get((fields_key, key))
        if partition is None:
            partition = known[fields_key, key] = of(key)
        return partition

    return remembered


def export(streams: list[Any], settings: ScaleOut, partitions: set[int] | None = None,
           known: dict[Any, int] | None = None) -> dict[int, Any]:
    """Each partition's state in ``streams`` (the running config's top-level streams),
    for ``partitions`` (default: every partition found), ready for :func:`dumps`.
    ``known`` remembers the partitions of ``by`` keys across calls (a worker
    exports one partition per turn of its loop)."""
    # A by's keys grouped by partition once per export, not once per partition.
    by_partition: dict[int, dict[int | None, list[tuple[Any, Any]]]] = {}

    def states(walk: Iterator[Node], partition: int, inside: bool) -> dict[str, State]:
        """The state of the nodes of ``walk`` for ``partition``; ``inside`` when they are
        in a key's forks of that partition (their own state belongs to it then)."""
        found: dict[str, State] = {}
        for node in walk:
            stream = node.stream
            if stream.shared:
                continue
            kind = type(stream)
            own = _CARRIED[kind][0](stream) if inside and kind in _CARRIED else None
            target = _as_by(stream)
            keys = by_keys(target, node.id, partition, inside) if isinstance(target, by) \
                else None
            if own is not None or keys:
                found[node.id] = (kind.__name__, own, keys)
        return found

    def by_keys(stream: by, node_id: str, partition: int,
                inside: bool) -> dict[Any, dict[str, State]]:
        if inside:
            chosen = list(stream._forks.items())
        else:
            groups = by_partition.get(id(stream))
            if groups is None:
                groups = by_partition[id(stream)] = {}
                of = _key_partition(stream, settings, known)
                if of is not None:
                    for key, forks in stream._forks.items():
                        groups.setdefault(of(key), []).append((key, forks))
            chosen = groups.get(partition, [])
        return {key: states(nodes_under(node_id, forks, parent=stream, descend=_descend),
                            partition, True) for key, forks in chosen}

    wanted = partitions if partitions is not None else _partitions_present(streams, settings)
    return {partition: {"format": FORMAT,
                        "nodes": states(nodes(streams, descend=_descend), partition, False)}
            for partition in wanted}


def _descend(stream: Stream) -> bool:
    # A by's own arguments are templates that never see an event: its keys' forks
    # are walked instead.
    return not stream.shared and not isinstance(_as_by(stream), by)


def _as_by(stream: Stream) -> Stream:
    """The ``by`` holding a stream's per-key forks (``changed_state`` keeps one inside)."""
    return stream._by if isinstance(stream, changed_state) else stream


def _keyed(streams: list[Any], settings: ScaleOut, known: dict[Any, int] | None = None
           ) -> Iterator[tuple[by, Callable[[Any], int]]]:
    """The outermost ``by``s whose keys fall in partitions, with their key → partition."""
    for node in nodes(streams, descend=_descend):
        target = _as_by(node.stream)
        if isinstance(target, by) and not node.stream.shared:
            of = _key_partition(target, settings, known)
            if of is not None:
                yield target, of


def remember_partitions(streams: list[Any], settings: ScaleOut, known: dict[Any, int],
                        slice_size: int = 2048) -> Iterator[None]:
    """Work out the partition of every key the partitioned ``by``s hold into ``known``
    (for :func:`export`), pausing (yielding) after each ``slice_size`` keys."""
    done = 0
    for keyed, of in _keyed(streams, settings, known):
        for key in list(keyed._forks):
            of(key)
            done += 1
            if done % slice_size == 0:
                yield


def _partitions_present(streams: list[Any], settings: ScaleOut) -> set[int]:
    return {of(key) for keyed, of in _keyed(streams, settings) for key in keyed._forks}


def restore(streams: list[Any], state: Any) -> int:
    """Put one partition's exported ``state`` into ``streams``; returns the number of
    keys whose forks were restored. A node whose class differs is left as it is; a state
    of another format (an older rillet's) is left out whole, with a warning."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else "rillet.handover/1"
        log.warning("handover: the snapshot's stream state is in the format %s (written by "
                    "another version of rillet), this one reads %s: the streams start fresh "
                    "(the index entries are restored)", found, FORMAT)
        return 0
    return _into(nodes(streams, descend=_descend), state["nodes"])


def _into(walk: Iterator[Node], saved: dict[str, State]) -> int:
    restored = 0
    for node in walk:
        found = saved.get(node.id)
        if found is None:
            continue
        stream = node.stream
        name, own, keys = found
        if type(stream).__name__ != name:
            log.warning("handover: %r is not the %s the snapshot has; left fresh", stream, name)
            continue
        if own is not None and type(stream) in _CARRIED:
            _CARRIED[type(stream)][1](stream, own)
        target = _as_by(stream)
        if keys and isinstance(target, by):
            for key, inner in keys.items():
                _drop_key(target, key)
                target._new_key(key)
                restored += 1 + _into(nodes_under(node.id, target._forks[key], parent=target,
                                                  descend=_descend), inner)
    return restored


def drop(streams: list[Any], settings: ScaleOut, partitions: set[int]) -> int:
    """Forget the per-key state of ``partitions`` (their new owner has it now), so
    taking one of them back later starts from its snapshot, not from stale state."""
    dropped = 0
    for keyed, of in _keyed(streams, settings):
        for key in [k for k in keyed._forks if of(k) in partitions]:
            _drop_key(keyed, key)
            dropped += 1
    return dropped


def _drop_key(stream: by, key: Any) -> None:
    forks = stream._forks.pop(key, None)
    if forks is None:
        return
    stream._current.pop(key, None)
    stream._previous.pop(key, None)
    for fork in forks:
        if isinstance(fork, Stream) and not fork.shared:
            fork.close()


def dumps(state: Any) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    # The snapshot store belongs to this deployment's workers, which wrote it
    # with the same code: it is trusted like the config itself.
    return pickle.loads(data)
