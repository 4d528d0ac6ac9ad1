"""Routing: match, splitp, dual (spec §3.2).

``where``, ``split`` and the tag filters live in ``_filters``; Riemann's
``where*`` and ``split*`` are the same streams given functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._core import Child, Stream, call_isolated, entry_point, expire_event, is_expired
from ._filters import predicate
from ._match import matcher
from ._validate import StreamArgumentError, field_reader, function
from ._validate import stream as stream_argument

__all__ = ["dual", "match", "splitp"]


class match(Stream):
    """Forward events whose ``field`` (a name or a function) matches ``pattern``.

    The one matching rule: a compiled regex searches strings, a callable is
    called, a set means membership, None matches only None, a dict matches
    field by field, anything else means equality.

    >>> import re
    >>> from streams import Event
    >>> out = []
    >>> s = match("state", re.compile("^mi"), out.append)
    >>> for st in ["minor", "major", None]: s(Event(state=st))
    >>> [e.state for e in out]
    ['minor']
    """

    __slots__ = ("_get", "_test", "field", "pattern")

    def __init__(self, field: str | Callable[[Any], Any], pattern: Any,
                 *children: Child) -> None:
        self._get = field_reader(field, "match(field, pattern, *children)",
                                 example="match('service', 'cpu', child)")
        self.field = field
        self.pattern = pattern
        self._test = matcher(pattern)
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        if self._test(self._get(event)):
            self._out(event)


class splitp(Stream):
    """Send each event to the first stream whose ``test`` satisfies ``pred(test, value)``.

    ``value`` is read from the event by ``field`` (a name or a function).
    Give ``test, stream`` pairs; a trailing lone stream is the default. With
    no match and no default it raises ValueError. The chosen stream is called
    directly, so its failures propagate.

    >>> import operator
    >>> from streams import Event
    >>> crit, warn, ok = [], [], []
    >>> s = splitp(operator.lt, "metric", 0.9, crit.append, 0.5, warn.append, ok.append)
    >>> for m in [0.95, 0.7, 0.1]: s(Event(metric=m))
    >>> [len(crit), len(warn), len(ok)]
    [1, 1, 1]
    """

    __slots__ = ("_branches", "_default", "_get", "field", "pred")

    def __init__(self, pred: Callable[[Any, Any], Any], field: str | Callable[[Any], Any],
                 *clauses: Any) -> None:
        caller = "splitp(pred, field, test1, stream1, ..., [default])"
        example = "splitp(operator.lt, 'metric', 0.9, critical, ok)"
        function(pred, caller, "pred", "(test, value)", example)
        self._get = field_reader(field, caller, example=example)
        if not clauses:
            raise StreamArgumentError(f"{caller}: give at least one test and stream, "
                            f"e.g. splitp(operator.lt, 'metric', 0.9, critical, ok)")
        pairs = list(clauses)
        default = pairs.pop() if len(pairs) % 2 == 1 else None
        self._branches = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
        for test, stream in self._branches:
            if not callable(stream):
                stream_argument(stream, caller, f"the stream for test {test!r}")
        self.pred = pred
        self.field = field
        streams = [s for _, s in self._branches]
        self._set_children(streams if default is None else [*streams, default])
        self._branches = [(test, entry_point(s)) for test, s in self._branches]
        self._default = entry_point(default) if default is not None else None

    def __call__(self, event: Any) -> None:
        value = self._get(event)
        pred = self.pred
        for test, stream in self._branches:
            if pred(test, value):
                stream(event)
                return
        if self._default is None:
            raise ValueError(f"splitp: no clause matched {value!r} and there is no default "
                             f"stream; add one as the last argument")
        self._default(event)


class dual(Stream):
    """Send each live event to one stream and its expiry to the other.

    When ``condition`` holds, ``false_stream`` gets ``expire_event(e)`` and
    then ``true_stream`` gets ``e``; otherwise the other way round. Expired
    events go to both, unchanged. The condition is a function, a query string
    or field patterns, as in ``where``.

    >>> from streams import Event
    >>> up, down = [], []
    >>> s = dual(lambda e: e.metric > 5, up.append, down.append)
    >>> s(Event(host="a", metric=9, time=0))
    >>> [(e.metric, e.state) for e in up], [(e.host, e.state) for e in down]
    ([(9, None)], [('a', 'expired')])
    """

    __slots__ = ("_false", "_true", "predicate")

    def __init__(self, condition: Any, true_stream: Child, false_stream: Child,
                 **fields: Any) -> None:
        self.predicate = predicate(condition, fields,
                                   "dual(condition, true_stream, false_stream)")
        self._set_children((true_stream, false_stream))
        self._true, self._false = true_stream, false_stream

    def __call__(self, event: Any) -> None:
        holds = self.predicate(event)  # called once per event, expired or not, as in Riemann
        if is_expired(event):
            call_isolated(self._true, event)
            call_isolated(self._false, event)
        elif holds:
            call_isolated(self._false, expire_event(event))
            call_isolated(self._true, event)
        else:
            call_isolated(self._true, expire_event(event))
            call_isolated(self._false, event)
