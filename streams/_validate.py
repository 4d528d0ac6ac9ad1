"""Checks for the arguments streams are built with: one error type, one message style.

Every stream checks its configuration when it is built, so a mistake fails
when the config loads, not at the first event. Each check below raises
:class:`StreamArgumentError` with a message that names the call and the
argument, shows the value and suggests the fix::

    rate(interval, *children): interval must be a positive number of seconds,
    got 0; e.g. rate(5, child)

Numbers are what :class:`numbers.Real` accepts (int, float, Fraction, numpy's
numbers), except ``bool``: ``True`` as a threshold is a mistake, not 1.
Integral values are kept as ``int``, other reals become ``float``, so events
keep int or float metrics. ``Decimal`` is refused: it is not a
``numbers.Real``, and Python refuses to mix it with the float metrics events
carry, so it would fail at the first event instead of at load.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from ._event import FIELDS
from ._match import field_getter, is_number

__all__ = [
    "StreamArgumentError", "argument_error", "count", "field_keyword", "field_reader", "function",
    "is_number",
    "number", "seconds", "stream", "tag_list", "unit_interval",
]


class StreamArgumentError(TypeError, ValueError):
    """A stream was built with an argument it cannot use.

    It is both a ``TypeError`` and a ``ValueError``, so code written against
    either keeps catching it, whichever the mistake was.

    >>> from streams import rate
    >>> try:
    ...     rate("5", print)
    ... except StreamArgumentError as error:
    ...     print(error)  # doctest: +NORMALIZE_WHITESPACE
    rate(interval, *children): interval must be a positive number of seconds,
    got '5'; e.g. rate(5, child)
    """


# Shown in tracebacks under the name users import it by.
StreamArgumentError.__module__ = "streams"


def argument_error(caller: str, name: str, value: Any, expected: str,
                   example: str | None = None) -> StreamArgumentError:
    """The error for argument ``name`` of ``caller``: what it must be, what it was, the fix."""
    message = f"{caller}: {name} must be {expected}, got {value!r}"
    if isinstance(value, Decimal):
        message += " (a Decimal does not mix with float metrics; write float(...) or a Fraction)"
    if example:
        message += f"; e.g. {example}"
    return StreamArgumentError(message)


def _plain(value: Any) -> float:
    # Events carry int or float metrics; a Fraction threshold or factor would
    # otherwise turn metrics into Fractions.
    if type(value) is int or type(value) is float:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def number(value: Any, caller: str, name: str, example: str | None = None) -> float:
    """A finite real number.

    >>> from fractions import Fraction
    >>> number(Fraction(1, 4), "scale(factor, *children)", "factor")
    0.25
    """
    if not is_number(value) or not math.isfinite(value):
        raise argument_error(caller, name, value, "a finite number", example)
    return _plain(value)


def seconds(value: Any, caller: str, name: str = "interval", example: str | None = None, *,
            zero: bool = False) -> float:
    """A finite duration in seconds, > 0 (or >= 0 with ``zero=True``)."""
    if not is_number(value) or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        expected = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise argument_error(caller, name, value, expected, example)
    return _plain(value)


def count(value: Any, caller: str, name: str = "n", *, minimum: int = 0,
          what: str = "events", example: str | None = None) -> int:
    """A whole number >= ``minimum`` (an int, not a float or a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise argument_error(caller, name, value, f"a whole number of {what} >= {minimum}",
                             example)
    return int(value)


def unit_interval(value: Any, caller: str, name: str, meaning: str,
                  example: str | None = None) -> float:
    """A number from 0 to 1 (a weight, a quantile)."""
    if not is_number(value) or not 0 <= value <= 1:
        raise argument_error(caller, name, value, f"{meaning}, a number from 0 to 1", example)
    return _plain(value)


def stream(value: Any, caller: str, name: str, example: str | None = None) -> Any:
    """A stream: anything callable with one event."""
    if not callable(value):
        raise argument_error(caller, name, value, "a stream (a callable taking one event)",
                             example)
    return value


def function(value: Any, caller: str, name: str, takes: str,
             example: str | None = None) -> Any:
    """A function of ``takes`` (e.g. "a list of values")."""
    if not callable(value):
        raise argument_error(caller, name, value, f"a function of {takes}", example)
    return value


def field_reader(value: Any, caller: str, name: str = "field",
                 example: str | None = None) -> Callable[[Any], Any]:
    """The reader for a field argument: a field name or a function of the event."""
    try:
        return field_getter(value)
    except TypeError:
        raise argument_error(caller, name, value, "a field name or a function of the event",
                             example) from None


def tag_list(value: Any, caller: str, name: str = "tags",
             example: str | None = None) -> tuple[str, ...]:
    """One tag or a list of tags, as a tuple of strings."""
    if isinstance(value, str):
        return (value,)
    items = tuple(value) if isinstance(value, Iterable) else None
    if items is None or not all(isinstance(tag, str) for tag in items):
        raise argument_error(caller, name, value, "a tag or a list of tags (strings)", example)
    return items


def field_keyword(name: Any, caller: str) -> str:
    """A field given as a keyword: a base field, or an attribute name.

    Any name that is not a base field reads an attribute, so a misspelled
    field would silently match nothing; a name this close to a base field is
    taken for a misspelling: most of the field (difflib's ratio >= 0.8), or the
    field with one letter dropped, added or two neighbours swapped. A changed
    letter alone is not enough (``cost`` is a fair attribute name).

    >>> field_keyword("servce", "where(...)")
    Traceback (most recent call last):
    ...
    streams.StreamArgumentError: where(...): 'servce' is not a field; did you mean 'service'? ...
    """
    if not isinstance(name, str):
        raise argument_error(caller, "every field name", name, "a string")
    if name in FIELDS:
        return name
    close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.8) or [
        field for field in FIELDS if _slip(name, field)]
    if close:
        raise StreamArgumentError(
            f"{caller}: {name!r} is not a field; did you mean {close[0]!r}? The fields are "
            f"{', '.join(FIELDS)}, and any other name is an attribute; for an attribute "
            f"named {name!r}, use a function of the event, e.g. lambda e: e.get({name!r})"
        )
    return name


def _slip(typed: str, field: str) -> bool:
    """Whether ``typed`` is ``field`` with one letter dropped, added, or two neighbours swapped."""
    if abs(len(typed) - len(field)) == 1:
        shorter, longer = sorted((typed, field), key=len)
        return any(longer[:i] + longer[i + 1:] == shorter for i in range(len(longer)))
    if len(typed) == len(field):
        diff = [i for i in range(len(field)) if typed[i] != field[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and \
            typed[diff[0]] == field[diff[1]] and typed[diff[1]] == field[diff[0]]
    return False
