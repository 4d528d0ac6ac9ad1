"""Riemann's query language (spec §5.4): parse once, compile to nested closures.

>>> q = compile_query('service = "cpu" and metric > 0.9 and not tagged "maintenance"')
>>> q(Event(service="cpu", metric=0.95)), q(Event(service="cpu", metric=0.95, tags=["maintenance"]))
(True, False)
>>> q
compile_query('service = "cpu" and metric > 0.9 and not tagged "maintenance"')

The grammar is Riemann's ``query.g4``, parsed by hand (no ANTLR):

- comparisons ``=  !=  <  <=  >  >=``; ``<`` and friends are true only when
  both sides are numbers, and take a number literal on the right;
- ``field =~ "pat%"`` is SQL LIKE (``%`` is any run of characters, the rest
  literal, ``_`` included, anchored at both ends), matched in linear time
  without a regex; ``field ~= "re"`` is a regular-expression *search* run by
  RE2 (the ``google-re2`` binding), which takes linear time in the text
  whatever the pattern, so a query cannot stall the server;
- ``tagged "t"``; ``not`` > ``and`` > ``or``, left-associative, parentheses;
- literals ``nil``/``null``, ``true``/``false``, numbers (``12``, ``12N``,
  ``1.5``, ``-1.2e-5``, ``Infinity``, ``-Infinity``, ``NaN``), strings in
  double quotes with the escapes ``\\" \\\\ \\b \\t \\n \\f \\r \\uXXXX``;
- any other name is a field: base fields or custom attributes (``paws = 4``);
- whitespace includes the comma.

A bare field (or literal) is a predicate that is true when its value is
neither nil nor false, so ``metric`` alone matches a metric of 0 as in
Riemann. An event without tags reads ``tags`` as nil.

Deliberate differences from Riemann (documented in the docs):

- numbers compare as in Python: ``metric = 1`` matches 1.0 (Riemann's
  Clojure equality does not); booleans are never numbers (``metric = true``
  does not match 1);
- field names stop at ``=``, ``!``, ``<`` and ``>``, so ``host="a"`` and
  ``metric>1`` parse as comparisons. Riemann's lexer swallows ``host=1`` into
  one field name that never exists, silently matching nothing.
- ``~=`` is RE2's syntax, not Java's: a pattern RE2 cannot run in linear
  time (backreferences ``\\1``, lookaround ``(?=``, possessive ``a++``)
  is refused when the query is parsed, with RE2's reason;
- parse errors give ANTLR's message plus the column, e.g.
  ``mismatched input 'no' expecting {<EOF>, 'and', 'or'} at column 4``.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import re2  # type: ignore[import-untyped]

from ._event import FIELDS, Event
from ._match import FAST_NUMBER_TYPES, equal, equal_to, is_number

__all__ = [
    "And",
    "Compare",
    "Field",
    "Like",
    "Literal",
    "Not",
    "Or",
    "Query",
    "QuerySyntaxError",
    "Regex",
    "Tagged",
    "compile_query",
    "lookup_key",
    "parse_query",
]

Predicate: TypeAlias = Callable[[Event], bool]
Scalar: TypeAlias = bool | int | float | str | None


# Abstract syntax ----------------------------------------------------------
#
# ``str(node)`` gives canonical query text that parses back to an equal node,
# with only the parentheses that precedence needs.


@dataclass(frozen=True, slots=True)
class Field:
    """An event field or attribute, read by name."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: nil, true, false, a number or a string."""

    value: Scalar

    def __str__(self) -> str:
        return _format_literal(self.value)


Value: TypeAlias = Field | Literal


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right`` with op one of ``= != < <= > >=``."""

    op: str
    left: Value
    right: Value

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, slots=True)
class Like:
    """``operand =~ "pattern"``: SQL LIKE, ``%`` any run of characters, anchored."""

    operand: Value
    pattern: str

    def __str__(self) -> str:
        return f"{self.operand} =~ {_quote(self.pattern)}"


@dataclass(frozen=True, slots=True)
class Regex:
    """``operand ~= "pattern"``: regular-expression search."""

    operand: Value
    pattern: str

    def __str__(self) -> str:
        return f"{self.operand} ~= {_quote(self.pattern)}"


@dataclass(frozen=True, slots=True)
class Tagged:
    """``tagged "tag"``: the event's tags contain ``tag``."""

    tag: str

    def __str__(self) -> str:
        return f"tagged {_quote(self.tag)}"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def __str__(self) -> str:
        return f"not {_wrap(self.operand, isinstance(self.operand, (And, Or)))}"


