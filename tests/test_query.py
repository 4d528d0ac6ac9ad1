"""Riemann's query language (spec §5.4): the query_test tables, errors and properties."""

from __future__ import annotations

import math
import operator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams._event import Event
from streams._query import (
    And,
    Compare,
    Field,
    Like,
    Literal,
    Node,
    Not,
    Or,
    Query,
    QuerySyntaxError,
    Regex,
    Tagged,
    compile_query,
    lookup_key,
    parse_query,
)


def ev(**fields: Any) -> Event:
    return Event(**fields)


# Parsing: riemann's ast-test ------------------------------------------------

def eq(name: str, value: Any) -> Compare:
    return Compare("=", Field(name), Literal(value))


AST_CASES = [
    # Fields
    ("state = true", eq("state", True)),
    ("host = true", eq("host", True)),
    ("service = true", eq("service", True)),
    ("description = true", eq("description", True)),
    ("metric_f = true", eq("metric_f", True)),
    ("metric = true", eq("metric", True)),
    ("time = true", eq("time", True)),
    ("ttl = 64", eq("ttl", 64)),
    # Literals
    ("true", Literal(True)),
    ("false", Literal(False)),
    ("nil", Literal(None)),
    ("null", Literal(None)),
    # Integers
    ("state = 0", eq("state", 0)),
    ("state = 1", eq("state", 1)),
    ("state = -1", eq("state", -1)),
    ("state = 123N", eq("state", 123)),
    ("state = 99999999999999999999999N", eq("state", 99999999999999999999999)),
    # Floats
    ("state = 0.0", eq("state", 0.0)),
    ("state = 1.5", eq("state", 1.5)),
    ("state = -1.5", eq("state", -1.5)),
    ("state = 1e5", eq("state", 1e5)),
    ("state = 1E5", eq("state", 1e5)),
    ("state = -1.2e-5", eq("state", -1.2e-5)),
    ("state = Infinity", eq("state", math.inf)),
    ("state = -Infinity", eq("state", -math.inf)),
    # Strings
    ('state = ""', eq("state", "")),
    ('state = "foo"', eq("state", "foo")),
    ('state = "\\b\\t\\n\\f\\r"', eq("state", "\b\t\n\f\r")),
    ('state = " \\" \\\\ "', eq("state", ' " \\ ')),
    ('state = "辻斬"', eq("state", "辻斬")),
    ('state = "\\u00e9\\u8FBB"', eq("state", "é辻")),
    # Simple predicates
    ("state = 2", eq("state", 2)),
    ("state > 2", Compare(">", Field("state"), Literal(2))),
    ("state < 2", Compare("<", Field("state"), Literal(2))),
    ("state >= 2", Compare(">=", Field("state"), Literal(2))),
    ("state <= 2", Compare("<=", Field("state"), Literal(2))),
    ("state != 2", Compare("!=", Field("state"), Literal(2))),
    ('state =~ "%foo%"', Like(Field("state"), "%foo%")),
    ('state ~= "[a-z]+"', Regex(Field("state"), "[a-z]+")),
    ('state ~= "\\\\w+"', Regex(Field("state"), "\\w+")),
    # Tags
    ('tagged "cat"', Tagged("cat")),
    # Boolean operators
    ("not host = 1", Not(eq("host", 1))),
    ("host = 1 and state = 2", And(eq("host", 1), eq("state", 2))),
    ("host = 1 or state = 2", Or(eq("host", 1), eq("state", 2))),
    # Grouping
    ("(host = 1)", eq("host", 1)),
    ("((host = 1))", eq("host", 1)),
    # Precedence
    ("not host = 1 and host = 2", And(Not(eq("host", 1)), eq("host", 2))),
    (
        "not host = 1 or host = 2 and host = 3",
        Or(Not(eq("host", 1)), And(eq("host", 2), eq("host", 3))),
    ),
    (
        "not ((host = 1 or host = 2) and host = 3)",
        Not(And(Or(eq("host", 1), eq("host", 2)), eq("host", 3))),
    ),
    # Left associativity
    ("a or b or c", Or(Or(Field("a"), Field("b")), Field("c"))),
    ("a and b and c", And(And(Field("a"), Field("b")), Field("c"))),
    ("not not a", Not(Not(Field("a")))),
    # Lexical details
    ("host = 1,and,state = 2", And(eq("host", 1), eq("state", 2))),
    ("\thost\n=\r\n1", eq("host", 1)),
    ("paws = 4", eq("paws", 4)),
    ("android = 1", eq("android", 1)),
    ("ns:key = 1", eq("ns:key", 1)),
    ("a.b-c?*+ = 1", eq("a.b-c?*+", 1)),
    ("nullable", Field("nullable")),
    ("Infinity2", Field("Infinity2")),
    ("-x = 1", eq("-x", 1)),
    ('host="a" and metric>-1', And(eq("host", "a"), Compare(">", Field("metric"), Literal(-1)))),
    ("metric != 1", Compare("!=", Field("metric"), Literal(1))),
    ("1 = metric", Compare("=", Literal(1), Field("metric"))),
    ("metric = ttl", Compare("=", Field("metric"), Field("ttl"))),
]


