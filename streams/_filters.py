"""Filters and routing: where, split, tagged, expired, over, under (spec §3.2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import _compiled
from ._core import Child, Stream, entry_point, fan_out, forked, is_expired
from ._match import field_getter, matcher
from ._validate import StreamArgumentError, argument_error, field_keyword, number, tag_list

__all__ = [
    "expired", "not_expired", "over", "split", "tagged", "tagged_all", "tagged_any",
    "under", "where",
]


def predicate(expression: Any, fields: dict[str, Any], caller: str) -> Callable[[Any], Any]:
    """Compile a where-style expression: a function, a query string, or field patterns."""
    tests: list[Callable[[Any], Any]] = []
    if isinstance(expression, str):
        from ._query import compile_query  # the query module is only needed for strings

        tests.append(compile_query(expression).predicate)
    elif callable(expression):
        tests.append(expression)
    elif expression is not None:
        raise argument_error(
            caller, "the condition", expression,
            "a function of the event, a query string or field=pattern keywords",
            "where(lambda e: e.metric > 3, ...) or where('service =~ \"api%\"', ...) "
            "or where(None, ..., service=re.compile('^api'))")
    for field, pattern in fields.items():
        tests.append(matcher(pattern, field_getter(field_keyword(field, caller))))
    if not tests:
        raise StreamArgumentError(
            f"{caller}: give a condition, e.g. where(lambda e: e.metric > 3, child)")
    if len(tests) == 1:
        return tests[0]
    return lambda event: all(test(event) for test in tests)


class where(Stream):
    """Forward events that satisfy a condition; others go to ``else_``.

    The condition is a function, a query string, or field patterns under the
    one matching rule (regex searches, callable called, set membership, else
    equality):

    >>> import re
    >>> from streams import Event
    >>> hits, misses = [], []
    >>> s = where(None, hits.append, else_=misses.append, service=re.compile("^cpu"))
    >>> for svc in ["cpu user", "disk", "cpu sys"]: s(Event(service=svc))
    >>> [e.service for e in hits], [e.service for e in misses]
    (['cpu user', 'cpu sys'], ['disk'])
    """

    __slots__ = ("_else", "_else_children", "predicate")
    copy_forks = True  # no state; the else branch is wired again below

    def __init__(self, condition: Any, *children: Child, else_: Child | Iterable[Child] = (),
                 **fields: Any) -> None:
        self.predicate = predicate(condition, fields, "where(condition, *children)")
        self._else_children, self._else = else_branch(else_)
        self._set_children(children, required=not self._else_children)

    def __call__(self, event: Any) -> None:
        if self.predicate(event):
            self._out(event)
        elif self._else is not None:
            self._else(event)

    def _init_fork(self, template: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   memo: dict[int, Any]) -> None:
        super()._init_fork(template, args, kwargs, memo)
        # The copied else branch is the template's.
        self._else_children, self._else = else_branch(forked(template._else_children, memo))

    def _entry_point(self) -> Child:
        if _compiled.speedups is not None and type(self).__call__ is _WHERE_CALL:
            return _compiled.speedups.Where(  # type: ignore[no-any-return]
                self.predicate, self._out, self._else)
        return self.__call__

    def close(self) -> None:
        close_else(self._else_children)
        super().close()


_WHERE_CALL = where.__call__


def else_branch(else_: Child | Iterable[Child]) -> tuple[tuple[Child, ...], Child | None]:
    """The ``else_`` streams of a filter, and one callable feeding them (None if none)."""
    children = (else_,) if callable(else_) else tuple(else_)
    return children, (fan_out(children) if children else None)


def close_else(children: tuple[Child, ...]) -> None:
    """Stop the timers of an else branch, which is not in ``children``."""
    for child in children:
        if isinstance(child, Stream) and not child.shared:
            child.close()


class split(Stream):
    """Send each event to the first branch whose condition holds (Riemann's ``split``).

    Give ``(condition, stream)`` pairs; a trailing lone stream is the default.

    >>> from streams import Event
    >>> big, small, other = [], [], []
    >>> s = split(lambda e: e.metric > 10, big.append, "metric > 1", small.append, other.append)
    >>> for m in [50, 5, 0]: s(Event(metric=m))
    >>> [len(big), len(small), len(other)]
    [1, 1, 1]
    """

    __slots__ = ("_branches", "_default")

    def __init__(self, *clauses: Any) -> None:
        pairs = list(clauses)
        default = pairs.pop() if len(pairs) % 2 == 1 else None
        self._branches = [
            (predicate(pairs[i], {}, "split(condition, stream, ...)"), pairs[i + 1])
            for i in range(0, len(pairs), 2)
        ]
        streams_ = [s for _, s in self._branches] + ([default] if default is not None else [])
        self._set_children(streams_)
        # Children are checked above; now call each through its fastest entry point.
        self._branches = [(test, entry_point(s)) for test, s in self._branches]
        self._default = entry_point(default) if default is not None else None

    def __call__(self, event: Any) -> None:
        for test, stream in self._branches:
            if test(event):
                stream(event)
                return
        if self._default is not None:
            self._default(event)


def _as_tag_set(tags: str | Iterable[str], caller: str) -> frozenset[str]:
    return frozenset(tag_list(tags, caller, example=f"{caller.split('(')[0]}(['web', 'prod'], "
                                                    f"child)"))


class tagged_all(Stream):
    """Forward events that carry every one of the given tags.

    >>> from streams import Event
    >>> out = []
    >>> s = tagged_all(["web", "prod"], out.append)
    >>> s(Event(tags=("prod", "web", "eu"))); s(Event(tags=("web",)))
    >>> len(out)
    1
    """

    __slots__ = ("_tags",)

    def __init__(self, tags: str | Iterable[str], *children: Child) -> None:
        self._tags = _as_tag_set(tags, f"{type(self).__name__}(tags, *children)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        if self._tags.issubset(event.tags):
            self._out(event)


class tagged(tagged_all):
    """Alias of :class:`tagged_all`.

    >>> from streams import Event
    >>> out = []
    >>> tagged("web", out.append)(Event(tags=("web",))); len(out)
    1
    """

    __slots__ = ()


class tagged_any(Stream):
    """Forward events that carry at least one of the given tags.

    >>> from streams import Event
    >>> out = []
    >>> s = tagged_any(["a", "b"], out.append)
    >>> s(Event(tags=("b",))); s(Event(tags=("c",)))
    >>> len(out)
    1
    """

    __slots__ = ("_tags",)

    def __init__(self, tags: str | Iterable[str], *children: Child) -> None:
        self._tags = _as_tag_set(tags, "tagged_any(tags, *children)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        if not self._tags.isdisjoint(event.tags):
            self._out(event)


class expired(Stream):
    """Forward events that are expired: state "expired" or older than their ttl.

    >>> from streams import Event
    >>> out = []
    >>> s = expired(out.append)
    >>> s(Event(state="expired")); s(Event(state="ok"))
    >>> len(out)
    1
    """

    __slots__ = ()

    def __call__(self, event: Any) -> None:
        if is_expired(event):
            self._out(event)


class not_expired(Stream):
    """Forward events that are not expired.

    >>> from streams import Event
    >>> out = []
    >>> s = not_expired(out.append)
    >>> s(Event(state="expired")); s(Event(state="ok"))
    >>> [e.state for e in out]
    ['ok']
    """

    __slots__ = ()

    def __call__(self, event: Any) -> None:
        if not is_expired(event):
            self._out(event)


def _threshold(value: Any, caller: str) -> float:
    return number(value, caller, "threshold")


class over(Stream):
    """Forward events whose metric is strictly above ``threshold``; no metric, no pass.

    >>> from streams import Event
    >>> out = []
    >>> s = over(5, out.append)
    >>> for m in [3, 5, 7, None]: s(Event(metric=m))
    >>> [e.metric for e in out]
    [7]
    """

    __slots__ = ("threshold",)

    def __init__(self, threshold: float, *children: Child) -> None:
        self.threshold = _threshold(threshold, "over(threshold, *children)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        metric = event.metric
        if metric is not None and metric > self.threshold:
            self._out(event)


class under(Stream):
    """Forward events whose metric is strictly below ``threshold``; no metric, no pass.

    >>> from streams import Event
    >>> out = []
    >>> s = under(5, out.append)
    >>> for m in [3, 5, 7, None]: s(Event(metric=m))
    >>> [e.metric for e in out]
    [3]
    """

    __slots__ = ("threshold",)

    def __init__(self, threshold: float, *children: Child) -> None:
        self.threshold = _threshold(threshold, "under(threshold, *children)")
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        metric = event.metric
        if metric is not None and metric < self.threshold:
            self._out(event)

