"""fill_in, fill_in_last, interpolate_constant (spec §3.9)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Event, Runtime, exception_stream, fill_in, fill_in_last, interpolate_constant
from streams.testing import clock, run, run_intervals

# fill_in ------------------------------------------------------------------------------------


def test_fill_in_fills_with_no_events_at_all() -> None:
    out = run(lambda sink: fill_in(1, Event(service="x", metric=0), sink), [], until=3.5)
    assert out == [Event(service="x", metric=0, time=t) for t in (1, 2, 3)]


def test_fill_in_forwards_events_and_each_one_defers_the_fill() -> None:
    out = run(lambda sink: fill_in(1, {"metric": 0}, sink),
              [Event(metric=5, time=0.5), Event(metric=6, time=1.2)], until=3)
    assert [(e.time, e.metric) for e in out] == [(0.5, 5), (1.2, 6), (2.2, 0)]


def test_fill_in_expired_event_stops_filling_until_a_live_one() -> None:
    out = run(lambda sink: fill_in(1, {"metric": 0}, sink),
              [Event(state="expired", time=0.5), Event(metric=1, time=4)], until=6)
    assert [(e.time, e.metric, e.state) for e in out] == [
        (0.5, None, "expired"), (4, 1, None), (5, 0, None), (6, 0, None)]


def test_fill_in_fork_starts_its_own_timer() -> None:
    out: list[Event] = []
    run(lambda sink: sink, [])
    template = fill_in(1, {"service": "fill"}, out.append)
    clock().advance(0.5)
    fork = template.fork()
    template.close()
    clock().advance(2.6)
    assert [e.time for e in out] == [1.5, 2.5]
    fork.close()


def test_fill_in_fill_sees_exception_stream_of_the_events() -> None:
    errors: list[Event] = []

    def broken(event: Event) -> None:
        if event.service == "fill":
            raise RuntimeError("boom")

    run(lambda sink: exception_stream(errors.append, fill_in(1, {"service": "fill"}, broken)),
        [Event(time=0.5)], until=1.5)
    assert [e.time for e in errors] == [1.5]


def test_fill_in_rejects_a_bad_default_event() -> None:
    with pytest.raises(TypeError, match="default_event"):
        fill_in(1, "zero")  # type: ignore[arg-type]


def test_fill_in_close_cancels_the_timer() -> None:
    out: list[Event] = []
    run(lambda sink: sink, [])
    s = fill_in(1, {}, out.append)
    s.close()
    clock().advance(5)
    assert out == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 20).map(lambda t: round(t, 2)), max_size=10))
def test_fill_in_fills_exactly_the_silences(times: list[float]) -> None:
    times = sorted(times)
    out = run(lambda sink: fill_in(1, {"service": "fill"}, sink),
              [Event(time=t) for t in times], until=21)
    fills = [e.time for e in out if e.service == "fill"]
    # Every fill comes a whole number of seconds after the last real event (or the start),
    # and no second passes without an event or a fill.
    for t in fills:
        last = max([x for x in times if x < t], default=0)
        assert t - last >= 1 - 1e-9
        assert (t - last) == pytest.approx(round(t - last))
    timeline = sorted([0, *times, *fills, 21])
    assert all(b - a <= 1 + 1e-9 for a, b in itertools.pairwise(timeline))
    assert len([e for e in out if e.service != "fill"]) == len(times)


# fill_in_last -------------------------------------------------------------------------------


def test_fill_in_last_starts_on_first_event_and_merges_update() -> None:
    out = run(lambda sink: fill_in_last(1, {"state": "stale", "metric": None}, sink),
              [Event(host="a", state="ok", metric=3, time=2)], until=4)
    assert out == [Event(host="a", state="ok", metric=3, time=2),
                   Event(host="a", state="stale", time=3), Event(host="a", state="stale", time=4)]


def test_fill_in_last_with_a_function() -> None:
    out = run(lambda sink: fill_in_last(2, lambda e: e.evolve(metric=e.metric * 10), sink),
              [Event(metric=1, time=0), Event(metric=2, time=1)], until=5)
    assert [(e.time, e.metric) for e in out] == [(0, 1), (1, 2), (3, 20), (5, 20)]


def test_fill_in_last_expired_event_stops_filling() -> None:
    out = run(lambda sink: fill_in_last(1, {}, sink),
              [Event(host="a", time=0), Event(host="a", state="expired", time=0.5)], until=5)
    assert [(e.time, e.state) for e in out] == [(0, None), (0.5, "expired")]


def test_fill_in_last_rejects_bad_update() -> None:
    with pytest.raises(TypeError, match="update"):
        fill_in_last(1, "stale")  # type: ignore[arg-type]


# interpolate_constant -----------------------------------------------------------------------


def test_interpolate_constant_repeats_the_latest_event() -> None:
    out = run(lambda sink: interpolate_constant(1, sink),
              [Event(metric=1, time=0), Event(metric=2, time=2.5)], until=4)
    assert [(e.time, e.metric) for e in out] == [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)]


def test_interpolate_constant_is_not_synchronous(runtime: Runtime) -> None:
    out = run_intervals(lambda sink: interpolate_constant(1, sink), [(Event(metric=1), None)],
                        runtime=runtime)
    assert out == []
    clock().advance(0.1)
    assert [(e.time, e.metric) for e in out] == [(0, 1)]


def test_interpolate_constant_expired_forwarded_at_once_and_stops(runtime: Runtime) -> None:
    out = run(lambda sink: interpolate_constant(1, sink),
              [Event(metric=1, time=0), Event(state="expired", time=1.5)], until=5,
              runtime=runtime)
    assert [(e.time, e.metric, e.state) for e in out] == [
        (0, 1, None), (1, 1, None), (1.5, None, "expired")]
    assert len(clock()) == 0


def test_interpolate_constant_stops_when_ttl_passes() -> None:
    out = run(lambda sink: interpolate_constant(1, sink), [Event(metric=1, time=0, ttl=2.5)],
              until=10)
    assert [e.time for e in out] == [0, 1, 2]
