"""The testing kit (spec §7): run, run_intervals, taps, Sink, the virtual clock, strategies."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Event, Runtime, current_runtime, default, rate, sdo, where
from streams.testing import Sink, clock, events, run, run_intervals, tap, taps, timed_events

relaxed = settings(deadline=None, max_examples=40)


def test_run_advances_the_clock_to_each_event_before_delivering_it() -> None:
    seen: list[tuple[float | None, float]] = []
    out = run(lambda sink: sdo(sink, lambda e: seen.append((e.time, clock().now()))),
              [Event(time=1), Event(), Event(time=5)])
    assert seen == [(1, 1), (None, 1), (5, 5)]
    assert len(out) == 3


def test_run_starts_a_fresh_runtime_every_time_and_restores_the_previous_one(
        runtime: Runtime) -> None:
    seen: list[tuple[float, Runtime]] = []

    def build(sink: Sink) -> Any:
        seen.append((clock().now(), current_runtime()))
        return rate(1, sink)

    run(build, [Event(metric=1, time=50)])
    run(build, [], start=3)
    assert [t for t, _ in seen] == [0, 3]
    assert len({id(r) for _, r in seen} | {id(runtime)}) == 3
    assert current_runtime() is runtime and clock().now() == 0 and len(clock()) == 0


def test_run_in_a_given_runtime_leaves_its_timers_to_drive(runtime: Runtime) -> None:
    out = run(lambda sink: rate(1, sink), [Event(metric=1, time=50)], runtime=runtime)
    assert clock().now() == 50 and len(clock()) == 1
    runtime.clock.advance(51)  # type: ignore[attr-defined]
    assert [(e.time, e.metric) for e in out] == [(51, 1.0)]


def test_run_until_fires_the_timers_due_by_then() -> None:
    assert len(run(lambda sink: rate(1, sink), [Event(metric=1, time=0)])) == 0
    assert len(run(lambda sink: rate(1, sink), [Event(metric=1, time=0)], until=3)) == 3


def test_run_refuses_a_built_stream_and_explains() -> None:
    with pytest.raises(TypeError, match=r"run\(lambda sink: rate\(5, sink\), events\)"):
        run(rate(5, Sink()), [])  # type: ignore[arg-type]


def test_run_intervals_delivers_then_advances_by_the_gap() -> None:
    seen: list[float] = []
    times: list[float] = []
    run_intervals(lambda sink: sdo(sink, lambda e: seen.append(clock().now())),
                  [(Event(), 1), (Event(), None), (Event(), 0.5), (Event(), 2)], start=10)
    assert seen == [10, 11, 11, 11.5]
    run_intervals(lambda sink: sdo(sink, lambda e: times.append(clock().now())),
                  [(Event(), 2), (Event(), None)], start=10)
    assert times == [10, 12]


def test_the_spec_config_sample_with_taps() -> None:
    # spec §7: default(ttl=3, where(not service =~ "riemann %", tap("index", index)))
    index = Sink()
    with taps() as seen:
        run(lambda sink: default({"ttl": 3},
                                 where(lambda e: not (e.service or "").startswith("riemann "),
                                       tap("index", index))),
            [Event(service="test", time=1), Event(service="riemann server", time=2)])
    assert seen == {"index": [Event(service="test", time=1, ttl=3)]}
    assert index.events == seen["index"]


def test_taps_of_a_rule_built_outside_the_block_read_as_empty() -> None:
    rule = where(lambda e: e.metric > 5, tap("alerts"), else_=tap("quiet"))
    with taps() as seen:
        rule(Event(metric=1))
    assert seen["alerts"] == []
    assert seen["quiet"] == [Event(metric=1)]


def test_taps_are_empty_for_each_block_and_silent_outside() -> None:
    t = tap("x")
    t(1)
    with taps() as first:
        t(2)
    with taps() as second:
        pass
    t(3)
    assert first == {"x": [2]} and second["x"] == []


def test_tap_forwards_to_its_children_and_is_shared_by_forks() -> None:
    sink = Sink()
    t = tap("out", sink)
    t("x")
    assert sink.events == ["x"]
    assert t.fork() is t
    with pytest.raises(TypeError, match="non-empty string"):
        tap("")


def test_sink_records_and_is_shared() -> None:
    sink = Sink()
    sink(1)
    assert sink.events == [1] and sink.fork() is sink
    assert repr(sink) == "Sink(<1 events>)"


@relaxed
@given(events(hosts=["x"], states=["ok"], tags=["t"]))
def test_events_strategy_narrows_what_is_drawn(event: Event) -> None:
    assert event.host == "x" and event.state == "ok" and set(event.tags) <= {"t"}
    assert event.time is not None and 0 <= event.time <= 100


@relaxed
@given(events(metrics=st.just(7), times=st.just(3.0), ttls=st.just(10.0)))
def test_events_strategy_takes_strategies_for_numbers(event: Event) -> None:
    assert (event.metric, event.time, event.ttl) == (7, 3.0, 10.0)


@relaxed
@given(timed_events())
def test_timed_events_are_in_time_order(inputs: list[Any]) -> None:
    times = [e.time for e in inputs]
    assert times == sorted(times)


# The docs: examples run, and the testing guide shows the example files as they are ------

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["index.md", "writing-rules.md", "testing-rules.md", "reference/filters.md",
         "reference/fields.md", "reference/partitioning.md", "reference/windows.md",
         "reference/aggregation.md", "reference/folds.md"]


@pytest.mark.parametrize("page", PAGES)
def test_doc_examples_run(page: str) -> None:
    result = doctest.testfile(str(ROOT / "docs" / page), module_relative=False,
                              optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


@pytest.mark.parametrize("example", ["rules.py", "test_example_rules.py"])
def test_testing_guide_includes_the_example_files_verbatim(example: str) -> None:
    guide = (ROOT / "docs" / "testing-rules.md").read_text()
    assert f"```python\n{(ROOT / 'examples' / example).read_text()}```" in guide
