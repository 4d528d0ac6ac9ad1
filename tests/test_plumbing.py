"""Plumbing and combinators, smap included: spec §3.1 examples, plus properties."""

from __future__ import annotations

import itertools
import operator
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from _helpers import relaxed, through
from hypothesis import given
from hypothesis import strategies as st

from streams import (
    REGISTRY,
    Event,
    append,
    bit_bucket,
    by,
    pipe,
    register,
    sdo,
    sflatten,
    smap,
    smap_all,
    smapcat,
    splitp,
    sreduce,
    with_,
)
from streams.testing import Sink, run

ints = st.lists(st.integers(-100, 100), max_size=30)


def feed(stream: Any, inputs: list[Any]) -> None:
    for x in inputs:
        stream(x)


# smap ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("function", "inputs", "expected"),
    [
        (lambda x: x, [1, None, False, 3], [1, False, 3]),  # None is dropped, False is not
        (lambda x: x + 1, [6, 3, -1], [7, 4, 0]),
        (lambda e: e.evolve(metric=e.metric * 2), [Event(metric=21)], [Event(metric=42)]),
    ],
)
def test_smap_table(function: Any, inputs: list[Any], expected: list[Any]) -> None:
    assert through(lambda sink: smap(function, sink), inputs) == expected


@relaxed
@given(st.lists(st.one_of(st.none(), st.integers())))
def test_smap_equals_map_without_none(inputs: list[int | None]) -> None:
    def f(x: int | None) -> int | None:
        return None if x is None or x % 3 == 0 else x * 2

    assert through(lambda sink: smap(f, sink), inputs) == [
        y for y in map(f, inputs) if y is not None
    ]


# bit_bucket ------------------------------------------------------------------

def test_bit_bucket_discards_and_is_shared() -> None:
    drop = bit_bucket()
    drop(Event(service="x"))
    assert drop.fork() is drop
    assert repr(drop) == "bit_bucket()"
    with pytest.raises(TypeError):
        bit_bucket(print)  # type: ignore[call-arg]


# smap_all --------------------------------------------------------------------

@pytest.mark.parametrize(("function", "inputs", "expected"), [
    (lambda x: x, [1, None, False, 3], [1, None, False, 3]),  # smap* test
    (lambda x: x + 1, [6, 3, -1], [7, 4, 0]),
    (lambda x: None, [1, 2], [None, None]),
])
def test_smap_all_forwards_every_result_none_included(
        function: Any, inputs: list[Any], expected: list[Any]) -> None:
    sink = Sink()
    feed(smap_all(function, sink), inputs)
    assert sink.events == expected


def test_smap_all_differs_from_smap_only_on_none() -> None:
    # spec: smap on [1, nil, false, 3] with identity → [1, false, 3]; smap* → all four.
    loose, strict = Sink(), Sink()
    s = sdo(smap(lambda x: x, strict), smap_all(lambda x: x, loose))
    feed(s, [1, None, False, 3])
    assert strict.events == [1, False, 3]
    assert loose.events == [1, None, False, 3]


def test_smap_all_rejects_a_non_function() -> None:
    with pytest.raises(TypeError, match="callable"):
        smap_all(3)  # type: ignore[arg-type]


@given(ints)
def test_smap_all_is_map(xs: list[int]) -> None:
    sink = Sink()
    feed(smap_all(lambda x: x * 3 if x % 2 else None, sink), xs)
    assert sink.events == [x * 3 if x % 2 else None for x in xs]


# smapcat / sflatten ----------------------------------------------------------

def test_smapcat_spec_example() -> None:
    sink = Sink()
    feed(smapcat(lambda x: [x, x], sink), [0, 1, 2, 3])
    assert sink.events == [0, 0, 1, 1, 2, 2, 3, 3]


def test_smapcat_none_and_empty_forward_nothing() -> None:
    sink = Sink()
    feed(smapcat(lambda x: None if x else [], sink), [0, 1])
    assert sink.events == []


@given(ints)
def test_smapcat_is_flatten_of_map(xs: list[int]) -> None:
    def f(x: int) -> list[int]:
        return list(range(x % 4))

    sink = Sink()
    feed(smapcat(f, sink), xs)
    assert sink.events == list(itertools.chain.from_iterable(map(f, xs)))


def test_sflatten_spec_example() -> None:
    sink = Sink()
    feed(sflatten(sink), [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert sink.events == list(range(8))


def test_sflatten_after_a_window_forwards_events_one_by_one() -> None:
    events = [Event(time=t) for t in (1, 2, 3)]
    out = run(lambda sink: sflatten(sink), [events, None, ()])
    assert out == events


@given(st.lists(st.lists(st.integers(), max_size=4), max_size=10))
def test_sflatten_is_chain(xss: list[list[int]]) -> None:
    sink = Sink()
    feed(sflatten(sink), xss)
    assert sink.events == list(itertools.chain.from_iterable(xss))


# sreduce ---------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "inputs", "expected"), [
    ({"init": 1}, [1, 2, 3], [2, 4, 7]),       # sreduce(+, 1)
    ({}, [1, 2, 3, 4], [3, 6, 10]),            # sreduce(+): the first input only seeds
    ({}, [5], []),
    ({"init": None}, [], []),
])
def test_sreduce_spec_examples(kwargs: dict[str, Any], inputs: list[int],
                               expected: list[int]) -> None:
    sink = Sink()
    feed(sreduce(operator.add, sink, **kwargs), inputs)
    assert sink.events == expected