@dataclass(frozen=True, slots=True)
class And:
    left: Node
    right: Node

    def __str__(self) -> str:
        left = _wrap(self.left, isinstance(self.left, Or))
        return f"{left} and {_wrap(self.right, isinstance(self.right, (And, Or)))}"


@dataclass(frozen=True, slots=True)
class Or:
    left: Node
    right: Node

    def __str__(self) -> str:
        return f"{self.left} or {_wrap(self.right, isinstance(self.right, Or))}"


Node: TypeAlias = Field | Literal | Compare | Like | Regex | Tagged | Not | And | Or


def _wrap(node: Node, parenthesize: bool) -> str:
    return f"({node})" if parenthesize else str(node)


_PRINT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                  "\f": "\\f", "\r": "\\r"}


def _quote(text: str) -> str:
    return '"' + "".join(_PRINT_ESCAPES.get(c, c) for c in text) + '"'


def _format_literal(value: Scalar) -> str:
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        # The grammar's exponent has no '+': 1e+16 must print as 1e16.
        return repr(value).replace("e+", "e")
    return str(value)


# Errors -------------------------------------------------------------------


class QuerySyntaxError(ValueError):
    """A query that does not parse. The message starts like ANTLR's and names the column.

    Attributes: ``query`` (the text), ``position`` (0-based offset), ``line``
    and ``column`` (1-based), ``found`` (the offending token's text) and
    ``expected`` (what would have been accepted there).
    """

    def __init__(self, query: str, position: int, message: str, found: str = "",
                 expected: tuple[str, ...] = (), hint: str = "") -> None:
        self.query = query
        self.position = position
        self.line = query.count("\n", 0, position) + 1
        self.column = position - (query.rfind("\n", 0, position) + 1) + 1
        self.found = found
        self.expected = expected
        where = f"line {self.line}, column {self.column}" if self.line > 1 else (
            f"column {self.column}")
        hint = f"; {hint}" if hint else ""
        super().__init__(f"{message} at {where} of query {query!r}{hint}")


# Lexer --------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # the literal text for keywords and operators, else an ANTLR token name
    text: str
    start: int


_NAME_EXCLUDED = "^`'\"#~@:/%()\\[\\]{} \\n\\r\\t,=!<>"
# Rules in ANTLR order: on equal-length matches the earlier rule wins, and the
# longest match always wins (so "android" is a name, "and" a keyword).
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("OP", re.compile(r"!=|<=|>=|=~|~=|[()=<>]")),
    ("KEYWORD", re.compile(r"and|or|not|tagged|true|false|nil|null")),
    ("STRING", re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)),
    ("FLOAT", re.compile(r"-?[0-9]+(?:\.[0-9]+(?:[eE]-?[0-9]+)?|[eE]-?[0-9]+)|-?Infinity|-?NaN")),
    ("HEX", re.compile(r"0[xX][0-9a-fA-F]+")),
    ("LONG", re.compile(r"-?[0-9]+[lL]?")),
    ("BIGN", re.compile(r"-?[0-9]+[nN]")),
    ("CHAR", re.compile(r"\\(?:u[0-9D-Fd-f][0-9a-fA-F]{3}|newline|return|space|tab|formfeed"
                        r"|backspace|.)", re.DOTALL)),
    ("NAME", re.compile(
        f"[^0-9{_NAME_EXCLUDED}][^{_NAME_EXCLUDED}]*(?::[^{_NAME_EXCLUDED}]+)*")),
)
_WHITESPACE = re.compile(r"[ \t\r\n,]*")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = _skip_whitespace(text, 0)
    end = len(text)
    while position < end:
        best_kind, best_end = "", position
        for kind, rule in _RULES:
            match = rule.match(text, position)
            if match is not None and match.end() > best_end:
                best_kind, best_end = kind, match.end()
        if not best_kind:
            raise _unrecognized(text, position)
        word = text[position:best_end]
        if best_kind in ("OP", "KEYWORD"):
            best_kind = "nil" if word == "null" else word
        tokens.append(_Token(best_kind, word, position))
        position = _skip_whitespace(text, best_end)
    tokens.append(_Token("EOF", "<EOF>", end))
    return tokens


