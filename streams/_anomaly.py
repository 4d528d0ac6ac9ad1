"""Anomaly detection: automated thresholds that learn what normal looks like.

Every detector forwards each metric-bearing event with attributes saying how
unusual it is and what it was judged against, so an alert can explain itself:

- ``anomaly_score``: 0 (as expected) to 1; 0.5 is the edge of the band;
- ``expected``: the value the detector expected;
- ``lower``, ``upper``: the band of normal values around it;
- ``judged_by``: which detector's judgement this is.

Until a detector has seen enough (its warm-up) it scores 0 and gives no band.
Events without a metric pass through unchanged and leave the state alone.
An event whose time lies more than ``max_skew`` seconds from the clock
(default one hour, ``None`` trusts every time; see ``DEFAULT_MAX_SKEW``) is
dropped and counted in the detector's ``skewed``: trusted, a year-ahead time
would empty a time window and then stay in it, or judge a wrong season slot.

Each detector keeps its per-key state in a small record and judges one value
with a step function of (state, time, value) that reads no clock and calls
nothing downstream: the stream classes only hold the record and forward
events, and the properties in tests/test_anomaly.py drive the steps through
each detector's ``judge``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from ._clock import scheduler
from ._core import Child, Stream
from ._skew import DEFAULT_MAX_SKEW, skew_limit, skewed
from ._validate import argument_error, count, is_number, number, seconds

__all__ = ["breakout", "combine", "derivative", "holt_winters", "mad", "zscore"]

#: (anomaly score, expected value, lower edge, upper edge); no band while warming up.
Verdict = tuple[float, float | None, float | None, float | None]

WARMING_UP: Verdict = (0.0, None, None, None)
UNITS = ("events", "seconds")
MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation per median absolute deviation
MEAN_AD_TO_SIGMA = 1.2533  # the same per mean absolute deviation


def band_score(value: float, expected: float, half_width: float) -> float:
    """How far outside its band ``value`` is: 0 at ``expected``, 0.5 at the band's
    edge, towards 1 far outside (``d² / (1 + d²)`` with ``d`` in half-widths).

    >>> band_score(10, 10, 2), band_score(12, 10, 2), band_score(16, 10, 2)
    (0.0, 0.5, 0.9)
    """
    distance = abs(value - expected)
    if distance == 0:
        return 0.0
    if not half_width > 0:
        return 1.0
    d = distance / half_width
    if not d < 1e150:  # so far out that d² overflows (or the inputs did): plainly anomalous
        return 1.0
    return d * d / (1 + d * d)


def _judged(value: float, expected: float, half_width: float) -> Verdict:
    return (band_score(value, expected, half_width), expected, expected - half_width,
            expected + half_width)


# Validation: the shared checks, plus the few only detectors need ---------------


def _fraction(value: Any, caller: str, name: str) -> float:
    if not is_number(value) or not 0 < value <= 1:
        raise argument_error(caller, name, value, "a smoothing weight, above 0 and at most 1",
                             f"{name}=0.1")
    return float(value)


def _unit(value: Any, caller: str) -> str:
    if value not in UNITS:
        raise argument_error(caller, "unit", value, "'events' or 'seconds'", "unit='seconds'")
    return str(value)


def _width(value: Any, caller: str) -> float:
    width = number(value, caller, "width", "width=3")
    if not width > 0:
        raise argument_error(caller, "width", value,
                             "the band's half-width in deviations, a positive number", "width=3")
    return float(width)


def _detectors(value: Any, caller: str) -> tuple[_Detector, ...]:
    detectors = (value,) if isinstance(value, _Detector) else value
    if not isinstance(detectors, (list, tuple)) or not detectors or \
            not all(isinstance(d, _Detector) for d in detectors):
        raise argument_error(caller, "detectors", value,
                             "a detector or a list of them, built without children",
                             "[zscore(60), mad(60)]")
    for detector in detectors:
        if detector.children:
            raise argument_error(caller, "detectors", detector,
                                 "detectors without children of their own (give the children "
                                 f"to {caller.split('(')[0]})")
    return tuple(detectors)


# The stream shape shared by every detector -------------------------------


def _annotated(event: Any, verdict: Verdict, name: str) -> Any:
    score, expected, lower, upper = verdict
    if expected is None:
        return event.with_attributes({"anomaly_score": score, "judged_by": name})
    return event.with_attributes({"anomaly_score": score, "expected": expected,
                                  "lower": lower, "upper": upper, "judged_by": name})


class _Detector(Stream):
    """Judges each metric with ``judge(time, value)`` and forwards the verdict."""

    __slots__ = ("max_skew", "skewed")
    # Built without children, a detector is a judge that combine and derivative ask.
    childless: ClassVar[bool] = True
    judge_when_childless: ClassVar[bool] = True

    def _trust_times(self, max_skew: Any, caller: str) -> None:
        self.max_skew = skew_limit(max_skew, caller)
        self.skewed = 0

    def judge(self, time: float, value: float) -> Verdict:
        raise NotImplementedError

    def judge_named(self, time: float, value: float) -> tuple[Verdict, str]:
        """The verdict and the name of the detector that gave it."""
        return self.judge(time, value), type(self).__name__

    def __call__(self, event: Any) -> None:
        value = event.metric
        if value is None:
            self._out(event)
            return
        time = event.time
        if time is None:
            time = scheduler().now()
        elif skewed(self, time):
            return
        verdict, name = self.judge_named(time, value)
        self._out(_annotated(event, verdict, name))


# Holt-Winters ------------------------------------------------------------


class HoltWintersState:
    """Level, trend, and per-slot season and deviation (Brutlag's)."""

    __slots__ = ("count", "deviation", "level", "season", "seen", "spread", "trend")

    def __init__(self, slots: int) -> None:
        self.level = 0.0
        self.trend = 0.0
        self.season = [0.0] * slots
        self.deviation = [0.0] * slots
        self.seen = [0] * slots
        self.spread = 0.0  # the smoothed absolute error over every slot
        self.count = 0


def holt_winters_step(state: HoltWintersState, slot: int, value: float, alpha: float,
                      beta: float, gamma: float, width: float, warmup: int) -> Verdict:
    """Judge ``value`` against the forecast for ``slot``, then learn from it.

    Additive Holt-Winters in error-correction form (a constant series gives
    exactly zero error, so it never drifts into an alarm), with Brutlag's
    confidence band: the forecast ± ``width`` times the slot's smoothed
    absolute error, learnt with the seasonal weight ``gamma``. After the
    warm-up, the error it learns from is clipped to the band (robust
    Holt-Winters, as Gelper, Fried and Croux propose).
    """
    if state.count == 0:
        state.level = value
    state.count += 1
    first_visit = not state.seen[slot]
    state.seen[slot] += 1
    if first_visit:
        # The first season only records each slot's offset from the level.
        state.season[slot] = value - state.level
        state.level += alpha * (value - state.level - state.season[slot])
        return WARMING_UP
    forecast = state.level + state.trend + state.season[slot]
    error = value - forecast
    # A slot seen once has no error of its own yet: it starts from the typical one.
    deviation = state.deviation[slot] if state.seen[slot] > 2 else state.spread or abs(error)
    bound = width * deviation
    verdict = _judged(value, forecast, bound) if state.count > warmup else WARMING_UP
    # Learning from the error clipped to the band keeps one wild value from
    # dragging the forecast; a lasting change still gets learnt, as the band widens.
    learnt = error if state.count <= warmup else max(-bound, min(bound, error))
    state.level += state.trend + alpha * learnt
    state.trend += alpha * beta * learnt
    state.season[slot] += gamma * (1 - alpha) * learnt
    state.deviation[slot] = deviation + gamma * (abs(error) - deviation)
    state.spread += gamma * (abs(error) - state.spread) if state.spread else abs(error)
    return verdict


class holt_winters(_Detector):
    """Forecast each metric with additive Holt-Winters and score it against
    Brutlag's band: forecast ± ``width`` × the smoothed forecast error of its
    place in the season.

    ``season`` counts events (a daily season of 5-minute samples is 288), or,
    with ``unit="seconds"``, seconds of event time split into slots of
    ``slot`` seconds (default: a 288th of the season), which copes with
    irregular and missing samples. ``alpha``, ``beta``, ``gamma`` weigh the
    newest error in the level, trend and season. Nothing is scored during the
    first ``warmup`` events (default: two seasons' worth of slots); after it,
    the model learns from the error clipped to the band.

    >>> from streams import Event
    >>> out = []
    >>> s = holt_winters(4, out.append)
    >>> for t, m in enumerate([1, 5, 1, 3] * 3 + [1, 5, 9]): s(Event(metric=m, time=t))
    >>> [e.get("anomaly_score") for e in out][-3:]
    [0.0, 0.0, 1.0]
    >>> out[-1].get("expected"), out[-1].get("judged_by")
    (1.0, 'holt_winters')
    """

    __slots__ = ("_state", "alpha", "beta", "gamma", "season", "slot", "slots", "unit",
                 "warmup", "width")

    def __init__(self, season: float, *children: Child, unit: str = "events",
                 slot: float | None = None, alpha: float = 0.1, beta: float = 0.01,
                 gamma: float = 0.1, width: float = 3.0, warmup: int | None = None,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        caller = ("holt_winters(season, *children, unit='events', slot=None, alpha=0.1, "
                  "beta=0.01, gamma=0.1, width=3, warmup=None, max_skew=3600)")
        self._trust_times(max_skew, caller)
        self.unit = _unit(unit, caller)
        if self.unit == "events":
            self.season: float = count(season, caller, "season", minimum=2, what="events",
                                       example="holt_winters(288, child)")
            if slot is not None:
                raise argument_error(caller, "slot", slot, "None when the season counts events "
                                     "(slot, in seconds, only applies with unit='seconds')",
                                     f"holt_winters({season!r}, child, unit='seconds', "
                                     f"slot={slot!r})")
            self.slot: float | None = None
            self.slots = int(self.season)
        else:
            self.season = seconds(season, caller, "season", "holt_winters(86400, child, "
                                  "unit='seconds', slot=300)")
            self.slot = seconds(self.season / 288 if slot is None else slot, caller, "slot")
            self.slots = max(2, math.ceil(self.season / self.slot))
        self.alpha = _fraction(alpha, caller, "alpha")
        self.beta = _fraction(beta, caller, "beta")
        self.gamma = _fraction(gamma, caller, "gamma")
        self.width = _width(width, caller)
        self.warmup = 2 * self.slots if warmup is None else \
            count(warmup, caller, "warmup")
        self._state = HoltWintersState(self.slots)
        self._set_children(children)

    def judge(self, time: float, value: float) -> Verdict:
        state = self._state
        if self.slot is None:
            slot = state.count % self.slots
        else:
            slot = int(time % self.season // self.slot) % self.slots
        return holt_winters_step(state, slot, value, self.alpha, self.beta, self.gamma,
                                 self.width, self.warmup)


# Rolling windows ----------------------------------------------------------


class WindowState:
    """The recent (time, value) pairs a rolling detector judges against."""

    __slots__ = ("points",)

    def __init__(self, limit: int) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=limit)


class MomentsState(WindowState):
    """A window with running sums of values shifted by the first value seen.

    Shifting keeps the sums exact for a constant series (all zeros), so its
    spread is exactly 0 rather than rounding noise.
    """

    __slots__ = ("origin", "since_exact", "squares", "total")

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.origin: float | None = None
        self.total = 0.0
        self.squares = 0.0
        self.since_exact = 0


def zscore_step(state: MomentsState, time: float, value: float, span: float | None,
                width: float, warmup: int) -> Verdict:
    """Judge ``value`` against the window's mean ± ``width`` standard deviations,
    then add it to the window."""
    points = state.points
    if span is not None:
        while points and points[0][0] <= time - span:
            _, old = points.popleft()
            state.total -= old
            state.squares -= old * old
    if state.origin is None:
        state.origin = value
    n = len(points)
    verdict = WARMING_UP
    if n >= warmup and n:
        mean = state.total / n
        variance = max(0.0, state.squares / n - mean * mean)
        verdict = _judged(value, state.origin + mean, width * math.sqrt(variance))
    shifted = value - state.origin
    if len(points) == points.maxlen:
        _, old = points[0]
        state.total -= old
        state.squares -= old * old
    points.append((time, shifted))
    state.total += shifted
    state.squares += shifted * shifted
    state.since_exact += 1
    if state.since_exact >= len(points) and state.since_exact >= 64:
        # Adding and removing accumulates rounding; resumming now and then bounds it.
        state.total = math.fsum(x for _, x in points)
        state.squares = math.fsum(x * x for _, x in points)
        state.since_exact = 0
    return verdict


class SortedState(WindowState):
    """A window that also keeps its values sorted, for medians."""

    __slots__ = ("ordered",)

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.ordered: list[float] = []


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def mad_step(state: SortedState, time: float, value: float, span: float | None,
             width: float, warmup: int) -> Verdict:
    """Judge ``value`` against the window's median ± ``width`` scaled median
    absolute deviations (1.4826 MAD, a standard deviation for normal data; the
    scaled mean absolute deviation when over half the window is one value),
    then add it to the window."""
    points, ordered = state.points, state.ordered
    if span is not None:
        while points and points[0][0] <= time - span:
            _, old = points.popleft()
            del ordered[bisect_left(ordered, old)]
    verdict = WARMING_UP
    if len(points) >= warmup and points:
        median = _median(ordered)
        deviations = sorted(abs(x - median) for x in ordered)
        spread = MAD_TO_SIGMA * _median(deviations)
        if not spread:
            # Over half the window equal gives a zero MAD; the mean deviation still
            # sees the rest, so a value seen before is not an outage.
            spread = MEAN_AD_TO_SIGMA * math.fsum(deviations) / len(deviations)
        verdict = _judged(value, median, width * spread)
    if len(points) == points.maxlen:
        _, old = points[0]
        del ordered[bisect_left(ordered, old)]
    points.append((time, value))
    insort(ordered, value)
    return verdict


class _Rolling(_Detector):
    """A detector over the last ``window`` events, or seconds with ``unit="seconds"``."""

    __slots__ = ("_span", "_state", "limit", "unit", "warmup", "width", "window")

    default_width: ClassVar[float] = 3.0
    # Each rolling detector is its window's state and the step that judges against it.
    state_type: ClassVar[type[WindowState]]
    step: ClassVar[Callable[..., Verdict]]

    def __init__(self, window: float, *children: Child, unit: str = "events",
                 width: float | None = None, warmup: int | None = None,
                 limit: int = 10_000, max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        caller = (f"{type(self).__name__}(window, *children, unit='events', "
                  f"width={self.default_width:g}, warmup=None, limit=10000, max_skew=3600)")
        self._trust_times(max_skew, caller)
        self.unit = _unit(unit, caller)
        self.limit = count(limit, caller, "limit", minimum=2)
        if self.unit == "events":
            self.window: float = count(window, caller, "window", minimum=2)
            self._span: float | None = None
            size = int(self.window)
        else:
            self.window = seconds(window, caller, "window")
            self._span = self.window
            size = self.limit
        self.width = _width(self.default_width if width is None else width, caller)
        self.warmup = max(2, min(size // 2, 50)) if warmup is None else \
            count(warmup, caller, "warmup", minimum=1)
        self._state = self.state_type(size)
        self._set_children(children)

    def judge(self, time: float, value: float) -> Verdict:
        return self.step(self._state, time, value, self._span, self.width, self.warmup)


class zscore(_Rolling):
    """Score each metric against the mean ± ``width`` standard deviations of the
    ``window`` before it (the last ``window`` events, or with ``unit="seconds"``
    the last ``window`` seconds of event time, at most ``limit`` events).

    Scoring starts once ``warmup`` values are in the window (default: half the
    window, at most 50 values).

    >>> from streams import Event
    >>> out = []
    >>> s = zscore(4, out.append)
    >>> for m in [10, 12, 10, 12, 11, 30]: s(Event(metric=m, time=0))
    >>> [round(e.get("anomaly_score"), 2) for e in out]
    [0.0, 0.0, 0.1, 0.18, 0.0, 0.98]
    >>> [round(out[-1].get(name), 2) for name in ("expected", "lower", "upper")]
    [11.25, 8.76, 13.74]
    """

    __slots__ = ()

    state_type = MomentsState
    step = staticmethod(zscore_step)


class mad(_Rolling):
    """Score each metric against the median ± ``width`` × 1.4826 median absolute
    deviations of the ``window`` before it: zscore's robust sibling, which a
    few outliers in the window do not widen.

    >>> from streams import Event
    >>> out = []
    >>> s = mad(5, out.append)
    >>> for m in [10, 11, 10, 90, 11, 30]: s(Event(metric=m, time=0))
    >>> [round(e.get("anomaly_score"), 2) for e in out]
    [0.0, 0.0, 0.05, 1.0, 0.05, 0.95]
    >>> out[-1].get("expected"), out[-1].get("lower"), out[-1].get("upper")
    (11, 6.5522, 15.4478)
    """

    __slots__ = ()

    state_type = SortedState
    step = staticmethod(mad_step)


class ExtremesState(WindowState):
    """A window with the indices of its running maximum and minimum candidates.

    Monotonic queues: each holds (position, value) of the values that may still
    become the window's extreme, so both extremes cost O(1) amortised.
    """

    __slots__ = ("count", "highs", "lows")

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.count = 0
        self.highs: deque[tuple[int, float]] = deque()
        self.lows: deque[tuple[int, float]] = deque()


def _forget_before(state: ExtremesState, oldest: int) -> None:
    """Drop extreme candidates at positions that have left the window."""
    highs, lows = state.highs, state.lows
    while highs and highs[0][0] < oldest:
        highs.popleft()
    while lows and lows[0][0] < oldest:
        lows.popleft()


def breakout_step(state: ExtremesState, time: float, value: float, span: float | None,
                  width: float, warmup: int) -> Verdict:
    """Judge ``value`` against the range (lowest to highest) of the window, widened
    ``width`` times around its middle, then add it to the window."""
    points, highs, lows = state.points, state.highs, state.lows
    if span is not None:
        while points and points[0][0] <= time - span:
            points.popleft()
    _forget_before(state, state.count - len(points))
    verdict = WARMING_UP
    if len(points) >= warmup and points:
        high, low = highs[0][1], lows[0][1]
        verdict = _judged(value, (high + low) / 2, width * (high - low) / 2)
    points.append((time, value))  # a full window drops its oldest; the next step forgets it
    while highs and highs[-1][1] <= value:
        highs.pop()
    highs.append((state.count, value))
    while lows and lows[-1][1] >= value:
        lows.pop()
    lows.append((state.count, value))
    state.count += 1
    return verdict


class breakout(_Rolling):
    """Score each metric against the range the ``window`` before it kept: the
    band runs from its lowest to its highest value (widened ``width`` times
    around the middle), so only a value the metric has not reached for a whole
    window alerts. Daily peaks inside the range never do; a new high does.

    >>> from streams import Event
    >>> out = []
    >>> s = breakout(4, out.append, warmup=2)
    >>> for m in [10, 14, 12, 13, 20]: s(Event(metric=m, time=0))
    >>> [round(e.get("anomaly_score"), 2) for e in out]
    [0.0, 0.0, 0.0, 0.2, 0.94]
    >>> out[-1].get("lower"), out[-1].get("upper")
    (10.0, 14.0)
    """

    __slots__ = ()

    default_width: ClassVar[float] = 1.0

    state_type = ExtremesState
    step = staticmethod(breakout_step)


# Combinations ---------------------------------------------------------------


def combine_verdicts(verdicts: list[tuple[Verdict, str]], quorum: int) -> tuple[Verdict, str]:
    """The ``quorum``-th worst verdict: at any threshold, the combination alerts
    exactly when at least ``quorum`` of the detectors do."""
    ranked = sorted(verdicts, key=lambda v: v[0][0], reverse=True)
    return ranked[min(quorum, len(ranked)) - 1]


class combine(_Detector):
    """Judge each metric by several detectors and forward one verdict: the
    worst (``quorum=1``), or one that at least ``quorum`` of them agree on (the
    ``quorum``-th highest score, so it is over a threshold only when that many
    detectors' scores are). The band and ``judged_by`` are the chosen detector's.

    >>> from streams import Event
    >>> out = []
    >>> s = combine([zscore(4), mad(4)], out.append, quorum=2)
    >>> for m in [10, 12, 10, 12, 11, 30]: s(Event(metric=m, time=0))
    >>> round(out[-1].get("anomaly_score"), 2), out[-1].get("judged_by")
    (0.98, 'zscore')
    """

    __slots__ = ("detectors", "quorum")

    def __init__(self, detectors: list[_Detector], *children: Child, quorum: int = 1,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        caller = "combine(detectors, *children, quorum=1, max_skew=3600)"
        self._trust_times(max_skew, caller)
        self.detectors = _detectors(detectors, caller)
        self.quorum = count(quorum, caller, "quorum", minimum=1, what="detectors")
        if self.quorum > len(self.detectors):
            raise argument_error(caller, "quorum", quorum,
                                 f"at most the number of detectors, {len(self.detectors)}",
                                 f"quorum={len(self.detectors)}")
        self._set_children(children)

    def judge(self, time: float, value: float) -> Verdict:
        return self.judge_named(time, value)[0]

    def judge_named(self, time: float, value: float) -> tuple[Verdict, str]:
        verdicts = [d.judge_named(time, value) for d in self.detectors]
        return combine_verdicts(verdicts, self.quorum)


class DerivativeState:
    __slots__ = ("time", "value")

    def __init__(self) -> None:
        self.time: float | None = None
        self.value = 0.0


def derivative_step(state: DerivativeState, detector: _Detector, time: float,
                    value: float) -> Verdict:
    """Judge the rate of change per second since the previous value, and give
    the expectation and band back as values (previous value + rate × elapsed)."""
    previous_time, previous = state.time, state.value
    state.time, state.value = time, value
    if previous_time is None or time <= previous_time:
        # No rate without elapsed time: the first value, or one at the same time.
        return WARMING_UP
    elapsed = time - previous_time
    score, expected, lower, upper = detector.judge(time, (value - previous) / elapsed)
    if expected is None or lower is None or upper is None:
        return WARMING_UP
    return (score, previous + expected * elapsed, previous + lower * elapsed,
            previous + upper * elapsed)


class derivative(_Detector):
    """Score each metric's rate of change per second (event time) with
    ``detector`` instead of its value: a leak that climbs steadily at an unusual
    rate, or a counter that stops, shows in its derivative long before its
    level crosses anything. ``expected`` and the band are translated back into
    values: the previous value plus the expected (lowest, highest) rate times
    the time elapsed. Values at the same time as the previous one score 0.

    >>> from streams import Event
    >>> out = []
    >>> s = derivative(zscore(4), out.append)
    >>> for t, m in enumerate([0, 1, 2, 3, 4, 5, 6, 20]): s(Event(metric=m, time=t))
    >>> out[-1].get("anomaly_score"), out[-1].get("expected"), out[-1].get("judged_by")
    (1.0, 7.0, 'derivative')
    """

    __slots__ = ("_state", "detector")

    def __init__(self, detector: _Detector, *children: Child,
                 max_skew: float | None = DEFAULT_MAX_SKEW) -> None:
        self._trust_times(max_skew, "derivative(detector, *children, max_skew=3600)")
        (self.detector,) = _detectors(detector, "derivative(detector, *children)")
        self._state = DerivativeState()
        self._set_children(children)

    def judge(self, time: float, value: float) -> Verdict:
        return derivative_step(self._state, self.detector, time, value)