@pytest.mark.parametrize(("text", "ast"), AST_CASES, ids=[text for text, _ in AST_CASES])
def test_parses_like_riemann(text: str, ast: Node) -> None:
    assert parse_query(text) == ast
    assert compile_query(text).ast == ast


def test_nan_literal() -> None:
    ast = parse_query("metric = NaN")
    assert isinstance(ast, Compare) and isinstance(ast.right, Literal)
    assert isinstance(ast.right.value, float) and math.isnan(ast.right.value)
    assert not compile_query("metric = NaN")(ev(metric=math.nan))
    assert compile_query("metric != -NaN")(ev(metric=1))


# Evaluation: riemann's query_test ------------------------------------------

MATCH_CASES: list[tuple[str, list[Event], list[Event]]] = [
    ("true", [ev(state="foo"), ev()], []),
    ("false", [], [ev(state="foo"), ev()]),
    ("null", [], [ev(state="foo"), ev()]),
    ("nil", [], [ev()]),
    ("0", [ev()], []),
    ('""', [ev()], []),
    ('state = "foo"', [ev(state="foo")], [ev(state="bar"), ev()]),
    ("state != 1", [ev(state=0.5), ev()], [ev(state=1)]),
    ('host =~ "%s."', [ev(host="s."), ev(host="foos.")],
     [ev(host="a."), ev(host="s.murf"), ev()]),
    ('host ~= "foo?[1-9]+"', [ev(host="foo19"), ev(host="foo1"), ev(host="fo42")],
     [ev(host="abc"), ev(host="foo"), ev(host="fooo42"), ev()]),
    ("metric > 1e10", [ev(metric=1e11)], [ev(metric=1e10), ev()]),
    ("metric >= -1", [ev(metric=0), ev(metric=-1)], [ev(metric=-2), ev()]),
    ("metric < 1.2e2", [ev(metric=1.5e1)], [ev(metric=1.2e2), ev()]),
    ("metric <= 1", [ev(metric=1), ev(metric=-20)], [ev(metric=2), ev()]),
    ('tagged "cat"', [ev(tags=["cat", "dog"]), ev(tags=["cat"])], [ev(tags=["dog"]), ev()]),
    ("time = null and description != nil",
     [ev(time=None, description=True), ev(description="hey")],
     [ev(time=2, description=True), ev(description=None), ev()]),
    ("not ((host = 1 or host = 2) and service = 3)",
     [ev(host=1), ev(service=3), ev()],
     [ev(host=2, service=3)]),
    ('paws = 4 and tagged "catz"',
     [ev(paws=4, time=2, tags=["fuzzy", "catz"])],
     [ev(paws=4, time=2, tags=["fuzzy"]), ev(paws=4, time=2, tags=[]), ev(paws=4, time=2),
      ev(paws=3, time=2, tags=["fuzzy", "catz"]), ev(paws=None, time=2, tags=["fuzzy", "catz"]),
      ev(time=2, tags=["fuzzy", "catz"])]),
    ('host =~ "api %" and state = "ok" and metric > 0',
     [ev(host="api 1", state="ok", metric=1.2)],
     [ev(host="other", state="ok", metric=1.2), ev(host="api 2", state="no", metric=1.2), ev()]),
    # Bare fields: true unless nil or false (Riemann's truthiness, so 0 is true).
    ("metric", [ev(metric=0), ev(metric=0.0), ev(metric=5)], [ev()]),
    ("description", [ev(description="")], [ev()]),
    ("flag", [ev(flag=0), ev(flag="false")], [ev(flag=False), ev()]),
    ("tags", [ev(tags=["a"])], [ev()]),
    ("tags = nil", [ev()], [ev(tags=["a"])]),
    # Python numbers: 1 == 1.0 (a deliberate difference from Riemann), bools are not numbers.
    ("metric = 1", [ev(metric=1), ev(metric=1.0)], [ev(metric=True), ev(metric="1"), ev()]),
    ("metric = true", [ev(metric=True)], [ev(metric=1)]),
    ("metric > 0", [ev(metric=1)], [ev(metric=True), ev(metric="5")]),
    ("metric = ttl", [ev(metric=5, ttl=5.0), ev()], [ev(metric=1, ttl=True), ev(metric=1)]),
    ("metric != ttl", [ev(metric=1)], [ev(metric=5, ttl=5)]),
    ("1 = metric", [ev(metric=1)], [ev(metric=2)]),
    ("1 = 1.0", [ev()], []),
    ("1 = true", [], [ev()]),
    ("1 < 2", [ev()], []),
    ('"a" < 2', [], [ev()]),
    ('"a" =~ "%"', [ev()], []),
    ('1 ~= "1"', [], [ev()]),
    # LIKE shapes: exact, prefix, suffix, contains, general; everything but % is literal.
    ('host =~ "web1"', [ev(host="web1")], [ev(host="web12"), ev(host="xweb1")]),
    ('host =~ "web%"', [ev(host="web"), ev(host="web12")], [ev(host="xweb1"), ev(host=1)]),
    ('host =~ "%.com"', [ev(host="a.com")], [ev(host="a.comx"), ev(host="axcom")]),
    ('host =~ "%eb%"', [ev(host="web1"), ev(host="eb")], [ev(host="wxb")]),
    ('host =~ "w%b%1"', [ev(host="wb1"), ev(host="wxxbyy1")], [ev(host="wb12")]),
    ('host =~ "a.*[b]"', [ev(host="a.*[b]")], [ev(host="axxb")]),
    ('host =~ "%"', [ev(host=""), ev(host="a\nb")], [ev()]),
    ('description =~ "a%b"', [ev(description="a\nb")], []),
    # Regex: unanchored search.
    ('host ~= "^web"', [ev(host="web1")], [ev(host="xweb")]),
    ('host ~= ""', [ev(host="")], [ev(host=5), ev()]),
    # Custom attributes and strings with escapes.
    ('region = "eu"', [ev(region="eu")], [ev(region="us"), ev()]),
    ('state = "辻斬"', [ev(state="辻斬")], [ev(state="辻")]),
    ('description = " \\" \\\\ "', [ev(description=' " \\ ')], [ev(description=" ")]),
    # Constant folding keeps the logic intact.
    ("true and metric", [ev(metric=1)], [ev()]),
    ("false or metric", [ev(metric=1)], [ev()]),
    ("false and metric", [], [ev(metric=1)]),
    ("true or metric", [ev()], []),
    ("not true", [], [ev()]),
    ("a or b or c", [ev(c=1), ev(a=1)], [ev()]),
    ("a and b and c", [ev(a=1, b=2, c=3)], [ev(a=1, b=2)]),
]


