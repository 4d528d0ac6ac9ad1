"""NAB's scoring rules, written from their published description.

Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms - the
Numenta Anomaly Benchmark" (2015) and the NAB whitepaper describe them:

- each labelled anomaly is a *window* of rows; the first ``min(15 % of the
  rows, 750)`` rows of a file are a probationary period where nothing counts;
- a row is a detection when its anomaly score reaches the threshold;
- per window, only the earliest detection counts: it earns the scaled sigmoid
  of its position, ``2/(1+e^(5y)) − 1`` with ``y = −(rows from it to the
  window's end, inclusive) / window length`` (so −1 at the window's first row),
  divided by its value at −1 and weighted by ``tpWeight``; a window without a
  detection costs ``fnWeight``. The window's score is recorded on its first row;
- a detection outside every window costs ``fpWeight`` times the sigmoid of
  its distance past the end of the previous window (in window lengths), so a
  late detection just after a window costs little; with no previous window
  it costs the whole ``fpWeight``;
- per profile (config/profiles.json) one threshold is chosen for the whole
  corpus, the one that maximises the summed score;
- the corpus score is normalised so the null detector (no detections) scores
  0 and the perfect one (each window's first row) 100.

The per-row scores are what NAB writes in its results' ``S(t)_<profile>``
columns; tests/test_nab_scorer.py checks this module reproduces them.
Standard library only, so the suite needs nothing extra to run the check.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATION_FRACTION = 0.15
PROBATION_CAP_ROWS = 5000  # the probation never exceeds 15 % of 5000 rows


@dataclass(frozen=True)
class Series:
    """One labelled file: its rows and its windows as inclusive row ranges."""

    name: str  # relative to data/, e.g. "realTweets/Twitter_volume_FB.csv"
    times: tuple[datetime, ...]
    values: tuple[float, ...]
    windows: tuple[tuple[int, int], ...]

    @property
    def probation(self) -> int:
        return probation_rows(len(self.times))


@dataclass(frozen=True)
class Cost:
    tp: float
    fp: float
    fn: float


def default_corpus(start: Path | None = None) -> Path:
    """``shared/nab`` beside the repository, or beside one of its parent folders.

    A clone has ``shared/`` beside it (``../shared/nab``); a git worktree a few
    levels down finds the same copy further up. When none exists, the path
    beside the repository is returned, for the caller to report missing.
    """
    repo = start if start is not None else Path(__file__).resolve().parents[2]
    for folder in [repo, *repo.parents]:
        candidate = folder.parent / "shared" / "nab"
        if (candidate / "labels" / "combined_windows.json").exists():
            return candidate
    return repo.parent / "shared" / "nab"


def probation_rows(n: int) -> int:
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * PROBATION_CAP_ROWS))


def scaled_sigmoid(position: float) -> float:
    if position > 3.0:
        return -1.0
    return 2 / (1 + math.exp(5 * position)) - 1


_MAX_TP = scaled_sigmoid(-1.0)


def load_profiles(corpus: Path) -> dict[str, Cost]:
    raw = json.loads((corpus / "config" / "profiles.json").read_text())
    return {name: Cost(tp=p["CostMatrix"]["tpWeight"], fp=p["CostMatrix"]["fpWeight"],
                       fn=p["CostMatrix"]["fnWeight"]) for name, p in raw.items()}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def window_rows(times: tuple[datetime, ...],
                limits: list[list[str]]) -> tuple[tuple[int, int], ...]:
    windows = []
    for start, end in limits:
        t1, t2 = parse_time(start), parse_time(end)
        inside = [i for i, t in enumerate(times) if t1 <= t <= t2]
        if inside:
            windows.append((inside[0], inside[-1]))
    return tuple(windows)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def load_corpus(corpus: Path, names: list[str] | None = None) -> list[Series]:
    """Every CSV under ``corpus/data`` that ``labels/combined_windows.json`` labels
    (or only ``names``, paths relative to ``data/``)."""
    labels = json.loads((corpus / "labels" / "combined_windows.json").read_text())
    out = []
    for name in sorted(labels) if names is None else names:
        path = corpus / "data" / name
        if not path.exists():
            continue  # a held-back category: labelled, but not in this copy
        rows = read_rows(path)
        times = tuple(parse_time(r["timestamp"]) for r in rows)
        values = tuple(float(r["value"]) for r in rows)
        out.append(Series(name, times, values, window_rows(times, labels[name])))
    return out


def _previous_window(windows: tuple[tuple[int, int], ...], row: int) -> tuple[int, int] | None:
    previous = None
    for window in windows:
        if window[1] < row:
            previous = window
    return previous


def _window_of(windows: tuple[tuple[int, int], ...], row: int) -> tuple[int, int] | None:
    for window in windows:
        if window[0] <= row <= window[1]:
            return window
    return None


def tp_score(window: tuple[int, int], row: int, cost: Cost) -> float:
    start, end = window
    return scaled_sigmoid(-(end - row + 1) / (end - start + 1)) * cost.tp / _MAX_TP


def fp_score(previous: tuple[int, int] | None, row: int, cost: Cost) -> float:
    if previous is None:
        return -cost.fp
    start, end = previous
    # A one-row window would divide by zero; NAB's windows are never that short.
    return scaled_sigmoid(abs(end - row) / (end - start)) * cost.fp


def row_scores(series: Series, detected: list[bool], cost: Cost) -> tuple[list[float], float]:
    """NAB's ``S(t)`` column for one file and its total, given which rows are detections."""
    scores = [0.0] * len(detected)
    probation = series.probation
    total = 0.0
    for window in series.windows:
        start, end = window
        first = next((i for i in range(max(start, probation), end + 1) if detected[i]), None)
        value = -cost.fn if first is None else tp_score(window, first, cost)
        scores[start] = value
        total += value
    for i in range(probation, len(detected)):
        if detected[i] and _window_of(series.windows, i) is None:
            value = fp_score(_previous_window(series.windows, i), i, cost)
            scores[i] = value
            total += value
    return scores, total


