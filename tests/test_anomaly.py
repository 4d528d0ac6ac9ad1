"""Anomaly detectors: table tests in virtual time, and properties of their steps."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import (
    Event,
    StreamArgumentError,
    breakout,
    by,
    combine,
    derivative,
    holt_winters,
    mad,
    streams,
    where,
    zscore,
)
from streams._anomaly import band_score
from streams.testing import run

FIELDS = ("anomaly_score", "expected", "lower", "upper", "judged_by")


def scores(out: list[Any]) -> list[float]:
    return [e.get("anomaly_score") for e in out]


def series(values: list[float | None], *, step: float = 60.0, host: str = "web1") -> list[Event]:
    return [Event(host=host, service="latency", metric=v, time=i * step)
            for i, v in enumerate(values)]


LIMIT = 64  # events a time window may hold

# Every detector, with small windows so the tests stay short.
DETECTORS = {
    "holt_winters": lambda: holt_winters(4),
    "holt_winters_seconds": lambda: holt_winters(240, unit="seconds", slot=60),
    "zscore": lambda: zscore(8),
    "zscore_seconds": lambda: zscore(480, unit="seconds", warmup=4, limit=LIMIT),
    "mad": lambda: mad(8),
    "mad_seconds": lambda: mad(480, unit="seconds", warmup=4, limit=LIMIT),
    "breakout": lambda: breakout(8),
    "breakout_seconds": lambda: breakout(480, unit="seconds", warmup=4, limit=LIMIT),
    "combine": lambda: combine([zscore(8), mad(8)]),
    "vote": lambda: combine([zscore(8), mad(8), breakout(8)], quorum=2),
    "derivative": lambda: derivative(zscore(8)),
}
WARMUP_EVENTS = 12  # past every detector's warm-up above


def detect(name: str, values: list[float | None], step: float = 60.0,
           events: list[Event] | None = None) -> list[Any]:
    make = DETECTORS[name]
    return run(lambda sink: type(make())(*make()._args, sink, **make()._kwargs),
               series(values, step=step) if events is None else events)


# Table tests -------------------------------------------------------------------


def test_holt_winters_learns_the_season_and_flags_what_breaks_it() -> None:
    day = [10, 30, 50, 30] * 6
    out = detect("holt_winters", [*day, 10, 30, 90, 30])
    assert max(scores(out)[:-2]) < 0.5, "a repeating season is normal"
    flagged = out[-2]
    assert flagged.get("anomaly_score") > 0.9
    assert flagged.get("expected") == pytest.approx(50)
    assert flagged.get("lower") <= 50 <= flagged.get("upper")
    assert flagged.get("judged_by") == "holt_winters"


def test_holt_winters_in_seconds_copes_with_missing_samples() -> None:
    # A season of 4 slots of 60 s; samples go missing but each lands in its slot.
    times = [t for t in range(0, 240 * 6, 60) if t % 420]
    events = [Event(metric=[10, 30, 50, 30][t // 60 % 4], time=t) for t in times]
    events.append(Event(metric=90, time=240 * 6 + 120))  # slot 2 expects 50
    out = run(lambda sink: holt_winters(240, sink, unit="seconds", slot=60), events)
    assert max(scores(out)[:-1]) < 0.5
    assert out[-1].get("anomaly_score") > 0.9
    assert out[-1].get("expected") == pytest.approx(50)


def test_zscore_band_is_mean_plus_minus_width_deviations() -> None:
    out = detect("zscore", [10, 12] * 4 + [11, 20])
    last = out[-1]
    assert last.get("expected") == pytest.approx(11.0, abs=0.2)
    spread = (last.get("upper") - last.get("lower")) / 2
    assert spread == pytest.approx(3 * 1.0, rel=0.15)
    assert last.get("anomaly_score") > 0.8


def test_mad_ignores_a_lone_outlier_in_its_window() -> None:
    values = [10, 11, 10, 11, 500, 10, 11, 10, 11, 14]
    out = detect("mad", values)
    assert out[4].get("anomaly_score") > 0.99
    assert out[-1].get("expected") == 11
    assert out[-1].get("upper") < 14 < detect("zscore", values)[-1].get("upper")
    assert out[-1].get("anomaly_score") > 0.5


def test_mad_falls_back_when_most_values_are_equal() -> None:
    # Half the window equal: a zero MAD must not make every other value an outage.
    out = detect("mad", [5, 5, 5, 5, 5, 6, 5, 5, 5, 6, 5, 5, 6])
    assert scores(out)[-1] < 1.0


def test_breakout_flags_only_values_outside_the_window_range() -> None:
    out = detect("breakout", [1, 9, 2, 8, 3, 7, 1, 9, 5, 4, 6, 12])
    assert max(scores(out)[:-1]) <= 0.5
    assert out[-1].get("lower") == 1 and out[-1].get("upper") == 9
    assert out[-1].get("anomaly_score") > 0.5


def test_breakout_forgets_what_left_the_window() -> None:
    out = detect("breakout", [100] + [1, 2] * 8 + [50])
    assert out[-1].get("upper") == 2, "100 left the 8-event window"
    assert out[-1].get("anomaly_score") > 0.99


def test_combine_quorum_is_the_kth_worst_score() -> None:
    values = [10, 12, 10, 12, 10, 12, 10, 12, 11, 40]
    worst = detect("combine", values)
    each = [detect(name, values) for name in ("zscore", "mad")]
    assert scores(worst) == [max(a, b) for a, b in zip(*map(scores, each), strict=True)]
    vote = detect("vote", values)
    three = [scores(detect(n, values)) for n in ("zscore", "mad", "breakout")]
    assert scores(vote) == [sorted(trio)[1] for trio in zip(*three, strict=True)]
    assert vote[-1].get("judged_by") in ("zscore", "mad", "breakout")


def test_derivative_judges_the_rate_and_explains_in_values() -> None:
    out = detect("derivative", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 30], step=1)
    assert max(scores(out)[:-1]) == 0
    last = out[-1]
    assert last.get("anomaly_score") == 1.0
    assert last.get("expected") == pytest.approx(11)  # 10 + 1 per second × 1 s
    assert last.get("judged_by") == "derivative"


def test_derivative_skips_values_without_elapsed_time() -> None:
    events = [Event(metric=m, time=t) for t, m in [(0, 1), (1, 2), (1, 50), (2, 3)]]
    out = run(lambda sink: derivative(zscore(2, warmup=1), sink), events)
    assert out[2].get("anomaly_score") == 0.0 and out[2].get("expected") is None


def test_events_without_a_metric_pass_through_and_leave_the_state_alone() -> None:
    values = [10, 12, 10, 12, 10, 12, 10, 12, 11, 20]
    for name in DETECTORS:
        plain = detect(name, values)
        gappy = detect(name, [], events=[
            Event(metric=m, time=t * 60) for t, x in enumerate(values) for m in (x, None)])
        assert scores(gappy[1::2]) == [None] * len(values)
        assert gappy[1].get("anomaly_score") is None and gappy[1].metric is None
        assert scores(gappy[0::2]) == scores(plain), name


def test_an_event_without_a_time_is_judged_at_the_clock() -> None:
    events = [Event(metric=m) for m in [1, 1, 1, 1, 1, 1, 1, 9]]
    out = run(lambda sink: zscore(60, sink, unit="seconds", warmup=3), events)
    assert scores(out)[-1] == 1.0


def test_detectors_work_under_by() -> None:
    a = series([10, 12] * 5 + [40], host="a")
    b = series([100, 90] * 5 + [95], host="b")
    mixed = [e for pair in zip(a, b, strict=True) for e in pair]
    out = run(lambda sink: by("host", zscore(8, sink)), mixed)
    alone = {h: scores(run(lambda sink: zscore(8, sink), s)) for h, s in (("a", a), ("b", b))}
    for host in ("a", "b"):
        assert [e.get("anomaly_score") for e in out if e.host == host] == alone[host]


def test_fork_gives_fresh_state_and_repr_reads_like_the_call() -> None:
    s = combine([zscore(8), derivative(mad(10))], quorum=2)
    assert repr(s) == "combine([zscore(8), derivative(mad(10))], quorum=2)"
    for value in [1, 5, 1, 5, 1, 5, 1, 5, 1, 5]:
        s.judge(0, value)
    fresh = s.fork()
    assert fresh is not s and fresh.detectors[0] is not s.detectors[0]
    assert fresh.judge(0, 100) == (0.0, None, None, None)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: zscore(0), "window must be a whole number of events >= 2, got 0"),
    (lambda: zscore(10, unit="minutes"), "unit must be 'events' or 'seconds', got 'minutes'"),
    (lambda: zscore(-5, unit="seconds"), "window must be a positive number of seconds, got -5"),
    (lambda: mad(10, width=0), "width must be the band's half-width in deviations"),
    (lambda: breakout(10, limit=1), "limit must be a whole number of events >= 2, got 1"),
    (lambda: holt_winters(1), "season must be a whole number of events >= 2, got 1"),
    (lambda: holt_winters(288, alpha=1.5), "alpha must be a smoothing weight"),
    (lambda: holt_winters(288, slot=300), "holt_winters(288, child, unit='seconds', slot=300)"),
    (lambda: holt_winters(86400, unit="seconds", slot=-1), "slot must be a positive number"),
    (lambda: combine([]), "detectors must be a detector or a list of them"),
    (lambda: combine([zscore(8)], quorum=2), "quorum must be at most the number of detectors, 1"),
    (lambda: combine([zscore(8, print)]), "without children of their own"),
    (lambda: derivative(print), "detectors must be a detector"),
    # A detector placed where events flow needs children: alone it would discard everything.
    (lambda: where(lambda e: True, zscore(8)), "is given to where(...) without a child stream"),
    (lambda: by("host", mad(10)), "is given to by(...) without a child stream"),
    (lambda: streams(holt_winters(288)), "is given to streams(...) without a child stream"),
    (lambda: where(lambda e: True, combine([zscore(8)])), "or put it in combine("),
])
def test_configuration_mistakes_name_the_argument(build: Any, message: str) -> None:
    with pytest.raises(StreamArgumentError) as error:
        build()
    assert message in str(error.value)


# Properties of the steps ---------------------------------------------------------

values_strategy = st.one_of(
    st.floats(-1e12, 1e12, allow_nan=False),
    st.integers(-10**6, 10**6),
)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(DETECTORS)),
       values=st.lists(st.one_of(values_strategy, st.none()), max_size=60),
       gaps=st.lists(st.floats(0, 500, allow_nan=False), min_size=60, max_size=60))
def test_scores_stay_between_0_and_1(name: str, values: list[float | None],
                                     gaps: list[float]) -> None:
    times = [sum(gaps[:i]) for i in range(len(values))]
    events = [Event(metric=v, time=t) for v, t in zip(values, times, strict=False)]
    make = DETECTORS[name]
    out = run(lambda sink: type(make())(*make()._args, sink, **make()._kwargs), events)
    for event in out:
        score = event.get("anomaly_score")
        assert score is None or 0 <= score <= 1
        assert (score is None) == (event.metric is None)


def state_size(detector: Any) -> int:
    """Everything a detector holds that could grow: its containers' lengths."""
    inner = getattr(detector, "detectors", None) or (
        [detector.detector] if hasattr(detector, "detector") else [])
    if inner:
        return sum(state_size(d) for d in inner)
    state = detector._state
    return sum(len(getattr(state, slot)) for slot in (*type(state).__slots__, "points")
               if hasattr(getattr(state, slot, None), "__len__"))


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(sorted(DETECTORS)), n=st.integers(0, 3000),
       seed=st.integers(0, 2**32))
