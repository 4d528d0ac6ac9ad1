"""Field transformers: with_, default, tag (spec §3.3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import toolz

from ._core import Child, Stream
from ._validate import argument_error, field_keyword, tag_list

__all__ = ["default", "tag", "with_"]


def _changes(
    fields: dict[str, Any] | None, keywords: dict[str, Any], caller: str
) -> dict[str, Any]:
    changes: dict[str, Any] = toolz.merge(fields or {}, keywords)
    for key in changes:
        field_keyword(key, caller)
    return changes


def _apply_each(event: Any, change: Callable[[Any], Any]) -> Any:
    if isinstance(event, (list, tuple)):
        return type(event)(change(e) for e in event)
    return change(event)


class with_(Stream):
    """Set fields on every event; None removes an attribute. Lists are changed element-wise.

    >>> from streams import Event
    >>> out = []
    >>> s = with_({"service": "foo"}, out.append, env="prod")
    >>> s(Event(service="bar", metric=1)); out
    [Event(service='foo', metric=1, env='prod')]
    """

    __slots__ = ("changes",)
    copy_forks = True  # no state: a fork is its configuration and its children

    def __init__(self, fields: dict[str, Any] | None = None, *children: Child,
                 **changes: Any) -> None:
        if fields is not None and not isinstance(fields, dict):
            raise argument_error("with_(fields, *children, **changes)", "fields", fields,
                                 "a dict or None",
                                 "with_(None, child, state='ok') or with_({'state': 'ok'}, child)")
        self.changes = _changes(fields, changes, "with_(fields, *children, **changes)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        # Inline, not _apply_each with a closure: this runs once per event.
        changes = self.changes
        if isinstance(event, (list, tuple)):
            self._out(type(event)(e.evolve(**changes) for e in event))
        else:
            self._out(event.evolve(**changes))


class default(Stream):
    """Set fields only where the event has none.

    >>> from streams import Event
    >>> out = []
    >>> s = default({"ttl": 60, "state": "ok"}, out.append)
    >>> s(Event(state="critical")); out
    [Event(state='critical', ttl=60)]
    """

    __slots__ = ("defaults",)
    copy_forks = True  # no state

    def __init__(self, fields: dict[str, Any] | None = None, *children: Child,
                 **defaults: Any) -> None:
        if fields is not None and not isinstance(fields, dict):
            raise argument_error("default(fields, *children, **defaults)", "fields", fields,
                                 "a dict or None", "default({'ttl': 60}, child)")
        self.defaults = _changes(fields, defaults, "default(fields, *children, **defaults)")
        self._set_children(children)

    def _fill(self, event: Any) -> Any:
        missing = {k: v for k, v in self.defaults.items() if event.get(k) is None}
        return event.evolve(**missing) if missing else event

    def __call__(self, event: Any) -> None:
        self._out(_apply_each(event, self._fill))


class tag(Stream):
    """Add tags: new ones first, each tag once.

    >>> from streams import Event
    >>> out = []
    >>> tag(["foo", "bar"], out.append)(Event(tags=("foo", "baz"))); out[0].tags
    ('foo', 'bar', 'baz')
    """

    __slots__ = ("tags",)
    copy_forks = True  # no state

    def __init__(self, tags: str | Iterable[str], *children: Child) -> None:
        self.tags = tag_list(tags, "tag(tags, *children)", example="tag(['web', 'prod'], child)")
        self._set_children(children)

    def _tag(self, event: Any) -> Any:
        return event.evolve(tags=tuple(dict.fromkeys(self.tags + event.tags)))

    def __call__(self, event: Any) -> None:
        # Inline, not _apply_each with a closure: this runs once per event.
        if isinstance(event, (list, tuple)):
            self._out(type(event)(self._tag(e) for e in event))
        else:
            self._out(self._tag(event))