def _display(text: str) -> str:
    """A token as ANTLR shows it in messages: quoted, with only \\n \\r \\t escaped."""
    return "'" + text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"


def _skip_whitespace(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)
    return position if match is None else match.end()


def _unrecognized(text: str, position: int) -> QuerySyntaxError:
    char = text[position]
    if char == '"':
        return QuerySyntaxError(
            text, position,
            f"token recognition error at: {_display(text[position:])}", found=text[position:],
            hint='the string is never closed; end it with a double quote (")')
    hint = ""
    if char == "~":
        hint = "'~' only appears in '~=' (regex match) and '=~' (LIKE)"
    elif char == "!":
        hint = "'!' only appears in '!='; negate a predicate with 'not'"
    elif char == "'":
        hint = 'strings use double quotes, e.g. host = "web1"'
    return QuerySyntaxError(text, position, f"token recognition error at: {_display(char)}",
                            found=char, hint=hint)


# Parser -------------------------------------------------------------------

_VALUE_START = frozenset({"true", "false", "nil", "FLOAT", "BIGN", "LONG", "STRING", "NAME"})
_NUMBERS_KINDS = frozenset({"FLOAT", "BIGN", "LONG"})
_EXPECT_VALUE = ("'true'", "'false'", "'nil'", "NUMBER", "STRING", "NAME")
_EXPECT_PRIMARY = ("'('", "'not'", "'tagged'", *_EXPECT_VALUE)
_EXPECT_NUMBER = ("NUMBER",)
_ORDERING = frozenset({"<", "<=", ">", ">="})