@pytest.mark.parametrize(("text", "good", "evil"), MATCH_CASES,
                         ids=[text for text, _, _ in MATCH_CASES])
def test_matches_like_riemann(text: str, good: list[Event], evil: list[Event]) -> None:
    query = compile_query(text)
    for event in good:
        assert query(event) is True, event
        assert query.predicate(event) is True, event
    for event in evil:
        assert query(event) is False, event


def test_other_real_numbers_compare() -> None:
    from decimal import Decimal
    from fractions import Fraction

    assert compile_query("metric > 1")(ev(metric=Fraction(3, 2)))
    assert not compile_query("metric > 1")(ev(metric=Decimal(3)))  # Decimal is not Real


def test_query_object() -> None:
    query = compile_query('host = "a"')
    assert repr(query) == "compile_query('host = \"a\"')"
    assert query.text == 'host = "a"'
    assert isinstance(query, Query)
    assert compile_query('host = "a"') is query  # cached
    with pytest.raises(TypeError, match=r"takes the query as a string, got 5"):
        compile_query(5)  # type: ignore[arg-type]


def test_canonical_text() -> None:
    assert str(parse_query("(a or b) and not (c and d) or e")) == (
        "(a or b) and not (c and d) or e")
    assert str(parse_query("a or (b or c)")) == "a or (b or c)"
    assert str(parse_query("a and (b and c)")) == "a and (b and c)"
    assert str(parse_query('x = "\\n\\"" and y = 1e16')) == 'x = "\\n\\"" and y = 1e16'
    assert str(parse_query("x = -Infinity or y = NaN")) == "x = -Infinity or y = NaN"


