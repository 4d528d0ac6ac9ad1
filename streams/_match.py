"""The one matching rule used wherever a field is tested (spec §3.2.1).

A compiled regex searches strings, a callable is called, a set means
membership, None matches only None, a dict matches field by field, and
anything else means equality (Python's: ``1 == 1.0``), except that a bool
never equals a number (Python has ``True == 1``). The query language's
``=``, ``!=`` and ordering use the same :func:`equal` and :func:`is_number`,
so ``where(None, child, metric=1)`` and ``where('metric = 1', child)`` agree.
"""

from __future__ import annotations

import numbers
import operator
import re
from collections.abc import Callable
from typing import Any

from ._event import FIELDS

__all__ = ["equal", "equal_to", "field_getter", "is_number", "matcher", "matches"]

#: Checked by class first: far cheaper than isinstance(numbers.Real) on hot paths.
FAST_NUMBER_TYPES = frozenset({int, float})


def is_number(value: object) -> bool:
    """Ints, floats and other ``numbers.Real``, but never bools.

    >>> is_number(1), is_number(2.5), is_number(True), is_number("1")
    (True, True, False, False)
    """
    cls = value.__class__
    if cls in FAST_NUMBER_TYPES:
        return True
    return isinstance(value, numbers.Real) and cls is not bool


def equal(a: object, b: object) -> bool:
    """Python equality, except that booleans never equal numbers.

    >>> equal(1, 1.0), equal(1, True), equal(True, True), equal("a", "a")
    (True, False, True, True)
    """
    return bool(a == b) and (a.__class__ is bool) == (b.__class__ is bool)


def _same(value: Any) -> Any:
    return value


def equal_to(literal: object, read: Callable[[Any], Any] = _same) -> Callable[[Any], bool]:
    """``equal(read(x), literal)`` as a one-argument test, specialized once for the hot path.

    ``read`` (e.g. a field reader) is composed here so that a field test is one call.
    """
    if literal is None or literal is True or literal is False:
        return lambda x: read(x) is literal
    if isinstance(literal, str):
        return lambda x: bool(read(x) == literal)
    return lambda x: bool((value := read(x)) == literal) and value.__class__ is not bool


def matches(pattern: Any, value: Any) -> bool:
    """Whether ``value`` matches ``pattern`` under the one matching rule.

    >>> import re
    >>> matches(re.compile("^cpu"), "cpu user"), matches({1, 2}, 2), matches(None, 0)
    (True, True, False)
    >>> matches(lambda v: v > 3, 5), matches(5, 5.0), matches("a", "b")
    (True, True, False)
    """
    return matcher(pattern)(value)


def matcher(pattern: Any, read: Callable[[Any], Any] | None = None) -> Callable[[Any], bool]:
    """Compile ``pattern`` into a one-argument test (done once, at config load).

    With ``read`` (a field reader), the test reads the field first.
    """
    if read is not None:
        if _is_literal(pattern):
            return equal_to(pattern, read)
        test = matcher(pattern)
        return lambda x: test(read(x))
    if isinstance(pattern, re.Pattern):
        search = pattern.search
        return lambda value: isinstance(value, str) and search(value) is not None
    if isinstance(pattern, (set, frozenset)):
        # Sets test membership by Python equality, under which True is in {1}.
        flags = frozenset(m for m in pattern if m.__class__ is bool)
        others = frozenset(m for m in pattern if m.__class__ is not bool)
        return lambda value: (value in flags if value.__class__ is bool
                              else _safe_in(value, others))
    if pattern is None:
        return lambda value: value is None
    if isinstance(pattern, dict):
        tests = [(field_getter(key), matcher(sub)) for key, sub in pattern.items()]
        # A missing value has no fields: each of them reads as None, as in Clojure.
        return lambda value: all(test(None if value is None else get(value))
                                 for get, test in tests)
    if callable(pattern):
        return lambda value: bool(pattern(value))
    return equal_to(pattern)


def _is_literal(pattern: Any) -> bool:
    """Whether ``pattern`` means equality under the matching rule."""
    return pattern is not None and not isinstance(
        pattern, (re.Pattern, set, frozenset, dict)) and not callable(pattern)


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