def test_sreduce_init_may_be_none_or_a_function() -> None:
    # Riemann tells init from a child by its type; the keyword removes the ambiguity.
    sink = Sink()
    feed(sreduce(lambda acc, x: [*(acc or []), x], sink, init=None), [1, 2])
    assert sink.events == [[1], [1, 2]]
    sink = Sink()
    feed(sreduce(lambda f, x: (lambda: x), sink, init=print), [7])
    assert sink.events[0]() == 7


def test_sreduce_forks_start_over() -> None:
    out = run(lambda sink: by("host", sreduce(lambda n, e: n + e.metric, sink, init=0)),
              [Event(host=h, metric=m) for h, m in [("a", 1), ("b", 10), ("a", 2)]])
    assert out == [1, 10, 3]


@given(ints, st.one_of(st.none(), st.integers(-5, 5)))
def test_sreduce_is_accumulate(xs: list[int], init: int | None) -> None:
    sink = Sink()
    if init is None:
        feed(sreduce(operator.add, sink), xs)
        assert sink.events == list(itertools.accumulate(xs))[1:]
    else:
        feed(sreduce(operator.add, sink, init=init), xs)
        assert sink.events == list(itertools.accumulate(xs, initial=init))[1:]


# append / register -----------------------------------------------------------

def test_append_collects_and_is_shared_across_forks() -> None:
    seen: list[Any] = []
    s = by("host", append(seen))
    feed(s, [Event(host="a"), Event(host="b")])
    assert [e.host for e in seen] == ["a", "b"]
    sink = append(seen)
    assert sink.fork() is sink


def test_append_rejects_a_target_without_append() -> None:
    with pytest.raises(TypeError, match="append method"):
        append(42)


def test_register_without_holder_holds_the_latest_value() -> None:
    latest = register()
    assert latest.value is None
    feed(latest, [1, 2, 3])
    assert latest.value == 3
    assert latest.fork() is latest


def test_register_sets_value_on_a_holder() -> None:
    box = SimpleNamespace()
    s = by("host", register(box))
    assert box.value is None
    s(Event(host="a", metric=1))
    s(Event(host="b", metric=2))
    assert box.value == Event(host="b", metric=2)


def test_register_rejects_a_holder_without_writable_value() -> None:
    with pytest.raises(TypeError, match=r"writable \.value"):
        register((1, 2))


# pipe ------------------------------------------------------------------------

def test_pipe_spec_example() -> None:
    # pipe(!, smap(inc, !), smap(×2, !)) on [1, 2, 3] → [4, 6, 8]
    sink = Sink()
    s = pipe(lambda next: smap(lambda x: x + 1, next), partial(smap, lambda x: x * 2), sink)
    feed(s, [1, 2, 3])
    assert sink.events == [4, 6, 8]


def test_pipe_stage_may_use_the_next_stream_several_times() -> None:
    # The marker in several splitp branches flowing into one sink.
    sink = Sink()
    s = pipe(
        lambda next: splitp(operator.lt, "metric", 0.9, with_(None, next, state="critical"),
                            with_(None, next, state="ok")),
        sink,
    )
    feed(s, [Event(metric=0.95), Event(metric=0.1)])
    assert [e.state for e in sink.events] == ["critical", "ok"]


def test_pipe_of_one_stream_is_that_stream_and_builds_right_to_left() -> None:
    sink = Sink()
    assert pipe(sink) is sink
    order: list[str] = []

    def stage(name: str) -> Any:
        def build(next: Any) -> Any:
            order.append(name)
            return next
        return build

    pipe(stage("a"), stage("b"), sink)
    assert order == ["b", "a"]


def test_pipe_forks_fresh_per_key_under_by() -> None:
    out = run(
        lambda sink: by("host", pipe(lambda next: smap(lambda e: e.metric, next),
                                     partial(sreduce, operator.add, init=0), sink)),
        [Event(host=h, metric=m) for h, m in [("a", 1), ("b", 10), ("a", 2)]],
    )
    assert out == [1, 10, 3]


@pytest.mark.parametrize(("stages", "message"), [
    ((), "at least the last stream"),
    ((smap(abs), Sink()), "stage 0 must be a function of the next stream"),
    ((lambda next: 3, Sink()), "returned 3"),
    ((lambda next: next, "sink"), "last stage must be a stream"),
])
def test_pipe_errors_name_the_stage(stages: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        pipe(*stages)


def test_everything_is_registered() -> None:
    for name in ["append", "bit_bucket", "pipe", "register", "sflatten",
                 "smap_all", "smapcat", "sreduce"]:
        assert name in REGISTRY


def test_sreduce_forks_do_not_share_a_mutable_initial_value() -> None:
    from streams import sreduce

    def collect(acc: list[int], event: Event) -> list[int]:
        acc.append(event.metric)  # changes the accumulator in place
        return acc

    out = Sink()
    keyed = by("host", sreduce(collect, out, init=[]))
    keyed(Event(host="a", metric=1))
    keyed(Event(host="b", metric=2))
    assert out.events == [[1], [2]]
