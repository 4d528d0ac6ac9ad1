"""Plumbing and combinators: bit_bucket, smap_all, smapcat, sflatten, sreduce,
append, register and pipe (spec §3.1).

``sdo`` lives in ``_core`` and ``smap`` in ``_fields``; Riemann's
``execute-on``/``async-queue!`` and ``forward`` belong to ``transport``
because they hand events to another task.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from ._core import Child, Stream
from ._core import register_stream as register_constructor
from ._validate import StreamArgumentError, argument_error

__all__ = [
    "append", "bit_bucket", "pipe", "register", "sflatten", "smap", "smap_all", "smapcat",
    "sreduce",
]


def _function(value: Any, caller: str, hint: str) -> Callable[..., Any]:
    if not callable(value):
        raise argument_error(caller, "the function", value, "callable", hint)
    return value  # type: ignore[no-any-return]


class bit_bucket(Stream):
    """Discard everything (Riemann's ``bit-bucket``).

    >>> drop = bit_bucket()
    >>> drop("anything") is None
    True
    """

    __slots__ = ()
    shared = True  # stateless: every fork may use the same one

    def __init__(self) -> None:
        self._set_children(())

    def __call__(self, event: Any) -> None:
        return None


class smap(Stream):
    """Forward ``f(event)`` unless it is None.

    >>> from streams import Event
    >>> out = []
    >>> s = smap(lambda e: e.evolve(metric=e.metric * 2), out.append)
    >>> s(Event(metric=21)); out
    [Event(metric=42)]
    """

    __slots__ = ("function",)
    copy_forks = True  # no state
    childless = True  # the function may be the point: smap(print)

    def __init__(self, function: Callable[[Any], Any], *children: Child) -> None:
        if not callable(function):
            raise StreamArgumentError(
                f"smap(function, *children): function must be callable, got {function!r}; "
                f"to set fields use with_(...)"
            )
        self.function = function
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        value = self.function(event)
        if value is not None:
            self._out(value)


class smap_all(Stream):
    """Forward ``f(event)`` whatever it is, None included (Riemann's ``smap*``).

    >>> out = []
    >>> s = smap_all(lambda x: x, out.append)
    >>> for x in [1, None, False, 3]: s(x)
    >>> out
    [1, None, False, 3]
    """

    __slots__ = ("function",)
    copy_forks = True  # no state
    childless = True  # the function may be the point, as with smap

    def __init__(self, function: Callable[[Any], Any], *children: Child) -> None:
        self.function = _function(function, "smap_all(function, *children)",
                                  "e.g. smap_all(lambda e: e.metric, child)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        self._out(self.function(event))


class smapcat(Stream):
    """Forward each element of the iterable ``f(event)`` returns; None forwards nothing.

    >>> out = []
    >>> s = smapcat(lambda x: [x, x], out.append)
    >>> for x in range(4): s(x)
    >>> out
    [0, 0, 1, 1, 2, 2, 3, 3]
    """

    __slots__ = ("function",)
    copy_forks = True  # no state
    childless = True  # the function may be the point, as with smap

    def __init__(self, function: Callable[[Any], Iterable[Any] | None], *children: Child) -> None:
        self.function = _function(function, "smapcat(function, *children)",
                                  "e.g. smapcat(lambda e: [e, e.evolve(service='copy')], child)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        values = self.function(event)
        if values is None:  # Clojure's nil is an empty sequence
            return
        out = self._out
        for value in values:
            out(value)


class sflatten(Stream):
    """Forward each element of an incoming list (or any iterable); None forwards nothing.

    >>> out = []
    >>> s = sflatten(out.append)
    >>> s([0, 1, 2, 3]); s([4, 5, 6, 7])
    >>> out
    [0, 1, 2, 3, 4, 5, 6, 7]
    """

    __slots__ = ()
    copy_forks = True  # no state

    def __call__(self, events: Any) -> None:
        if events is None:
            return
        out = self._out
        for event in events:
            out(event)


_NO_INIT: Any = type("_NoInit", (), {"__repr__": lambda self: "<no init>"})()


class sreduce(Stream):
    """Fold every input into an accumulator with ``f(acc, x)`` and forward each new value.

    With ``init`` the first input already gives ``f(init, x)``; without it the
    first input only becomes the accumulator and nothing is forwarded.

    >>> out = []
    >>> s = sreduce(lambda acc, x: acc + x, out.append, init=1)
    >>> for x in [1, 2, 3]: s(x)
    >>> out
    [2, 4, 7]
    >>> out = []
    >>> s = sreduce(lambda acc, x: acc + x, out.append)
    >>> for x in [1, 2, 3, 4]: s(x)
    >>> out
    [3, 6, 10]
    """

    __slots__ = ("_acc", "function")

    def __init__(self, function: Callable[[Any, Any], Any], *children: Child,
                 init: Any = _NO_INIT) -> None:
        self.function = _function(function, "sreduce(function, *children, init=...)",
                                  "e.g. sreduce(lambda acc, e: acc + e.metric, child, init=0)")
        # Each instance (and each fork under by) starts from its own copy, so a
        # function that changes the accumulator in place never shares it.
        self._acc = init if init is _NO_INIT else copy.deepcopy(init)
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        acc = self._acc
        if acc is _NO_INIT:
            self._acc = event
            return
        acc = self._acc = self.function(acc, event)
        self._out(acc)


class append(Stream):
    """Append every event to a list (or anything with ``append``): a test sink.

    Shared: every fork of a config appends to the same list.

    >>> seen = []
    >>> s = append(seen)
    >>> s(1); s(2); seen
    [1, 2]
    """

    __slots__ = ("_append", "target")
    shared = True

    def __init__(self, target: Any) -> None:
        method = getattr(target, "append", None)
        if not callable(method):
            raise argument_error("append(target)", "target", target,
                                 "a list or have an append method", "seen = []; append(seen)")
        self.target = target
        self._append = method
        self._set_children(())

    def __call__(self, event: Any) -> None:
        self._append(event)


class register(Stream):
    """Keep the latest event in ``.value``: a test sink (Riemann's ``register``).

    Without an argument the stream is its own holder; with one, it sets
    ``holder.value`` on any object with a writable ``value`` attribute. Shared:
    every fork writes to the same place.

    >>> latest = register()
    >>> latest(1); latest(2); latest.value
    2
    >>> from types import SimpleNamespace
    >>> box = SimpleNamespace(value=None)
    >>> register(box)("hi"); box.value
    'hi'
    """

    __slots__ = ("holder", "value")
    shared = True

    def __init__(self, holder: Any = None) -> None:
        self.value: Any = None
        if holder is not None:
            try:
                # Checks at config load that the holder can take a value.
                holder.value = getattr(holder, "value", None)
            except AttributeError:
                raise StreamArgumentError(
                    f"register(holder): holder must have a writable .value attribute, got "
                    f"{holder!r}; e.g. box = types.SimpleNamespace(value=None); register(box), "
                    f"or latest = register() and read latest.value"
                ) from None
        self.holder = self if holder is None else holder
        self._set_children(())

    def __call__(self, event: Any) -> None:
        self.holder.value = event


@register_constructor
def pipe(*stages: Any) -> Any:
    """Write a chain in flow order: each stage but the last is a function of the next stream.

    ``pipe(f, g, sink)`` is ``f(g(sink))``. A stage may use the next stream
    several times, like Riemann's marker; ``functools.partial(smap, inc)`` is
    a stage too. Returns the first stream of the chain.

    >>> from functools import partial
    >>> from streams import smap
    >>> out = []
    >>> s = pipe(lambda next: smap(lambda x: x + 1, next), partial(smap, lambda x: x * 2),
    ...          out.append)
    >>> for x in [1, 2, 3]: s(x)
    >>> out
    [4, 6, 8]
    """
    if not stages:
        raise StreamArgumentError("pipe(*stages): give at least the last stream, "
                        "e.g. pipe(lambda next: smap(f, next), sink)")
    stream = stages[-1]
    if not callable(stream):
        raise StreamArgumentError(f"pipe(*stages): the last stage must be a stream, got {stream!r}")
    for position in range(len(stages) - 2, -1, -1):
        stage = stages[position]
        if isinstance(stage, Stream) or not callable(stage):
            raise StreamArgumentError(
                f"pipe(*stages): stage {position} must be a function of the next stream, got "
                f"{stage!r}; write it as lambda next: smap(f, next) or partial(smap, f)"
            )
        stream = stage(stream)
        if not callable(stream):
            raise StreamArgumentError(
                f"pipe(*stages): stage {position} ({stage!r}) returned {stream!r}, "
                f"not a stream; it must build a stream around the next one")
    return stream