# Fast-path detection (index_test) ------------------------------------------

@pytest.mark.parametrize(("text", "key"), [
    ('host = "h" and service = "s"', ("h", "s")),
    ('service = "s" and host = "h"', ("h", "s")),
    ('host = nil and service = "ser"', (None, "ser")),
    ('(host = "h") and (service = "s")', ("h", "s")),
    ('host = "h" and service = "s" and metric = 1', None),
    ('host = "h" and service = "s" or metric', None),
    ("host = 2 and metric", None),
    ('host = "a" and host = "b"', None),
    ('service = "s" and service = "t"', None),
    ('"h" = host and service = "s"', None),
    ("host = 1 and service = 2", None),
    ('host = "h"', None),
    ('host != "h" and service = "s"', None),
    ('host = service and service = "s"', None),
])
def test_lookup_key(text: str, key: tuple[str | None, str | None] | None) -> None:
    assert lookup_key(compile_query(text)) == key
    assert lookup_key(parse_query(text)) == key


# Errors ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message", "column"), [
    ("oh no not again", "mismatched input 'no' expecting {<EOF>, 'and', 'or'}", 4),
    ("", "mismatched input '<EOF>' expecting {'(', 'not', 'tagged'", 1),
    ("host =", "mismatched input '<EOF>' expecting {'true', 'false', 'nil', NUMBER", 7),
    ("host = and", "mismatched input 'and' expecting {'true'", 8),
    ('metric > "5"', "mismatched input '\"5\"' expecting {NUMBER}", 10),
    ("metric > ttl", "mismatched input 'ttl' expecting {NUMBER}", 10),
    ("tagged cat", "mismatched input 'cat' expecting {STRING}", 8),
    ("host =~ web%", "token recognition error at: '%'", 12),
    ("host =~ web", "mismatched input 'web' expecting {STRING}", 9),
    ("host ~= 5", "mismatched input '5' expecting {STRING}", 9),
    ("(host = 1", "mismatched input '<EOF>' expecting {'and', 'or', ')'}", 10),
    ("host = 1)", "mismatched input ')' expecting {<EOF>, 'and', 'or'}", 9),
    ("host = 1 and", "mismatched input '<EOF>' expecting {'(', 'not'", 13),
    ("not", "mismatched input '<EOF>' expecting {'(', 'not'", 4),
    ("host = 0x1F", "mismatched input '0x1F' expecting {'true'", 8),
    ("host = \\a", "mismatched input '\\a' expecting {'true'", 8),
    ("host = 12L", "unsupported number '12L'", 8),
    ("a # b", "token recognition error at: '#'", 3),
    ("host = 'a'", "token recognition error at: '''", 8),
    ("a ! b", "token recognition error at: '!'", 3),
    ("a ~ b", "token recognition error at: '~'", 3),
    ('host = "abc', "token recognition error at: '\"abc'", 8),
    ('host = "\\d"', "unsupported escape \\d", 9),
    ('host ~= "("', "invalid regular expression '('", 9),
    ("a and\nb c", "mismatched input 'c' expecting {<EOF>, 'and', 'or'}", 3),
])
def test_syntax_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        compile_query(text)
    error = caught.value
    assert str(error).startswith(message)
    assert error.column == column
    assert f"column {column}" in str(error)
    assert isinstance(error, ValueError)


