"""Draw docs/images/automated-thresholds.png, the guide's worked example.

    .venv/bin/pip install -e '.[docs]'
    .venv/bin/python docs/plot_automated_thresholds.py

Three days of a web front end's request rate, sampled every 5 minutes, with a
daily cycle and some noise; on the third afternoon the rate sags to a level
that is perfectly normal at night. ``holt_winters(288)`` learns the cycle,
draws Brutlag's band around its forecast, and flags the sag that no fixed
threshold could catch without paging every night.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from streams import Event, holt_winters
from streams.testing import run

DAY = 86_400
STEP = 300
INCIDENT = (2 * DAY + 13 * 3600, 2 * DAY + 14 * 3600)  # the third day, 13:00 to 14:00
THRESHOLD = 0.9


def request_rate(t: float, rng: random.Random) -> float:
    """Requests per second: a daily peak at 15:00, a trough at 03:00, noise of ±3 %."""
    daily = 500 + 300 * math.sin(2 * math.pi * (t - 9 * 3600) / DAY)
    sag = 0.45 if INCIDENT[0] <= t < INCIDENT[1] else 1.0
    return round(daily * sag * rng.uniform(0.97, 1.03), 1)


def traffic(days: int = 3, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    return [Event(host="web1", service="http req rate", metric=request_rate(t, rng), time=t)
            for t in range(0, days * DAY, STEP)]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = run(lambda sink: holt_winters(288, sink), traffic())
    hours = [e.time / 3600 for e in judged]
    banded = [(h, e) for h, e in zip(hours, judged, strict=True) if e.get("lower") is not None]
    alerts = [(h, e) for h, e in zip(hours, judged, strict=True)
              if e.get("anomaly_score") >= THRESHOLD]

    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ax.fill_between([h for h, _ in banded], [e.get("lower") for _, e in banded],
                    [e.get("upper") for _, e in banded], color="#9ecae1", alpha=0.6,
                    label="band (Brutlag)")
    ax.plot([h for h, _ in banded], [e.get("expected") for _, e in banded], color="#3182bd",
            linewidth=1, label="expected (Holt-Winters)")
    ax.plot(hours, [e.metric for e in judged], color="black", linewidth=0.8,
            label="http req rate")
    ax.scatter([h for h, _ in alerts], [e.metric for _, e in alerts], color="#de2d26",
               zorder=3, label=f"anomaly_score ≥ {THRESHOLD}")
    ax.axvspan(0, 2 * 24, color="#eeeeee", zorder=0)
    ax.text(1, 60, "warm-up: two seasons, no scores", fontsize=8, color="#555555")
    ax.set_xlabel("hours")
    ax.set_ylabel("requests per second")
    ax.set_xlim(0, 72)
    ax.set_ylim(0, 950)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    out = Path(__file__).resolve().parent / "images" / "automated-thresholds.png"
    fig.savefig(out)
    print(f"wrote {out}: {len(alerts)} alerts, first at hour {alerts[0][0]:.2f}" if alerts
          else f"wrote {out}: no alerts")


if __name__ == "__main__":
    main()
