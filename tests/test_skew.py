"""Time sanity: one event far from the clock changes nothing in a stream that reads event time.

Every stream here windows, schedules, weighs or compares by ``event.time``.
Each is driven twice over the same correctly timed events, once with a
far-off event slipped in: the outputs must be identical, and the stream
counts the one it dropped. Before ``max_skew`` reached them (only the time
windows had it), ``stable`` held every later event for a year, ``sustained``
never completed a run, ``ewma`` froze at the bogus time, the time-based
detectors emptied their window and kept the bogus point in it, and
``ddt``/``predict_linear`` computed rates and fits against it, and one
event a year behind counted as expired in ``rate`` (ticks stopped) and
``percentiles``/``fold_interval`` (the open bin of every host discarded);
those three check only the past.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from streams import (
    DEFAULT_MAX_SKEW,
    Event,
    Runtime,
    VirtualClock,
    apdex,
    batch,
    breakout,
    by,
    coalesce,
    combine,
    ddt,
    ddt_events,
    ddt_real,
    derivative,
    ewma,
    fill_in_last,
    fixed_offset_time_window,
    fixed_time_window,
    fold_interval,
    fold_interval_metric,
    holt_winters,
    mad,
    moving_time_window,
    percentiles,
    predict_linear,
    rate,
    rollup,
    stable,
    sustained,
    throttle,
    zscore,
)
from streams.testing import Sink

NOW = 1_700_000_000.0
YEAR = 365 * 86400.0

BUILDERS: dict[str, Callable[[Sink], Any]] = {
    "stable": lambda sink: stable(3, "state", sink),
    "sustained": lambda sink: sustained(4, "metric > 1", sink),
    "ewma": lambda sink: ewma(5, sink),
    "ddt_events": lambda sink: ddt_events(sink),
    "ddt_real": lambda sink: ddt_real(5, sink),
    "predict_linear": lambda sink: predict_linear(5, 30, sink),
    "zscore_seconds": lambda sink: zscore(20, sink, unit="seconds", warmup=3),
    "mad_seconds": lambda sink: mad(20, sink, unit="seconds", warmup=3),
    "breakout_seconds": lambda sink: breakout(20, sink, unit="seconds", warmup=3),
    "holt_winters_seconds": lambda sink: holt_winters(20, sink, unit="seconds", slot=5),
    "zscore_events": lambda sink: zscore(10, sink),
    "combine": lambda sink: combine([zscore(20, unit="seconds"), mad(10)], sink),
    "derivative": lambda sink: derivative(zscore(10), sink),
    "moving_time_window": lambda sink: moving_time_window(5, sink),
    "fixed_time_window": lambda sink: fixed_time_window(5, sink),
    "fixed_offset_time_window": lambda sink: fixed_offset_time_window(5, sink),
}

# On the clock, reading event time only for expiry: a far-past event counts as
# expired and would stop the ticks, or discard the open bin, of every host
# sharing the stream. Only the past is checked; an event ahead is a live one.
EXPIRY: dict[str, Callable[[Sink], Any]] = {
    "rate": lambda sink: rate(10, sink),
    "percentiles": lambda sink: percentiles(10, [0.5], sink),
    "fold_interval": lambda sink: fold_interval(10, "metric", sum, sink),
    "fold_interval_metric": lambda sink: fold_interval_metric(10, sum, sink),
}
FAR = {"year-ahead": NOW + YEAR, "year-behind": NOW - YEAR, "1e11": 1e11}
CASES = [(name, far) for name in BUILDERS for far in FAR] + \
    [(name, "year-behind") for name in EXPIRY]

STATES = ["ok", "ok", "ok", "ok", "ok", "warn", "warn", "warn", "warn", "ok"]
GOOD = [Event(host="h", service="s", state=STATES[i // 6 % len(STATES)], metric=(i * 7) % 11,
              time=NOW + i) for i in range(60)]


def drive(build: Callable[[Sink], Any], bad_time: float | None = None,
          at: int = 20) -> tuple[list[str], Any]:
    """Feed GOOD at their own times on a virtual clock (the far-off event, if any,
    arrives just after event ``at``); return what came out and the stream."""
    clock = VirtualClock(NOW)
    sink = Sink()
    with Runtime(clock):
        stream = build(sink)
        for i, event in enumerate(GOOD):
            clock.advance(event.time)
            stream(event)
            if i == at and bad_time is not None:
                stream(event.evolve(time=bad_time))
        clock.advance(NOW + 200)
    return [repr(out) for out in sink.events], stream


@pytest.mark.parametrize(("name", "far"), CASES)
def test_an_event_far_from_the_clock_changes_nothing_and_is_counted(name: str, far: str) -> None:
    build = {**BUILDERS, **EXPIRY}[name]
    clean, _ = drive(build)
    assert clean, f"{name} emitted nothing: the probe would prove nothing"
    skewed_run, stream = drive(build, FAR[far])
    assert skewed_run == clean, "the far-off event changed what the stream emitted"
    assert stream.skewed == 1


# stable holds the far event unseen, ddt_real replaces it by the next snapshot,
# a copy of an event does not move a median: their outputs cannot show it was trusted.
@pytest.mark.parametrize("name", sorted({*BUILDERS, *EXPIRY} - {"stable", "ddt_real",
                                                                  "percentiles"}))
def test_max_skew_none_trusts_every_time(name: str) -> None:
    def trusting(sink: Sink) -> Any:
        built = {**BUILDERS, **EXPIRY}[name](sink)
        return type(built)(*built._args, **{**built._kwargs, "max_skew": None})

    clean, _ = drive(trusting)
    trusted, stream = drive(trusting, NOW - 3 * 3600 if name in EXPIRY else NOW + 3 * 3600,
                            at=50)
    assert stream.skewed == 0
    assert trusted != clean  # the far event was used, as Riemann would


def test_an_event_within_max_skew_is_used() -> None:
    # Ten minutes off is within the default hour: a late or early host is not dropped.
    clean, _ = drive(BUILDERS["ewma"])
    late, stream = drive(BUILDERS["ewma"], NOW - 600)
    assert stream.skewed == 0 and late != clean
    assert DEFAULT_MAX_SKEW == 3600


def test_ddt_passes_max_skew_to_the_stream_it_picks() -> None:
    assert ddt(print, max_skew=60).max_skew == 60
    assert ddt(5, print, max_skew=None).max_skew is None
    assert repr(ddt(5, print, max_skew=60)) == "ddt_real(5, print, max_skew=60)"


@pytest.mark.parametrize("build", [
    lambda: stable(1, "state", print, max_skew=-1),
    lambda: sustained(1, "metric > 1", print, max_skew=0),
    lambda: ewma(1, print, max_skew="1h"),
    lambda: ddt_events(print, max_skew=float("inf")),
    lambda: rate(5, print, max_skew=0),
    lambda: fold_interval_metric(5, sum, print, max_skew=-1),
    lambda: predict_linear(3, 1, print, max_skew=-5),
    lambda: zscore(10, print, max_skew=-1),
    lambda: derivative(zscore(10), print, max_skew=-1),
])
def test_a_bad_max_skew_fails_at_load_naming_the_argument_and_the_fix(
        build: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match=r"max_skew must be a positive number of seconds.*"
                                         r"max_skew=3600"):
        build()


def test_skewed_events_are_logged_once_per_interval_per_kind_of_stream(
        caplog: pytest.LogCaptureFixture) -> None:
    # A host with a wrong clock under by("host", ...) reaches one fork per key:
    # the log says so once, not once per event or per key.
    clock = VirtualClock(NOW)
    sink = Sink()
    with Runtime(clock), caplog.at_level(logging.WARNING, logger="rillet.skew"):
        stream = by("host", ewma(5, sink))
        for n in range(500):
            stream(Event(host=f"h{n % 50}", metric=1, time=NOW + YEAR))
        stream(Event(host="h0", metric=1, time=NOW))
    lines = [r.getMessage() for r in caplog.records if r.name == "rillet.skew"]
    assert len(lines) == 1
    assert "ewma(5" in lines[0] and "max_skew=3600.0" in lines[0]
    assert len(sink.events) == 1


CLOCK_DRIVEN: dict[str, Callable[[Sink], Any]] = {
    **EXPIRY,  # for them an event ahead of the clock is an ordinary one
    "throttle": lambda sink: throttle(5, 10, sink),
    "rollup": lambda sink: rollup(2, 10, sink),
    "batch": lambda sink: batch(5, 10, sink),
    "apdex": lambda sink: apdex(10, "metric < 3", "metric < 6", sink),
    "coalesce": lambda sink: coalesce(10, sink),
    "fill_in_last": lambda sink: fill_in_last(10, {}, sink),
}


@pytest.mark.parametrize("bad_time", [NOW + YEAR, 1e11], ids=["year-ahead", "1e11"])
@pytest.mark.parametrize("name", list(CLOCK_DRIVEN))
def test_streams_on_the_clock_need_no_max_skew(name: str, bad_time: float) -> None:
    # They window and schedule by the clock, not by event time: a far-off event
    # is one more event of the window it arrives in, and everything after it flows.
    clean, _ = drive(CLOCK_DRIVEN[name])
    skewed_run, _ = drive(CLOCK_DRIVEN[name], bad_time)
    assert len(skewed_run) <= len(clean) + 2
    # The far event arrives at NOW + 20; what the last windows emitted is untouched.
    assert len(clean) >= 2, f"{name} emitted too little: the probe would prove nothing"
    assert skewed_run[-2:] == clean[-2:]
