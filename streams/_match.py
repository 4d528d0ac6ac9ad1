"""The one matching rule used wherever a field is tested (spec §3.2.1).

A compiled regex searches strings, a callable is called, a set means
membership, None matches only None, a dict matches field by field, and
anything else means equality (Python's: ``1 == 1.0``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from ._event import FIELDS

__all__ = ["field_getter", "matcher", "matches"]


def matches(pattern: Any, value: Any) -> bool:
    """Whether ``value`` matches ``pattern`` under the one matching rule.

    >>> import re
    >>> matches(re.compile("^cpu"), "cpu user"), matches({1, 2}, 2), matches(None, 0)
    (True, True, False)
    >>> matches(lambda v: v > 3, 5), matches(5, 5.0), matches("a", "b")
    (True, True, False)
    """
    return matcher(pattern)(value)


def matcher(pattern: Any) -> Callable[[Any], bool]:
    """Compile ``pattern`` into a one-argument test (done once, at config load)."""
    if isinstance(pattern, re.Pattern):
        search = pattern.search
        return lambda value: isinstance(value, str) and search(value) is not None
    if isinstance(pattern, (set, frozenset)):
        members = frozenset(pattern)
        return lambda value: _safe_in(value, members)
    if pattern is None:
        return lambda value: value is None
    if isinstance(pattern, dict):
        tests = [(field_getter(key), matcher(sub)) for key, sub in pattern.items()]
        # A missing value has no fields: each of them reads as None, as in Clojure.
        return lambda value: all(test(None if value is None else get(value))
                                 for get, test in tests)
    if callable(pattern):
        return lambda value: bool(pattern(value))
    return lambda value: bool(value == pattern)


def _safe_in(value: Any, members: frozenset[Any]) -> bool:
    try:
        return value in members
    except TypeError:  # unhashable values are in no set
        return False


def field_getter(field: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A fast reader for a field name (base field or attribute), or the function itself.

    >>> from streams import Event
    >>> field_getter("host")(Event(host="a")), field_getter("env")(Event(env="prod"))
    ('a', 'prod')
    """
    if callable(field):
        return field
    if not isinstance(field, str):
        raise TypeError(f"a field must be a field name or a function of the event, got {field!r}")
    if field in FIELDS:
        return operator.attrgetter(field)
    return lambda event: event.get(field)