def test_error_details() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        compile_query("a and\nb c")
    error = caught.value
    assert (error.line, error.column, error.position) == (2, 3, 8)
    assert "line 2, column 3" in str(error)
    assert error.found == "c"
    assert error.expected == ("<EOF>", "'and'", "'or'")


def test_errors_suggest_fixes() -> None:
    def message(text: str) -> str:
        with pytest.raises(QuerySyntaxError) as caught:
            compile_query(text)
        return str(caught.value)

    assert "put an operator between them" in message('host "a"')
    assert 'e.g. tagged "production"' in message("tagged cat")
    assert "metric > 5" in message("metric > x")
    assert "double quote" in message('host = "a')
    assert 'host = "web1"' in message("host = 'web1'")
    assert "write 12 without the L suffix" in message("metric = 12L")
    assert "write \\\\d" in message('host ~= "\\d"')


# Properties -------------------------------------------------------------------

KEYWORDS = {"and", "or", "not", "tagged", "true", "false", "nil", "null", "Infinity", "NaN"}
field_names = st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_.\-]{0,8}\Z").filter(
    lambda name: name not in KEYWORDS)
strings = st.text(max_size=8)
numbers_ = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=False))
scalars = st.one_of(st.none(), st.booleans(), numbers_, strings)


@given(field_names, strings, st.one_of(st.none(), strings, numbers_, st.booleans()))
def test_equality_query_is_the_python_predicate(name: str, literal: str, value: Any) -> None:
    event = Event(**{name: value}) if name not in ("tags",) else Event()
    query = compile_query(f"{Field(name)} = {Literal(literal)}")
    assert query(event) == (event.get(name) == literal)


@given(field_names, numbers_, st.one_of(st.none(), numbers_, strings, st.booleans()),
       st.sampled_from(["<", "<=", ">", ">="]))
def test_ordering_query_is_the_python_predicate(name: str, bound: float, value: Any,
                                                op: str) -> None:
    event = Event(**{name: value}) if name != "tags" else Event()
    compare = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]
    actual = event.get(name)
    expected = (isinstance(actual, (int, float)) and not isinstance(actual, bool)
                and compare(actual, bound))
    assert compile_query(f"{Field(name)} {op} {Literal(bound)}")(event) == expected


@given(field_names, st.text(alphabet="ab%.", max_size=6), st.text(alphabet="ab.", max_size=6))
def test_like_is_sql_like(name: str, pattern: str, value: str) -> None:
    import re

    regex = "".join(".*" if c == "%" else re.escape(c) for c in pattern)
    query = compile_query(f"{Field(name)} =~ {Literal(pattern)}")
    assert query(Event(**{name: value})) == (re.fullmatch(regex, value, re.DOTALL) is not None)


values = st.one_of(field_names.map(Field), scalars.map(Literal))
simple = st.one_of(
    values,
    st.builds(Compare, st.sampled_from(["=", "!="]), values, values),
    st.builds(Compare, st.sampled_from(["<", "<=", ">", ">="]), values, numbers_.map(Literal)),
    st.builds(Like, values, strings),
    st.builds(Regex, values, st.sampled_from(["a", "^b", "[0-9]+", "x|y", ""])),
    st.builds(Tagged, strings),
)
asts = st.recursive(
    simple,
    lambda inner: st.one_of(
        st.builds(Not, inner), st.builds(And, inner, inner), st.builds(Or, inner, inner)),
    max_leaves=8,
)


@given(asts)
def test_text_round_trips(ast: Node) -> None:
    assert parse_query(str(ast)) == ast
    assert str(parse_query(str(ast))) == str(ast)


