"""Partitioning: by, by_builder, by_fn (spec §3.4)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from . import _compiled
from ._clock import Task, scheduler
from ._core import Child, Stream, fan_out, forked
from ._match import field_getter
from ._validate import StreamArgumentError, argument_error, count, field_reader, seconds

__all__ = ["by", "by_builder", "by_fn"]

def key_function(fields: Any, caller: str) -> Callable[[Any], Any]:
    """A field name, a function, or a list of them → one key function."""
    if isinstance(fields, (list, tuple)):
        if not fields:
            raise StreamArgumentError(
                f"{caller}: give at least one field, e.g. by(['host', 'service'], ...)"
            )
        if all(isinstance(f, str) and f in _BASE for f in fields):
            if len(fields) == 1:
                return operator.attrgetter(fields[0])
            return operator.attrgetter(*fields)
        getters = [field_reader(f, caller, f"every field of {fields!r}") for f in fields]
        return lambda event: tuple(get(event) for get in getters)
    try:
        return field_getter(fields)
    except TypeError:
        raise argument_error(caller, "fields", fields,
                             "a field name, a function of the event, or a list of them",
                             "by('host', ...) or by(['host', 'service'], ...)") from None


_BASE = frozenset(("host", "service", "state", "description", "metric", "tags", "time", "ttl"))


class by(Stream):
    """Give every distinct key its own fresh copy of the children.

    ``by("host", rate(5, sink))`` forks ``rate`` per host; shared sinks (the
    index, forwarders, plain functions) stay shared. Keyed state is bounded:
    ``max_keys`` caps the number of keys (the least recently created idle key
    goes first) and ``idle`` drops keys that saw no event for between one and
    two ``idle`` periods. ``len(stream)`` is the current number of keys.

    >>> from streams import Event, rate
    >>> from streams.testing import run
    >>> out = run(lambda sink: by("host", rate(1, sink)),
    ...           [Event(host="a", metric=1, time=0), Event(host="b", metric=2, time=0),
    ...            Event(host="a", metric=3, time=0), Event(time=1)])
    >>> sorted((e.host, e.metric) for e in out)
    [('a', 4.0), ('b', 2.0)]
    """

    __slots__ = ("_current", "_evicted", "_forks", "_idle", "_key", "_max_keys", "_previous",
                 "_sweeper", "fields")
    templates = True  # events go to per-key forks of the children, never to them

    def __init__(self, fields: str | Callable[[Any], Any] | Sequence[Any], *children: Child,
                 max_keys: int = 100_000, idle: float | None = None) -> None:
        self.fields = fields
        self._key = key_function(fields, "by(fields, *children)")
        if not children:
            raise StreamArgumentError("by(fields, *children): give the streams to fork per key, "
                                      "e.g. by('host', rate(5, sink))")
        caller = "by(fields, *children, max_keys=100_000, idle=None)"
        count(max_keys, caller, "max_keys", minimum=1, what="keys")
        if idle is not None:
            seconds(idle, caller, "idle", "by('host', child, idle=3600)")
        self._set_children(children)
        # The templates never see an event; every key gets fresh forks. Streams that
        # start a timer when built (fill_in) must not keep ticking in the template.
        _close(self.children)
        self._max_keys = max_keys
        self._idle = idle
        self._init_state()

    def _init_fork(self, template: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   memo: dict[int, Any]) -> None:
        # A nested by is forked once per key of the outer one: its configuration
        # was validated when the template was built and its templates are
        # shared (see ``templates``), so only the keys start afresh. Written out
        # rather than copy_forks, which bench_fork.py measures slower here.
        self.fields, self._key = template.fields, template._key
        self.children, self._out = template.children, template._out
        self._max_keys, self._idle = template._max_keys, template._idle
        self._init_state()

    def _init_state(self) -> None:
        # Two generations: keys seen since the last idle sweep, and before it.
        self._current: dict[Any, Child] = {}
        self._previous: dict[Any, Child] = {}
        # The fork objects behind each key's entry point, to close them on eviction.
        self._forks: dict[Any, tuple[Any, ...]] = {}
        self._sweeper: Task | None = None
        self._evicted = 0

    def __call__(self, event: Any) -> None:
        key = self._key(event)
        try:
            fork = self._current[key]
        except KeyError:
            fork = self._new_key(key)
        fork(event)

    def _entry_point(self) -> Child:
        if _compiled.speedups is not None and type(self).__call__ is _BY_CALL:
            return _compiled.speedups.By(self, self._key)  # type: ignore[no-any-return]
        return self.__call__

    def _new_key(self, key: Any) -> Child:
        fork = self._previous.pop(key, None)
        if fork is None:
            if len(self._current) + len(self._previous) >= self._max_keys:
                self._evict()
            forks = forked(self.children, {})
            self._forks[key] = forks
            fork = fan_out(forks)
            if self._idle is not None and self._sweeper is None:
                self._sweeper = scheduler().every(self._idle, self._sweep, delay=self._idle)
        self._current[key] = fork
        return fork

    def _evict(self) -> None:
        generation = self._previous or self._current
        oldest = next(iter(generation))
        del generation[oldest]
        _close(self._forks.pop(oldest))
        self._evicted += 1

    def _sweep(self) -> None:
        for key in self._previous:
            _close(self._forks.pop(key))
        self._evicted += len(self._previous)
        self._previous, self._current = self._current, {}

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def keys(self) -> list[Any]:
        """The keys that currently have forks."""
        return [*self._previous, *self._current]

    def statistics(self) -> dict[str, int]:
        return {"keys": len(self), "evicted": self._evicted, "max_keys": self._max_keys}

    def close(self) -> None:
        for forks in self._forks.values():
            _close(forks)
        self._forks.clear()
        self._previous.clear()
        self._current.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


_BY_CALL = by.__call__


def _close(forks: tuple[Any, ...]) -> None:
    for fork in forks:
        if isinstance(fork, Stream) and not fork.shared:
            fork.close()


class _Built(Stream):
    """A by-fork that builds its streams from the key of the first event it sees."""

    __slots__ = ("_getters", "_inner", "factory", "unpack")
    childless = True  # its streams come from the factory, per key

    def __init__(self, factory: Callable[..., Any], getters: tuple[Callable[[Any], Any], ...],
                 unpack: bool) -> None:
        self.factory = factory
        self._getters = getters
        self.unpack = unpack
        self._inner: Child | None = None
        self._set_children(())

    def __call__(self, event: Any) -> None:
        inner = self._inner
        if inner is None:
            inner = self._inner = self._build(event)
        inner(event)

    def _build(self, event: Any) -> Child:
        if self.unpack:
            built = self.factory(*(get(event) for get in self._getters))
        else:
            built = self.factory()
        streams = tuple(built) if isinstance(built, (list, tuple)) else (built,)
        if not streams or not all(callable(s) for s in streams):
            raise TypeError(f"the factory {self.factory!r} must return a stream or a list of "
                            f"streams, got {built!r}")
        self._set_children(streams)
        return self._out


class _ByFactory(Stream):
    """``by`` whose per-key streams come from a factory rather than forked templates."""

    __slots__ = ("_by", "factory", "fields")
    childless = True  # its streams come from the factory, per key
    _unpack: bool

    def __init__(self, fields: str | Callable[[Any], Any] | Sequence[Any],
                 factory: Callable[..., Any], *, max_keys: int = 100_000,
                 idle: float | None = None) -> None:
        name = type(self).__name__
        if not callable(factory) or isinstance(factory, Stream):
            example = "lambda host: rate(5, sink)" if self._unpack else "lambda: rate(5, sink)"
            raise argument_error(f"{name}(fields, factory)", "factory", factory,
                                 "a function returning the streams for one key",
                                 f"{name}('host', {example})")
        listed = list(fields) if isinstance(fields, (list, tuple)) else [fields]
        getters = tuple(field_getter(f) for f in listed if isinstance(f, str) or callable(f))
        self.fields = fields
        self.factory = factory
        self._set_children(())
        # by validates fields, max_keys and idle, and owns eviction of idle keys.
        self._by = by(fields, _Built(factory, getters, self._unpack), max_keys=max_keys,
                      idle=idle)

    def __call__(self, event: Any) -> None:
        self._by(event)

    def __len__(self) -> int:
        return len(self._by)

    def keys(self) -> list[Any]:
        """The keys that currently have streams."""
        return self._by.keys()

    def statistics(self) -> dict[str, int]:
        return self._by.statistics()

    def close(self) -> None:
        self._by.close()


class by_builder(_ByFactory):
    """Like ``by``, but each key's streams come from ``factory(*key_values)``.

    The factory gets one argument per field (Riemann's ``by-builder`` binds
    names to the key), so per-key streams can use the key, e.g. in a service
    name. Keys are bounded like ``by`` (``max_keys``, ``idle``).

    >>> from streams import Event, with_
    >>> out = []
    >>> s = by_builder("host", lambda host: with_(None, out.append, service=f"{host} seen"))
    >>> s(Event(host="a")); s(Event(host="b")); s(Event(host="a"))
    >>> [e.service for e in out], len(s)
    (['a seen', 'b seen', 'a seen'], 2)
    """

    __slots__ = ()
    _unpack = True


class by_fn(_ByFactory):
    """Like ``by``, but each key's streams come from calling ``factory()`` afresh.

    >>> from streams import Event, sreduce
    >>> out = []
    >>> s = by_fn("host", lambda: sreduce(lambda n, e: n + 1, out.append, init=0))
    >>> for h in ["a", "b", "a"]: s(Event(host=h))
    >>> out
    [1, 1, 2]
    """

    __slots__ = ()
    _unpack = False
