"""Change detection (spec §3.5): changed, changed_state, runs and stable, with the §9.1.2
quirk of stable fixed, and properties."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import pytest
from _helpers import relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import (
    Event,
    Runtime,
    by,
    changed,
    changed_state,
    exception_stream,
    runs,
    stable,
    sustained,
)
from streams._clock import scheduler
from streams.testing import Sink, clock, run, run_intervals, timed_events

# runs ------------------------------------------------------------------------


def test_runs_spec_example_n3() -> None:
    # states [1,1,2,2,3,4,4,4], the last three with metrics 5.0, 5.1, 5.2 → only the last.
    states = ["1", "1", "2", "2", "3", "4", "4", "4"]
    metrics = [None] * 5 + [5.0, 5.1, 5.2]
    out = run(lambda sink: runs(3, "state", sink),
              [Event(state=s, metric=m) for s, m in zip(states, metrics, strict=True)])
    assert out == [Event(state="4", metric=5.2)]


@pytest.mark.parametrize(("n", "values", "expected_positions"), [
    (2, [1, 1, 1, 2], [1, 2]),          # verified in the spec: the 2nd and 3rd events
    (0, [1, 1, 1, 1], []),               # n = 0 never emits
    (1, [1, 2, 2, 3], [0, 1, 2, 3]),     # a run of one is every event
    (3, [1, 1, 2, 1, 1, 1, 1], [5, 6]),  # an interruption restarts the count
    (2, [None, None, 0, 0], [1, 3]),     # None is a value like any other
    (2, [1, 1.0], [1]),                  # Python equality: 1 == 1.0 (Clojure: not equal)
])
def test_runs_table(n: int, values: list[Any], expected_positions: list[int]) -> None:
    inputs = [Event(metric=v, seq=i) for i, v in enumerate(values)]
    out = run(lambda sink: runs(n, "metric", sink), inputs)
    assert [e.get("seq", 0) for e in out] == expected_positions


def test_runs_accepts_a_function_and_forks_per_key() -> None:
    out = run(lambda sink: by("host", runs(2, lambda e: e.metric > 1, sink)),
              [Event(host=h, metric=m) for h, m in [("a", 5), ("b", 6), ("a", 7), ("b", 0)]])
    assert out == [Event(host="a", metric=7)]


@pytest.mark.parametrize(("args", "error"), [
    ((-1, "state"), ValueError), ((1.5, "state"), ValueError), ((True, "state"), ValueError),
    ((2, 7), TypeError),
])
def test_runs_config_errors(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        runs(*args)


@given(st.integers(0, 4), st.lists(st.integers(0, 2), max_size=30))
def test_runs_emits_exactly_when_the_last_n_values_are_equal(n: int, values: list[int]
                                                              ) -> None:
    sink = Sink()
    s = runs(n, "metric", sink)
    for i, v in enumerate(values):
        s(Event(metric=v, seq=i))
    expected = [i for i in range(len(values))
                if n >= 1 and i >= n - 1 and len(set(values[i - n + 1:i + 1])) == 1]
    assert [e.get("seq", 0) for e in sink.events] == expected


# stable ----------------------------------------------------------------------

def xs(*pairs: tuple[Any, float]) -> list[Event]:
    return [Event(time=t, x=x) for x, t in pairs]


@pytest.mark.parametrize(("inputs", "expected_times"), [
    (xs((1, 0), (1, 1), (1, 2)), []),
    (xs((1, 0), (1, 1), (1, 3)), [0, 1, 3]),
    # spike
    (xs((0, 0), (0, 3), (1, 4), (1, 5), (0, 6), (0, 9)), [0, 3, 6, 9]),
    # flapping
    (xs((0, 0), (0, 10), (1, 11), (0, 11), (1, 12), (5, 13), (2, 14), (2, 17)),
     [0, 10, 14, 17]),
])
def test_stable_spec_examples(inputs: list[Event], expected_times: list[float]) -> None:
    out = run(lambda sink: stable(3, "x", sink), inputs)
    assert [e.time for e in out] == expected_times


def test_stable_timeout_flushes_without_another_event(runtime: Runtime) -> None:
    out = run(lambda sink: stable(3, "x", sink), xs((1, 0), (1, 1)), until=3, runtime=runtime)
    assert [e.time for e in out] == [0, 1]
    assert clock().now() == 3


def test_stable_never_re_emits_when_event_time_runs_ahead_of_the_clock() -> None:
    # §9.1.2: change at t=0, then a same-value event with time 3 arriving at clock 1.
    # Riemann emits both at clock 1 and again when the timeout fires at clock 3.
    emitted: list[tuple[float, Any]] = []
    run_intervals(
        lambda sink: stable(3, "x", lambda e: emitted.append((scheduler().now(), e.time))),
        [(Event(x=1, time=0), 1), (Event(x=1, time=3), 5)],
    )
    assert emitted == [(1, 0), (1, 3)]


def test_stable_needs_event_time() -> None:
    s = stable(3, "x", Sink())
    with pytest.raises(ValueError, match="event time"):
        s(Event(x=1))


def test_stable_timeout_failures_reach_the_exception_stream(
        caplog: pytest.LogCaptureFixture) -> None:
    # Riemann's stable only logs them (§3.0.2); rillet reports them like any child failure.
    errors = Sink()

    def broken(event: Any) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR):
        run(lambda sink: exception_stream(errors, stable(2, "x", broken)),
            xs((1, 0)), until=5)
    assert [e.service for e in errors.events] == ["rillet exception"]


def test_stable_close_cancels_its_timer(runtime: Runtime) -> None:
    built: list[stable] = []

    def build(sink: Sink) -> stable:
        built.append(stable(3, "x", sink))
        return built[0]

    out = run(build, xs((1, 0)), runtime=runtime)
    assert len(clock()) == 1
    built[0].close()
    assert len(clock()) == 0
    clock().advance(10)
    assert out == []


@pytest.mark.parametrize(("args", "error"), [
    ((-1, "x"), ValueError), (("3", "x"), ValueError), ((float("inf"), "x"), ValueError),
    ((3, None), TypeError),
])
def test_stable_config_errors(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        stable(*args)


values_in_time = st.lists(
    st.tuples(st.sampled_from("ab"), st.integers(0, 3)), max_size=25,
).map(lambda steps: _timed(steps))


def _timed(steps: list[tuple[str, int]]) -> list[Event]:
    time, out = 0.0, []
    for i, (value, gap) in enumerate(steps):
        time += gap * 0.5
        out.append(Event(time=time, x=value, seq=i))
    return out


def _time(event: Event) -> float:
    assert event.time is not None
    return event.time


def _held_runs(inputs: list[Event], dt: float) -> tuple[list[int], dict[int, float]]:
    """The reference: a run of equal values is emitted whole iff the clock reaches
    its first time + dt before the value changes; returns the emitted positions and,
    for each, the start time of its run."""
    emitted: list[int] = []
    run_start: dict[int, float] = {}
    i = 0
    while i < len(inputs):
        j = i
        while j + 1 < len(inputs) and inputs[j + 1].get("x") == inputs[i].get("x"):
            j += 1
        start = _time(inputs[i])
        ends = _time(inputs[j + 1]) if j + 1 < len(inputs) else float("inf")
        if ends >= start + dt:
            emitted.extend(range(i, j + 1))
            run_start.update(dict.fromkeys(range(i, j + 1), start))
        i = j + 1
    return emitted, run_start


@settings(max_examples=200)
@given(values_in_time, st.sampled_from([0.5, 1, 1.5, 3]))
def test_stable_emits_whole_runs_that_held_dt_never_early_never_twice(
        inputs: list[Event], dt: float) -> None:
    emitted: list[tuple[float, int]] = []
    run(lambda sink: stable(dt, "x", lambda e: emitted.append((scheduler().now(), e.get("seq")))),
        inputs, until=(_time(inputs[-1]) + dt if inputs else 0))
    expected, run_start = _held_runs(inputs, dt)
    assert [seq for _, seq in emitted] == expected
    for now, seq in emitted:
        assert now >= run_start[seq] + dt


# changed ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("options", "states", "expected"),
    [
        ({}, ["ok", "bad", "bad", "ok", "ok", "ok", "evil", "bad"],
         ["ok", "bad", "ok", "evil", "bad"]),
        ({"init": "ok"}, ["ok", "bad", "bad", "ok", "ok", "evil", "bad"],
         ["bad", "ok", "evil", "bad"]),
        ({}, [None, "ok", None], ["ok", None]),  # a first None is no change from init None
    ],
)
def test_changed_table(options: dict[str, Any], states: list[str | None],
                       expected: list[str | None]) -> None:
    out = run(lambda sink: changed("state", sink, **options), [Event(state=s) for s in states])
    assert [e.state for e in out] == expected


def test_changed_pairs_gives_the_immediately_preceding_event() -> None:
    states = ["ok", "bad", "bad", "ok", "ok", "ok", "evil", "bad"]
    inputs = [Event(state=s, metric=i) for i, s in enumerate(states)]
    out = run(lambda sink: changed("state", sink, pairs=True), inputs)
    assert [(p and p.metric, e.metric) for p, e in out] == [
        (None, 0), (0, 1), (2, 3), (5, 6), (6, 7)
    ]


def test_changed_on_a_function_and_python_equality() -> None:
    inputs = [Event(metric=m) for m in [1, 1.0, 2, 2.5]]
    out = run(lambda sink: changed(lambda e: e.metric, sink), inputs)
    assert [e.metric for e in out] == [1, 2, 2.5]  # 1 == 1.0 in Python (not in Clojure)
    out = run(lambda sink: changed(lambda e: e.metric > 1.5, sink), inputs)
    assert [e.metric for e in out] == [1, 2]


@relaxed
@given(st.lists(st.sampled_from(["ok", "warning", None])), st.sampled_from(["ok", None]))
def test_changed_equals_the_model(states: list[str | None], init: str | None) -> None:
    out = run(lambda sink: changed("state", sink, init=init), [Event(state=s) for s in states])
    expected: list[str | None] = []
    previous = init
    for s in states:
        if s != previous:
            expected.append(s)
        previous = s
    assert [e.state for e in out] == expected


# changed_state ---------------------------------------------------------------------

def test_changed_state_per_host_and_service() -> None:
    inputs = [Event(host=h, service=s, state=st) for h, s, st in [
        ("a", "x", "ok"), ("b", "x", "ok"), ("a", "y", "ok"), ("a", "x", "ok"),
        ("a", "x", "critical"), ("b", "x", "ok"), ("a", "x", "ok"),
    ]]
    out = run(lambda sink: changed_state(sink), inputs)
    assert [(e.host, e.service, e.state) for e in out] == [
        ("a", "x", "ok"), ("b", "x", "ok"), ("a", "y", "ok"), ("a", "x", "critical"),
        ("a", "x", "ok"),
    ]


def test_changed_state_with_init_and_bounded_keys() -> None:
    s = changed_state(sink := Sink(), init="ok", max_keys=1)
    s(Event(host="a", state="ok"))
    s(Event(host="b", state="critical"))
    assert [e.host for e in sink.events] == ["b"]
    assert len(s) == 1


@relaxed
@given(timed_events(states=["ok", "warning", "critical"]))
def test_changed_state_never_emits_the_same_state_twice_in_a_row_per_key(
    inputs: list[Event],
) -> None:
    out = run(lambda sink: changed_state(sink), inputs)
    last: dict[Any, Any] = {}
    for e in out:
        key = (e.host, e.service)
        assert last.get(key) != e.state
        last[key] = e.state
    # and every change of a key's state is reported
    expected: dict[Any, list[str | None]] = defaultdict(list)
    previous: dict[Any, Any] = {}
    for e in inputs:
        key = (e.host, e.service)
        if previous.get(key) != e.state:
            expected[key].append(e.state)
        previous[key] = e.state
    reported: dict[Any, list[str | None]] = defaultdict(list)
    for e in out:
        reported[(e.host, e.service)].append(e.state)
    assert reported == expected


# sustained -------------------------------------------------------------------------


@pytest.mark.parametrize(("dt", "steps", "expected_times"), [
    # the run from 0 is broken at 50; the run from 60 reaches 60 s at 120
    (60, [(0, 95), (30, 97), (50, 80), (60, 91), (100, 99), (120, 93), (130, 94)], [120, 130]),
    (60, [(0, 95), (59.9, 95)], []),                   # never quite 60 s
    (60, [(0, 95), (60, 95)], [60]),                   # exactly dt counts
    (0, [(0, 95), (1, 10), (2, 95)], [0, 2]),          # dt = 0 is a plain filter
    (10, [(0, 95), (100, 95)], [100]),                 # no events between: still held
    (10, [(0, 10), (5, 20)], []),                      # never true
])
def test_sustained_table(dt: float, steps: list[tuple[float, float]],
                         expected_times: list[float]) -> None:
    out = run(lambda sink: sustained(dt, "metric > 90", sink),
              [Event(metric=m, time=t) for t, m in steps])
    assert [e.time for e in out] == expected_times


def test_sustained_sends_the_others_to_else_and_counts_per_host() -> None:
    fired, quiet = Sink(), Sink()
    inputs = [Event(host=h, metric=m, time=t) for h, t, m in [
        ("a", 0, 5), ("b", 0, 5), ("a", 10, 5), ("b", 10, 0), ("a", 20, 5), ("b", 20, 5)]]
    run(lambda _: by("host", sustained(20, lambda e: e.metric > 1, fired, else_=quiet)),
        inputs)
    assert [(e.host, e.time) for e in fired.events] == [("a", 20)]
    assert [(e.host, e.time) for e in quiet.events] == [("b", 10)]


def test_sustained_page_and_resolve_once() -> None:
    # The guide's recipe: one "critical" when the run completes, one "ok" when it ends.
    from streams import changed_state, with_

    def rule(pager: Sink) -> Any:
        alert = changed_state(pager, init="ok")
        return by("host", sustained(30, "metric > 0.9", with_({"state": "critical"}, alert),
                                    else_=with_({"state": "ok"}, alert)))

    inputs = [Event(host="a", service="cpu", metric=m, time=t)
              for t, m in [(0, 0.95), (10, 0.2), (20, 0.95), (40, 0.97), (50, 0.99),
                           (60, 0.5), (70, 0.4)]]
    assert [(e.state, e.time) for e in run(rule, inputs)] == [("critical", 50), ("ok", 60)]


@pytest.mark.parametrize(("args", "error", "message"), [
    ((-1, "metric > 1"), ValueError, r"dt must be a number of seconds >= 0, got -1"),
    ((float("inf"), "metric > 1"), ValueError, r"got inf"),
    (("60", "metric > 1"), ValueError, r"got '60'"),
    ((60, 42), TypeError, r"the condition must be a function of the event, a query string"),
])
def test_sustained_config_errors(args: tuple[Any, ...], error: type[Exception],
                                 message: str) -> None:
    with pytest.raises(error, match=message):
        sustained(*args)


def test_sustained_needs_event_time() -> None:
    with pytest.raises(ValueError, match="sustained works on event time"):
        sustained(1, "metric > 1", Sink())(Event(metric=5))


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=30),
       st.sampled_from([0, 0.5, 1, 2.5]))
def test_sustained_forwards_exactly_the_events_whose_run_has_lasted_dt(
        steps: list[tuple[int, bool]], dt: float) -> None:
    time, inputs = 0.0, []
    for i, (gap, high) in enumerate(steps):
        time += gap * 0.5
        inputs.append(Event(metric=10 if high else 0, time=time, seq=i))
    fired, quiet = Sink(), Sink()
    run(lambda _: sustained(dt, lambda e: e.metric > 5, fired, else_=quiet), inputs)
    expected = []
    for i, event in enumerate(inputs):
        if event.metric > 5:
            start = i
            while start > 0 and inputs[start - 1].metric > 5:
                start -= 1
            if _time(event) - _time(inputs[start]) >= dt:
                expected.append(i)
    assert [e.get("seq", 0) for e in fired.events] == expected
    assert [e.get("seq", 0) for e in quiet.events] == \
        [i for i, e in enumerate(inputs) if e.metric <= 5]