small_names = st.sampled_from(["a", "b", "host", "metric", "tags"])
small_values = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(["x", ""]))
small_simple = st.one_of(
    small_names.map(Field),
    st.builds(Compare, st.sampled_from(["=", "!=", "<", ">="]), small_names.map(Field),
              st.integers(-2, 2).map(Literal)),
    st.builds(Compare, st.sampled_from(["=", "!="]), small_names.map(Field),
              small_values.map(Literal)),
    st.builds(Tagged, st.sampled_from(["x", "y"])),
)
small_asts = st.recursive(
    small_simple,
    lambda inner: st.one_of(
        st.builds(Not, inner), st.builds(And, inner, inner), st.builds(Or, inner, inner)),
    max_leaves=6,
)
small_events = st.builds(
    lambda a, b, metric, tags: Event(a=a, b=b, metric=metric, tags=tags),
    small_values, small_values, st.one_of(st.none(), st.integers(-2, 2)),
    st.lists(st.sampled_from(["x", "y"]), max_size=2),
)


@given(small_asts, small_asts, small_events)
def test_boolean_algebra(p: Node, q: Node, event: Event) -> None:
    def run(text: str) -> bool:
        return compile_query(text)(event)

    p_holds, q_holds = run(str(p)), run(str(q))
    assert run(f"({p}) and ({q})") == (p_holds and q_holds)
    assert run(f"({p}) or ({q})") == (p_holds or q_holds)
    assert run(f"not ({p})") == (not p_holds)
    assert run(f"not ({p}) and not ({q})") == run(f"not (({p}) or ({q}))")  # De Morgan
    assert run(f"({p}) or not ({p})") is True
    assert run(f"({p}) and not ({p})") is False


@given(st.text(alphabet=st.sampled_from('ab =<>!~"\\()%,-.1eN#\'tagednorulsfi \n'), max_size=20))
def test_any_text_parses_or_raises_query_syntax_error(text: str) -> None:
    try:
        query = compile_query(text)
    except QuerySyntaxError as error:
        assert error.column >= 1
        assert "column" in str(error)
    else:
        assert query(Event()) in (True, False)


# Linear time (issue 10): a query from any client must not stall the server ----

def _seconds(query: Query, event: Event) -> tuple[bool, float]:
    import time

    start = time.perf_counter()
    result = query(event)
    return result, time.perf_counter() - start


def test_like_with_many_wildcards_takes_linear_time() -> None:
    # As a backtracking regex (.*a.*a.*…b) this took seconds at 60
    # characters and never came back at 200.
    query = compile_query('service =~ "%a%a%a%a%a%a%a%b"')
    result, seconds = _seconds(query, ev(service="a" * 100_000))
    assert result is False
    assert seconds < 0.5  # exponential would not return; 0.5 s allows a busy machine
    assert query(ev(service="xaxaxaxaxaxaxaxb")) is True
    assert query(ev(service="aaaaaaab")) is True
    assert query(ev(service="aaaaaab")) is False


def test_like_underscore_is_literal_as_in_riemann() -> None:
    query = compile_query('host =~ "web_%"')
    assert query(ev(host="web_1")) is True
    assert query(ev(host="webx1")) is False


def test_regex_with_nested_quantifiers_takes_linear_time() -> None:
    # Python's re needs ~2^n steps for (a+)+b against n a's: 25 took seconds.
    query = compile_query('service ~= "(a+)+b"')
    result, seconds = _seconds(query, ev(service="a" * 100_000))
    assert result is False
    assert seconds < 0.5  # exponential would not return; 0.5 s allows a busy machine
    assert query(ev(service="aaab")) is True


@pytest.mark.parametrize(("pattern", "reason"), [
    ("(a)\\\\1", "invalid escape sequence: \\1"),
    ("(?=a)", "invalid perl operator: (?="),
    ("a++", "bad repetition operator: ++"),
    ("a{1001}", "invalid repetition size: {1001}"),
    ("[", "missing ]: ["),
])
def test_regex_that_cannot_run_in_linear_time_is_refused_at_parse(
        pattern: str, reason: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        compile_query(f'host ~= "{pattern}"')
    message = str(caught.value)
    assert reason in message
    assert "RE2 syntax" in message
    assert caught.value.column == 9


def test_regex_matches_utf8_and_lone_surrogates() -> None:
    assert compile_query('host ~= "^caf.$"')(ev(host="café")) is True
    assert compile_query('host ~= "x"')(ev(host="\ud800x")) is True
    assert compile_query('host ~= "(?i)^WEB\\\\d+"')(ev(host="web12")) is True