_STRING_ESCAPES = {'"': '"', "\\": "\\", "b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


class _Parser:
    """Recursive descent over the token list; one method per precedence level."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, expected: tuple[str, ...], hint: str = "") -> QuerySyntaxError:
        token = self.peek()
        message = f"mismatched input {_display(token.text)} expecting {{{', '.join(expected)}}}"
        return QuerySyntaxError(self.text, token.start, message, token.text, expected, hint)

    def parse(self) -> Node:
        node = self.disjunction()
        if self.peek().kind != "EOF":
            raise self.fail(("<EOF>", "'and'", "'or'"), self._operator_hint())
        return node

    def _operator_hint(self) -> str:
        if self.peek().kind in _VALUE_START and self.index > 0:
            return ("two values in a row: put an operator between them, one of "
                    "= != < <= > >= =~ ~=")
        return ""

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.peek().kind == "or":
            self.advance()
            node = Or(node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.peek().kind == "and":
            self.advance()
            node = And(node, self.negation())
        return node

    def negation(self) -> Node:
        if self.peek().kind == "not":
            self.advance()
            return Not(self.negation())
        return self.primary()

    def primary(self) -> Node:
        kind = self.peek().kind
        if kind == "(":
            self.advance()
            node = self.disjunction()
            if self.peek().kind != ")":
                raise self.fail(("'and'", "'or'", "')'"), self._operator_hint())
            self.advance()
            return node
        if kind == "tagged":
            self.advance()
            return Tagged(self.string('tagged takes a string, e.g. tagged "production"'))
        if kind not in _VALUE_START:
            raise self.fail(_EXPECT_PRIMARY)
        left = self.value()
        op = self.peek().kind
        if op in ("=", "!="):
            self.advance()
            if self.peek().kind not in _VALUE_START:
                raise self.fail(_EXPECT_VALUE)
            return Compare(op, left, self.value())
        if op in _ORDERING:
            self.advance()
            if self.peek().kind not in _NUMBERS_KINDS:
                raise self.fail(_EXPECT_NUMBER, f"{op} compares with a number, e.g. metric {op} 5")
            return Compare(op, left, self.value())
        if op == "=~":
            self.advance()
            return Like(left, self.string('=~ takes a LIKE pattern string, e.g. host =~ "web%"'))
        if op == "~=":
            self.advance()
            start = self.peek().start
            pattern = self.string('~= takes a regex string, e.g. host ~= "^web[0-9]+"')
            try:
                _compile_regex(pattern)
            except re2.error as error:
                raise QuerySyntaxError(
                    self.text, start,
                    f"invalid regular expression {pattern!r}: {_reason(error)}", found=pattern,
                    hint="~= takes RE2 syntax, which runs in linear time and so has no "
                         "backreferences, lookaround or possessive quantifiers; a backslash "
                         "in a query string is written \\\\") from None
            return Regex(left, pattern)
        return left

    def string(self, hint: str) -> str:
        if self.peek().kind != "STRING":
            raise self.fail(("STRING",), hint)
        token = self.advance()
        return _unescape(self.text, token)

    def value(self) -> Value:
        token = self.advance()
        kind = token.kind
        if kind == "NAME":
            return Field(token.text)
        if kind == "STRING":
            return Literal(_unescape(self.text, token))
        if kind == "true":
            return Literal(True)
        if kind == "false":
            return Literal(False)
        if kind == "nil":
            return Literal(None)
        if kind == "FLOAT":
            return Literal(float(token.text))
        if kind == "BIGN":
            return Literal(int(token.text[:-1]))
        # LONG
        if token.text[-1] in "lL":
            raise QuerySyntaxError(
                self.text, token.start,
                f"unsupported number {token.text!r}", found=token.text,
                hint=f"write {token.text[:-1]} without the {token.text[-1]} suffix")
        return Literal(int(token.text))


def _unescape(text: str, token: _Token) -> str:
    body = token.text[1:-1]
    if "\\" not in body:
        return body

    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if len(escape) == 5:
            return chr(int(escape[1:], 16))
        if escape in _STRING_ESCAPES:
            return _STRING_ESCAPES[escape]
        raise QuerySyntaxError(
            text, token.start + 1 + match.start(),
            f"unsupported escape \\{escape} in string {token.text}", found=match.group(0),
            hint=f'strings know \\" \\\\ \\b \\t \\n \\f \\r and \\uXXXX; write \\\\{escape} '
                 f"for a backslash followed by {escape!r}")

    return _ESCAPE.sub(replace, body)


def parse_query(text: str) -> Node:
    """The syntax tree of a query, raising :class:`QuerySyntaxError` if it does not parse.

    >>> parse_query('not host = "a" or tagged "b"')
    Or(left=Not(operand=Compare(op='=', left=Field(name='host'), right=Literal(value='a'))), \
right=Tagged(tag='b'))
    """
    return _Parser(text).parse()


# Compiler -----------------------------------------------------------------

_ORDER_FUNCTIONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _always(event: Event) -> bool:
    return True


def _never(event: Event) -> bool:
    return False


def _truthy(value: object) -> bool:
    # Riemann's (Clojure's) truthiness: 0 and "" are true; only nil and false are not.
    return value is not None and value is not False


def _tags_or_none(event: Event) -> tuple[str, ...] | None:
    return event.tags or None


def _getter(name: str) -> Callable[[Event], object]:
    if name == "tags":
        return _tags_or_none
    if name in FIELDS:
        return operator.attrgetter(name)
    return operator.methodcaller("get", name)


def _constant(result: bool) -> Predicate:
    return _always if result else _never


def _compile(node: Node) -> Predicate:
    if isinstance(node, Field):
        get = _getter(node.name)
        return lambda event: _truthy(get(event))
    if isinstance(node, Literal):
        return _constant(_truthy(node.value))
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, Like):
        return _compile_like(node)
    if isinstance(node, Regex):
        search = _compile_regex(node.pattern).search
        return _on_string(node.operand, _searched, search)
    if isinstance(node, Tagged):
        tag = node.tag
        return lambda event: tag in event.tags
    if isinstance(node, Not):
        inner = _compile(node.operand)
        if inner is _always or inner is _never:
            return _constant(inner is _never)
        return lambda event: not inner(event)
    return _compile_chain(node)


def _compile_chain(node: And | Or) -> Predicate:
    # Flatten a left-leaning chain so "a and b and c" costs one frame, not two.
    kind = type(node)
    parts: list[Node] = []
    current: Node = node
    while isinstance(current, kind):
        parts.append(current.right)
        current = current.left
    parts.append(current)
    parts.reverse()
    compiled = tuple(_compile(part) for part in parts)
    if kind is And:
        compiled = tuple(p for p in compiled if p is not _always)
        if _never in compiled:
            return _never
        if not compiled:
            return _always
        if len(compiled) == 1:
            return compiled[0]
        if len(compiled) == 2:
            first, second = compiled
            return lambda event: first(event) and second(event)

        def all_of(event: Event) -> bool:
            # A plain loop: all() over a generator costs a generator per event.
            for predicate in compiled:  # noqa: SIM110
                if not predicate(event):
                    return False
            return True

        return all_of
    compiled = tuple(p for p in compiled if p is not _never)
    if _always in compiled:
        return _always
    if not compiled:
        return _never
    if len(compiled) == 1:
        return compiled[0]
    if len(compiled) == 2:
        first, second = compiled
        return lambda event: first(event) or second(event)

    def any_of(event: Event) -> bool:
        for predicate in compiled:  # noqa: SIM110
            if predicate(event):
                return True
        return False

    return any_of


def _compile_compare(node: Compare) -> Predicate:
    op, left, right = node.op, node.left, node.right
    if isinstance(left, Literal) and isinstance(right, Field) and op in ("=", "!="):
        left, right = right, left
    if isinstance(left, Literal) and isinstance(right, Literal):
        return _constant(_literal_compare(op, left.value, right.value))
    if op in _ORDER_FUNCTIONS:
        assert isinstance(left, Field) and isinstance(right, Literal)
        get, bound, compare = _getter(left.name), right.value, _ORDER_FUNCTIONS[op]
        fast = FAST_NUMBER_TYPES
        return lambda event: (
            ((value := get(event)).__class__ in fast or is_number(value))
            and compare(value, bound))
    assert isinstance(left, Field)
    equal = _compile_equal(_getter(left.name), right)
    if op == "=":
        return equal
    return lambda event: not equal(event)


def _literal_compare(op: str, a: Scalar, b: Scalar) -> bool:
    if op == "=":
        return equal(a, b)
    if op == "!=":
        return not equal(a, b)
    return is_number(a) and is_number(b) and _ORDER_FUNCTIONS[op](a, b)


def _compile_equal(get: Callable[[Event], object], right: Value) -> Predicate:
    if isinstance(right, Field):
        other = _getter(right.name)
        return lambda event: equal(get(event), other(event))
    return equal_to(right.value, get)


def _on_string(operand: Value, test: Callable[[str, Any], bool], argument: Any) -> Predicate:
    """True where ``operand`` is a string and ``test(value, argument)`` is true."""
    if isinstance(operand, Literal):
        return _constant(isinstance(operand.value, str) and test(operand.value, argument))
    get = _getter(operand.name)
    # Speed: this runs once per event in where('service =~ "api%"'). The exact
    # class check skips the global isinstance call for the usual value, and an
    # unbound str method called with its argument (str.startswith(value, "api"))
    # is a direct C call, where operator.methodcaller looks the method up every
    # time: together 40 % less per event.
    return lambda event: (
        ((value := get(event)).__class__ is str or isinstance(value, str))
        and test(value, argument))


def _searched(value: str, search: Callable[[bytes], object]) -> bool:
    # Bytes skip the wrapper's own encoding and position mapping (3x
    # faster); surrogatepass keeps a lone surrogate from raising.
    return search(value.encode("utf-8", "surrogatepass")) is not None


def _applied(value: str, test: Callable[[str], bool]) -> bool:
    return test(value)


def _compile_like(node: Like) -> Predicate:
    # The common shapes get one string method: "web%", "%.example.com", "%disk%".
    parts = node.pattern.split("%")
    if len(parts) == 1:
        return _on_string(node.operand, str.__eq__, node.pattern)
    if len(parts) == 2 and not parts[1]:
        return _on_string(node.operand, str.startswith, parts[0])
    if len(parts) == 2 and not parts[0]:
        return _on_string(node.operand, str.endswith, parts[1])
    if len(parts) == 3 and not parts[0] and not parts[2]:
        return _on_string(node.operand, str.__contains__, parts[1])
    middles = tuple(p for p in parts[1:-1] if p)
    like = functools.partial(_like, parts[0], middles, parts[-1])
    return _on_string(node.operand, _applied, like)


def _like(head: str, middles: tuple[str, ...], tail: str, value: str) -> bool:
    """Whether ``value`` is head, then each middle in order with anything between, then tail.

    Taking each middle at its leftmost place is always right when ``%`` is
    the only wildcard, so there is no backtracking: one left-to-right pass,
    where a regex ``.*a.*a.*b`` takes time exponential in the number of ``%``.

    >>> _like("a", ("b", "c"), "d", "a-b-c-d"), _like("a", ("c", "b"), "d", "a-b-c-d")
    (True, False)
    """
    end = len(value) - len(tail)
    if end < len(head) or not value.startswith(head) or not value.endswith(tail):
        return False
    position = len(head)
    for middle in middles:
        found = value.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return True


_REGEX_OPTIONS = re2.Options()
# A refused pattern is reported to the user in the query error; RE2 would
# also print it to stderr.
_REGEX_OPTIONS.log_errors = False


def _compile_regex(pattern: str) -> Any:
    return re2.compile(pattern, _REGEX_OPTIONS)


def _reason(error: Exception) -> str:
    # RE2's errors carry its message as bytes.
    reason = error.args[0] if error.args else error
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


# Public API ---------------------------------------------------------------


class Query:
    """A compiled query: call it with an event to get True or False.

    ``predicate`` is the bare compiled function, for hot paths that want to
    skip one call; ``ast`` is the syntax tree and ``text`` the source.

    >>> q = compile_query('metric >= 3 or tagged "x"')
    >>> q(Event(metric=3)), q(Event(metric=2)), str(q.ast)
    (True, False, 'metric >= 3 or tagged "x"')
    """

    __slots__ = ("ast", "predicate", "text")

    def __init__(self, text: str, ast: Node) -> None:
        self.text = text
        self.ast = ast
        self.predicate: Predicate = _compile(ast)

    def __call__(self, event: Event) -> bool:
        return self.predicate(event)

    def __repr__(self) -> str:
        return f"compile_query({self.text!r})"


@functools.lru_cache(maxsize=64)
def _compile_cached(text: str) -> Query:
    return Query(text, parse_query(text))


def compile_query(text: str) -> Query:
    """Parse and compile a query once (the last 64 are cached).

    >>> compile_query('host =~ "web%" and not state = "ok"')(Event(host="web3", state="warn"))
    True
    >>> compile_query("host = ")
    Traceback (most recent call last):
    ...
    streams._query.QuerySyntaxError: mismatched input '<EOF>' expecting {'true', 'false', \
'nil', NUMBER, STRING, NAME} at column 8 of query 'host = '
    """
    if not isinstance(text, str):
        raise TypeError(
            f"compile_query(text) takes the query as a string, got {text!r}; "
            f"e.g. compile_query('service = \"cpu\"')"
        )
    return _compile_cached(text)


def lookup_key(query: Query | Node) -> tuple[str | None, str | None] | None:
    """The (host, service) key if the query is exactly ``host = X and service = Y``.

    Either order; the fields on the left; X and Y strings or nil. The index
    answers such queries with one lookup instead of a scan (spec §5.2).
    Number literals are left to the scan, where ``1`` and ``1.0`` (but not
    ``true``) match the same, which a dict lookup would not guarantee.

    >>> lookup_key(compile_query('service = "cpu" and host = nil'))
    (None, 'cpu')
    >>> lookup_key(compile_query('host = "a" and service = "b" and metric')) is None
    True
    """
    node = query.ast if isinstance(query, Query) else query
    if not isinstance(node, And):
        return None
    found: dict[str, str | None] = {}
    for part in (node.left, node.right):
        if not (isinstance(part, Compare) and part.op == "="
                and isinstance(part.left, Field) and isinstance(part.right, Literal)):
            return None
        value = part.right.value
        if not (value is None or isinstance(value, str)):
            return None
        found[part.left.name] = value
    if found.keys() != {"host", "service"}:
        return None
    return found["host"], found["service"]
