"""Compare the alert logs of two configs replayed over one recording.

An alert's identity is its sink and key (host, service and state by
default). Per identity, A's and B's alerts are aligned in time order:

1. pairs at the same time with equal events are **same**;
2. pairs left at the same time are **changed** (metric, description... differ);
3. what is left is paired greedily in time order within the tolerance:
   **moved** (earlier or later by delta);
4. A's alerts left are **gone**, B's are **new**.

The greedy step is optimal for alerts of one key that keep their order,
which is what a threshold or delay edit produces; it can pair differently
from a minimum-cost matching when several alerts of one key cross.
"""

from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._recording import parse_duration
from ._replay import Alert, ReplayResult

__all__ = ["KINDS", "SCHEMA", "Change", "DiffReport", "Policy", "diff_alerts"]

SCHEMA = "rillet.diff/1"
KINDS = ("same", "moved", "changed", "gone", "new")
DEFAULT_KEY = ("host", "service", "state")


@dataclass
class Change:
    kind: str
    sink: str
    key: tuple[Any, ...]
    a: Alert | None = None
    b: Alert | None = None
    explain: str | None = None

    @property
    def delta(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return round(self.b.t - self.a.t, 6)

    def as_dict(self, key_fields: tuple[str, ...]) -> dict[str, Any]:
        return {"kind": self.kind, "sink": self.sink, "key": dict(zip(key_fields, self.key,
                                                                     strict=True)),
                "time_a": None if self.a is None else round(self.a.t, 6),
                "time_b": None if self.b is None else round(self.b.t, 6),
                "delta_s": self.delta,
                "event_a": None if self.a is None else self.a.as_dict()["event"],
                "event_b": None if self.b is None else self.b.as_dict()["event"],
                # where each side's sink sits in its config (its node id)
                "node_a": None if self.a is None else self.a.node,
                "node_b": None if self.b is None else self.b.node,
                "explain": self.explain}

    def line(self) -> str:
        alert = self.a or self.b
        assert alert is not None
        key = " ".join(repr(k) if isinstance(k, str) and " " in k else str(k) for k in self.key)
        when = _clock(alert.t)
        if self.kind == "moved":
            delta = self.delta or 0.0
            text = f"MOVED   {self.sink} {key} {when} {delta:+.3f}s"
        elif self.kind == "changed":
            assert self.a is not None and self.b is not None
            a, b = self.a.as_dict()["event"], self.b.as_dict()["event"]
            fields = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            changes = ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in fields)
            text = f"CHANGED {self.sink} {key} {when}: {changes}"
        else:
            text = f"{self.kind.upper():7} {self.sink} {key} {when}"
        if self.explain:
            text += "\n        " + self.explain.replace("\n", "\n        ")
        return text


def _clock(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


@dataclass
class Policy:
    """Budgets per kind and sink: ``gone = {pagerduty = 0, "*" = 5}``,
    ``moved = {max_delta = "10m"}``. Without a file every difference is over budget."""

    budgets: dict[str, dict[str, int]] = field(default_factory=dict)
    max_delta: float | None = None
    source: str = "(default: no difference allowed)"

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"--policy {path}: {error}") from error
        policy = cls(source=str(path))
        for kind, budgets in data.items():
            if kind not in KINDS[1:] or not isinstance(budgets, dict):
                raise ValueError(f"--policy {path}: [{kind}]: expected a table named one of "
                                 f"{', '.join(KINDS[1:])}, e.g. gone = {{pagerduty = 0}}")
            for sink, budget in budgets.items():
                if kind == "moved" and sink == "max_delta":
                    policy.max_delta = parse_duration(str(budget), f"--policy {path}: "
                                                                   f"moved.max_delta")
                elif isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
                    raise ValueError(f"--policy {path}: {kind}.{sink} = {budget!r}: a budget "
                                     f"is a count >= 0, e.g. {kind}.{sink} = 0")
                else:
                    policy.budgets.setdefault(kind, {})[sink] = budget
        return policy

    def violations(self, changes: list[Change]) -> list[str]:
        counts: dict[tuple[str, str], int] = defaultdict(int)
        found = []
        for change in changes:
            if change.kind == "same":
                continue
            if change.kind == "moved" and self.max_delta is not None:
                if abs(change.delta or 0) > self.max_delta:
                    found.append(f"moved.max_delta <= {self.max_delta:g}s violated: "
                                 f"{change.sink} {change.key} moved {change.delta:+g}s")
                continue
            counts[change.kind, change.sink] += 1
        for (kind, sink), count in sorted(counts.items()):
            budgets = self.budgets.get(kind, {})
            budget = budgets.get(sink, budgets.get("*", 0 if not self.budgets else None))
            if budget is not None and count > budget:
                found.append(f"{kind}.{sink} <= {budget} violated ({count})")
        return found


