"""Field transformers adjust, scale and untag: spec §3.3 examples, plus properties."""

from __future__ import annotations

import operator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import Event, adjust, by, scale, smap, sreduce, tag, untag
from streams.testing import Sink, events


def through(stream: Any, inputs: list[Any]) -> list[Any]:
    sink = Sink()
    built = stream(sink)
    for x in inputs:
        built(x)
    return sink.events


# adjust ----------------------------------------------------------------------

@pytest.mark.parametrize(("inputs", "expected"), [
    # adjust([:state, str, " 2"]): {} → {state:" 2"}; {state:"hey"} → {state:"hey 2"}
    ([Event()], [Event(state=" 2")]),
    ([Event(state="hey")], [Event(state="hey 2")]),
    ([Event(state="hey", metric=1, env="prod")], [Event(state="hey 2", metric=1, env="prod")]),
])
def test_adjust_spec_example(inputs: list[Event], expected: list[Event]) -> None:
    def clojure_str(value: Any, *more: str) -> str:
        return "".join(["" if value is None else str(value), *more])

    assert through(lambda sink: adjust("state", lambda s: clojure_str(s, " 2"), sink),
                   inputs) == expected


def test_adjust_reads_and_writes_attributes_and_none_removes_them() -> None:
    out = through(lambda sink: adjust("attempts", lambda n: None if n == "3" else "3", sink),
                  [Event(attempts="1"), Event(attempts="3"), Event()])
    assert out == [Event(attempts="3"), Event(), Event(attempts="3")]


def test_adjust_function_form_is_smap() -> None:
    inputs: list[Any] = [1, 2, 3]
    f = lambda x: None if x == 2 else x * 10
    assert through(lambda sink: adjust(f, sink), inputs) == through(
        lambda sink: smap(f, sink), inputs) == [10, 30]


def test_adjust_changes_lists_element_wise() -> None:
    out = through(lambda sink: adjust("metric", lambda m: m * 2, sink),
                  [[Event(metric=1), Event(metric=2)]])
    assert out == [[Event(metric=2), Event(metric=4)]]


def test_adjust_forks_with_its_children() -> None:
    sink = Sink()
    s = by("host", adjust("metric", abs, sreduce(lambda acc, e: acc + e.metric, sink, init=0)))
    for h, m in [("a", -1), ("b", 5), ("a", -2)]:
        s(Event(host=h, metric=m))
    assert sink.events == [1, 5, 3]


@pytest.mark.parametrize(("args", "message"), [
    ((["state", operator.add, " 2"],), "adjust\\(field, lambda v: f\\(v, \\*args\\)"),
    (("state",), "got nothing"),
    (("state", "x"), "give the function"),
    (("state", Sink()), "give the function"),
    ((3,), "field must be a field name"),
])
def test_adjust_config_errors(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        adjust(*args)


@given(st.lists(events(), max_size=20))
def test_adjust_changes_only_its_field(inputs: list[Event]) -> None:
    out = through(lambda sink: adjust("description", lambda d: (d or "") + "!", sink), inputs)
    for before, after in zip(inputs, out, strict=True):
        assert after.description == (before.description or "") + "!"
        assert after.evolve(description=before.description) == before


# scale -----------------------------------------------------------------------

@pytest.mark.parametrize(("factor", "inputs", "expected"), [
    (2, [Event(metric=3)], [Event(metric=6)]),
    (0.5, [Event(metric=3, service="x")], [Event(metric=1.5, service="x")]),
    (1000, [Event(service="no metric")], [Event(service="no metric")]),  # nil passes
    (-1, [[Event(metric=1), Event()]], [[Event(metric=-1), Event()]]),
])
def test_scale_examples(factor: float, inputs: list[Any], expected: list[Any]) -> None:
    assert through(lambda sink: scale(factor, sink), inputs) == expected


@pytest.mark.parametrize("factor", ["2", None, True])
def test_scale_rejects_non_numbers(factor: Any) -> None:
    with pytest.raises(TypeError, match="factor must be a finite number"):
        scale(factor)


@given(st.lists(events(), max_size=20), st.integers(-5, 5))
def test_scale_multiplies_metric_and_keeps_the_rest(inputs: list[Event], factor: int) -> None:
    out = through(lambda sink: scale(factor, sink), inputs)
    assert [e.metric for e in out] == [
        None if e.metric is None else e.metric * factor for e in inputs]
    assert [e.evolve(metric=None) for e in out] == [e.evolve(metric=None) for e in inputs]


# untag -----------------------------------------------------------------------

@pytest.mark.parametrize(("tags", "inputs", "expected_tags"), [
    ("foo", [Event()], [()]),  # untag("foo") on {} → {tags: []}
    ("foo", [Event(tags=("foo", "bar"))], [("bar",)]),
    (["foo", "bar"], [Event(tags=("baz", "foo", "qux", "bar"))], [("baz", "qux")]),
    ([], [Event(tags=("a",))], [("a",)]),
])
def test_untag_examples(tags: Any, inputs: list[Event], expected_tags: list[tuple[str, ...]]
                        ) -> None:
    out = through(lambda sink: untag(tags, sink), inputs)
    assert [e.tags for e in out] == expected_tags


def test_untag_changes_lists_element_wise_and_undoes_tag() -> None:
    out = through(lambda sink: tag("new", untag("new", sink)),
                  [[Event(tags=("a",)), Event()]])
    assert [[e.tags for e in batch] for batch in out] == [[("a",), ()]]


def test_untag_rejects_non_string_tags() -> None:
    with pytest.raises(TypeError, match="tags must be"):
        untag([1, 2])  # type: ignore[list-item]


@given(st.lists(events(), max_size=20),
       st.lists(st.sampled_from(["web", "db", "prod", "eu"]), max_size=3))
def test_untag_removes_exactly_those_tags(inputs: list[Event], remove: list[str]) -> None:
    out = through(lambda sink: untag(remove, sink), inputs)
    for before, after in zip(inputs, out, strict=True):
        assert after.tags == tuple(t for t in before.tags if t not in remove)
        assert after.evolve(tags=before.tags) == before