def test_state_stays_bounded_for_any_input_length(name: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    detector = DETECTORS[name]()
    # Its empty size, plus every window full: points, sorted values, both extremes' queues.
    bound = state_size(DETECTORS[name]()) + 3 * 4 * LIMIT
    t = 0.0
    for _ in range(n):
        t += rng.choice([0.0, 1.0, 60.0, 3600.0 * rng.random()])
        detector.judge(t, rng.gauss(0, 1) * 10 ** rng.randrange(0, 6))
    assert state_size(detector) <= bound


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(DETECTORS)), level=values_strategy,
       n=st.integers(WARMUP_EVENTS, 60))
def test_a_constant_series_is_never_anomalous(name: str, level: float, n: int) -> None:
    assert set(scores(detect(name, [level] * n))) == {0.0}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(DETECTORS)), level=st.floats(-1e6, 1e6),
       jump=st.floats(1e-3, 1e6), up=st.booleans())
def test_a_step_change_after_warm_up_is_anomalous(name: str, level: float, jump: float,
                                                   up: bool) -> None:
    changed = level + jump if up else level - jump
    out = detect(name, [level] * WARMUP_EVENTS + [changed])
    assert scores(out)[-1] > 0.5
    assert not out[-1].get("lower") <= changed <= out[-1].get("upper")


def test_band_score_is_half_at_the_edge() -> None:
    assert band_score(10, 10, 0) == 0.0
    assert band_score(11, 10, 0) == 1.0
    assert band_score(12, 10, 2) == 0.5
    assert band_score(1e308, -1e308, 1e-300) == 1.0


def test_holt_winters_is_not_dragged_by_one_wild_value_but_learns_a_lasting_change() -> None:
    rng = random.Random(3)
    day = [10, 30, 50, 30]
    noisy = [v + rng.uniform(-1, 1) for _ in range(6) for v in day]
    spiked = run(lambda sink: holt_winters(4, sink),
                 series([*noisy, 10, 500, *[v + rng.uniform(-1, 1) for v in [50, 30, *day * 2]]]))
    assert spiked[len(noisy) + 1].get("anomaly_score") > 0.99
    assert max(scores(spiked)[len(noisy) + 2:]) < 0.5, "the spike did not move the forecast"
    shifted = run(lambda sink: holt_winters(4, sink),
                  series([*noisy, *[v + 40 + rng.uniform(-1, 1) for v in day * 30]]))
    assert scores(shifted)[len(noisy)] > 0.99
    assert max(scores(shifted)[-8:]) < 0.5, "a lasting shift becomes the new normal"