@dataclass
class DiffReport:
    a: ReplayResult
    b: ReplayResult
    changes: list[Change]
    key_fields: tuple[str, ...]
    tolerance: float
    warmup: float
    violations: list[str] = field(default_factory=list)
    policy: str = ""

    def of(self, kind: str, sink: str | None = None) -> list[Change]:
        """The items of ``kind`` (same, moved, changed, gone, new), of one sink or all."""
        if kind not in KINDS:
            raise ValueError(f"of(kind={kind!r}): kind is one of {', '.join(KINDS)}")
        return [c for c in self.changes if c.kind == kind and (sink is None or c.sink == sink)]

    def summary(self) -> dict[str, Any]:
        counts = dict.fromkeys(KINDS, 0)
        by_sink: dict[str, dict[str, int]] = {}
        for change in self.changes:
            counts[change.kind] += 1
            by_sink.setdefault(change.sink, dict.fromkeys(KINDS, 0))[change.kind] += 1
        return {**counts, "by_sink": by_sink}

    def text(self) -> str:
        s = self.summary()
        rec = self.a
        lines = [f"recording {rec.recording} sha256:{rec.recording_sha256[:16]} "
                 f"{rec.events} events in {rec.messages} requests, gaps {rec.gaps}, "
                 f"warm-up {self.warmup:g}s, tolerance {self.tolerance:g}s",
                 f"A {self.a.config} sha256:{self.a.config_sha256[:16]} "
                 f"{len(self.a.alerts)} alerts, log sha256:{self.a.digest[:16]}",
                 f"B {self.b.config} sha256:{self.b.config_sha256[:16]} "
                 f"{len(self.b.alerts)} alerts, log sha256:{self.b.digest[:16]}",
                 f"same {s['same']}  moved {s['moved']}  changed {s['changed']}  "
                 f"gone {s['gone']}  new {s['new']}"]
        lines += [change.line() for change in self.changes if change.kind != "same"]
        noise = self.noisiness()
        if noise:
            lines.append("noisiness (alerts per key per day): " + ", ".join(
                f"{sink} {a:.3g} -> {b:.3g}" for sink, (a, b) in sorted(noise.items())))
        if self.violations:
            lines += [f"policy {self.policy}: {v}" for v in self.violations]
        else:
            lines.append(f"policy {self.policy}: ok")
        return "\n".join(lines)

    def noisiness(self) -> dict[str, tuple[float, float]]:
        """Per sink, A's and B's alerts per key per day of recording (after warm-up)."""
        rec = self.a
        if rec.start is None or rec.end is None or rec.end - rec.start <= self.warmup:
            return {}
        days = (rec.end - rec.start - self.warmup) / 86400
        since = rec.start + self.warmup
        rates: dict[str, list[float]] = {}
        for side, result in enumerate((self.a, self.b)):
            alerts: dict[str, int] = {}
            keys: dict[str, set[tuple[Any, ...]]] = {}
            for alert in result.alerts:
                if alert.t >= since:
                    alerts[alert.sink] = alerts.get(alert.sink, 0) + 1
                    keys.setdefault(alert.sink, set()).add(_identity(alert, self.key_fields))
            for sink, count in alerts.items():
                rates.setdefault(sink, [0.0, 0.0])[side] = count / len(keys[sink]) / days
        return {sink: (a, b) for sink, (a, b) in rates.items()}

    def as_json(self) -> dict[str, Any]:
        def side(result: ReplayResult) -> dict[str, Any]:
            return {"config": result.config, "sha256": result.config_sha256,
                    "rillet_version": result.version, "hash_seed": result.hash_seed,
                    "alerts": len(result.alerts), "alert_log_sha256": result.digest}

        rec = self.a
        return {"schema": SCHEMA,
                "recording": {"path": rec.recording, "sha256": rec.recording_sha256,
                              "events": rec.events, "requests": rec.messages,
                              "start": rec.start, "end": rec.end, "gaps": rec.gaps,
                              "warmup": self.warmup},
                "tolerance": self.tolerance, "key": list(self.key_fields),
                "a": side(self.a), "b": side(self.b), "summary": self.summary(),
                "noisiness": {sink: {"a": a, "b": b}
                              for sink, (a, b) in sorted(self.noisiness().items())},
                "changes": [c.as_dict(self.key_fields) for c in self.changes
                            if c.kind != "same"],
                "policy": {"source": self.policy, "violations": self.violations}}