@dataclass(frozen=True)
class Outcome:
    threshold: float
    raw: float
    per_series: dict[str, float]


def optimise_threshold(corpus: list[Series], scores: dict[str, list[float]],
                       cost: Cost) -> Outcome:
    """The threshold over the whole corpus that maximises the summed raw score.

    Exact, not a search: lowering the threshold past each distinct anomaly
    score adds that score's rows as detections; an extra detection can only
    move a window's earliest detection earlier (raising its score) or add a
    false positive, so each step updates the total in time proportional to the
    rows it adds. NAB itself searches with a coordinate-descent optimiser; an
    exact sweep finds a threshold at least as good.
    """
    events: list[tuple[float, str, int, float]] = []
    window_index: dict[tuple[str, int], float] = {}
    earliest: dict[tuple[str, int], int] = {}
    total = 0.0
    for series in corpus:
        total -= cost.fn * len(series.windows)
        row_score = scores[series.name]
        for i in range(series.probation, len(row_score)):
            events.append((row_score[i], series.name, i, 0.0))
    by_name = {s.name: s for s in corpus}
    events.sort(key=lambda e: -e[0])
    best_threshold, best_raw = math.inf, total
    j = 0
    while j < len(events):
        level = events[j][0]
        while j < len(events) and events[j][0] == level:
            _, name, row, _ = events[j]
            series = by_name[name]
            window = _window_of(series.windows, row)
            if window is None:
                change = fp_score(_previous_window(series.windows, row), row, cost)
            else:
                key = (name, window[0])
                if key in earliest and earliest[key] <= row:
                    change = 0.0
                else:
                    old = window_index.get(key, -cost.fn)
                    new = tp_score(window, row, cost)
                    earliest[key] = row
                    window_index[key] = new
                    change = new - old
            total += change
            j += 1
        if total > best_raw:
            best_threshold, best_raw = level, total
    return at_threshold(corpus, scores, cost, best_threshold)


def at_threshold(corpus: list[Series], scores: dict[str, list[float]], cost: Cost,
                 threshold: float) -> Outcome:
    """The raw score per series and in total when rows scoring ``threshold`` or more alert."""
    per_series = {
        s.name: row_scores(s, [x >= threshold for x in scores[s.name]], cost)[1] for s in corpus
    }
    return Outcome(threshold, math.fsum(per_series.values()), per_series)


def bounds(corpus: list[Series], cost: Cost) -> tuple[float, float]:
    """The raw scores of the null detector and of the perfect one."""
    windows = sum(len(s.windows) for s in corpus)
    return -cost.fn * windows, cost.tp * windows


def normalised(raw: float, corpus: list[Series], cost: Cost) -> float:
    null, perfect = bounds(corpus, cost)
    return 100 * (raw - null) / (perfect - null)
