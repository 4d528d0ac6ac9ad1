"""Field transformers: adjust, scale, untag (spec §3.3).

``with_``, ``default`` and ``tag`` live in ``_fields``. Like them, the
field-changing streams here change each event of a list element-wise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._core import Child, Stream
from ._fields import _apply_each
from ._match import field_getter
from ._validate import StreamArgumentError, argument_error, number, tag_list

__all__ = ["adjust", "scale", "untag"]


class adjust(Stream):
    """Replace one field by a function of its value: ``adjust(field, function, *children)``.

    The function receives None when the field is absent. ``adjust(function,
    *children)`` applies the function to the whole event and forwards the
    result unless it is None, exactly like ``smap``.

    >>> from streams import Event
    >>> out = []
    >>> s = adjust("state", lambda state: (state or "") + " 2", out.append)
    >>> s(Event()); s(Event(state="hey"))
    >>> [e.state for e in out]
    [' 2', 'hey 2']
    """

    __slots__ = ("_change", "field", "function")
    copy_forks = True  # no state

    def __init__(self, field: str | Callable[[Any], Any], *rest: Any) -> None:
        caller = "adjust(field, function, *children)"
        self.field: str | None
        if isinstance(field, str):
            if not rest or not callable(rest[0]) or isinstance(rest[0], Stream):
                got = repr(rest[0]) if rest else "nothing"
                raise StreamArgumentError(
                    f"{caller}: after the field name {field!r} give the function of its value, "
                    f"got {got}; e.g. adjust({field!r}, lambda v: v * 100, child)")
            self.field, self.function = field, rest[0]
            children = rest[1:]
            get = field_getter(field)
            function = self.function
            self._change: Callable[[Any], Any] | None = (
                lambda event: event.evolve(**{field: function(get(event))})
            )
        elif callable(field) and not isinstance(field, Stream):
            self.field, self.function, self._change = None, field, None
            children = rest
        elif isinstance(field, (list, tuple)) and field:
            raise StreamArgumentError(
                f"{caller}: Riemann's vector form adjust([field, f, *args], ...) is written "
                f"adjust(field, lambda v: f(v, *args), ...) here, got {field!r}; e.g. "
                f"adjust('state', lambda s: str(s or '') + ' 2', child)"
            )
        else:
            raise argument_error(caller, "field", field,
                                 "a field name (or adjust(function, ...) to map whole events)",
                                 "adjust('metric', lambda m: m * 100, child)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        change = self._change
        if change is None:
            value = self.function(event)
            if value is not None:
                self._out(value)
        else:
            self._out(_apply_each(event, change))


class scale(Stream):
    """Multiply the metric by ``factor``; an event without a metric passes unchanged.

    >>> from streams import Event
    >>> out = []
    >>> s = scale(100, out.append)
    >>> s(Event(metric=0.5)); s(Event(service="no metric"))
    >>> [e.metric for e in out]
    [50.0, None]
    """

    __slots__ = ("factor",)
    copy_forks = True  # no state

    def __init__(self, factor: float, *children: Child) -> None:
        self.factor = number(factor, "scale(factor, *children)", "factor",
                             "scale(1000, child) turns seconds into ms")
        self._set_children(children)

    def _scale(self, event: Any) -> Any:
        metric = event.metric
        return event if metric is None else event.evolve(metric=metric * self.factor)

    def __call__(self, event: Any) -> None:
        self._out(_apply_each(event, self._scale))


class untag(Stream):
    """Remove the given tags (one tag or a list); the others keep their order.

    >>> from streams import Event
    >>> out = []
    >>> untag(["foo", "bar"], out.append)(Event(tags=("baz", "foo", "qux"))); out[0].tags
    ('baz', 'qux')
    """

    __slots__ = ("_remove", "tags")
    copy_forks = True  # no state

    def __init__(self, tags: str | Iterable[str], *children: Child) -> None:
        self.tags = tag_list(tags, "untag(tags, *children)", example="untag(['debug'], child)")
        self._remove = frozenset(self.tags)
        self._set_children(children)

    def _untag(self, event: Any) -> Any:
        remove = self._remove
        tags = event.tags
        if remove.isdisjoint(tags):
            return event
        return event.evolve(tags=tuple(t for t in tags if t not in remove))

    def __call__(self, event: Any) -> None:
        self._out(_apply_each(event, self._untag))