def _identity(alert: Alert, key_fields: tuple[str, ...]) -> tuple[Any, ...]:
    event = alert.event
    get = getattr(event, "get", None)
    return tuple(get(name) if get is not None else None for name in key_fields)


def _payload(alert: Alert) -> str:
    return json.dumps(alert.as_dict()["event"], sort_keys=True, default=repr)


def diff_alerts(a: ReplayResult, b: ReplayResult, *, tolerance: float = 300.0,
                key_fields: tuple[str, ...] = DEFAULT_KEY, warmup: float = 0.0) -> DiffReport:
    """Align A's and B's alerts per sink and key (see the module docs)."""
    since = (a.start or 0) + warmup
    groups: dict[tuple[str, tuple[Any, ...]], tuple[list[Alert], list[Alert]]] = {}
    for side, result in ((0, a), (1, b)):
        for alert in result.alerts:
            if alert.t < since:
                continue
            key = (alert.sink, _identity(alert, key_fields))
            groups.setdefault(key, ([], []))[side].append(alert)
    changes: list[Change] = []
    for (sink, key), (left, right) in groups.items():
        changes += _align(sink, key, left, right, tolerance)
    changes.sort(key=lambda c: ((c.a or c.b).t, c.sink, repr(c.key)))  # type: ignore[union-attr]
    return DiffReport(a, b, changes, key_fields, tolerance, warmup)


def _align(sink: str, key: tuple[Any, ...], left: list[Alert], right: list[Alert],
           tolerance: float) -> list[Change]:
    out: list[Change] = []
    exact: dict[tuple[float, str], list[Alert]] = defaultdict(list)
    for alert in right:
        exact[alert.t, _payload(alert)].append(alert)
    rest_a = []
    used: set[int] = set()
    for alert in left:
        twins = exact.get((alert.t, _payload(alert)))
        if twins:
            twin = twins.pop(0)
            used.add(twin.seq)
            out.append(Change("same", sink, key, alert, twin))
        else:
            rest_a.append(alert)
    rest_b = [alert for alert in right if alert.seq not in used]
    at: dict[float, list[Alert]] = defaultdict(list)
    for alert in rest_b:
        at[alert.t].append(alert)
    unmatched_a = []
    for alert in rest_a:
        if at.get(alert.t):
            twin = at[alert.t].pop(0)
            used.add(twin.seq)
            out.append(Change("changed", sink, key, alert, twin))
        else:
            unmatched_a.append(alert)
    unmatched_b = [alert for alert in rest_b if alert.seq not in used]
    i = j = 0
    while i < len(unmatched_a) and j < len(unmatched_b):
        x, y = unmatched_a[i], unmatched_b[j]
        if abs(x.t - y.t) <= tolerance:
            out.append(Change("moved", sink, key, x, y))
            i += 1
            j += 1
        elif x.t < y.t:
            out.append(Change("gone", sink, key, x, None))
            i += 1
        else:
            out.append(Change("new", sink, key, None, y))
            j += 1
    out += [Change("gone", sink, key, x, None) for x in unmatched_a[i:]]
    out += [Change("new", sink, key, None, y) for y in unmatched_b[j:]]
    return out
