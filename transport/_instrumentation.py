"""Self-instrumentation (spec §6.7): events about rillet itself, streamed like any others.

Every ``interval`` seconds, rillet sends through its own streams one event per
figure below, with ``host`` the machine's name, ``ttl`` twice the interval,
``tags=("rillet",)``, so a config alerts on them like on anything else
(``where('service = "rillet loop longest stall" and metric > 100', ...)``).
Riemann's names with ``riemann`` replaced by ``rillet``; rates are per
second since the previous report, times in milliseconds.

==========================================  ===================================================
service                                     metric
==========================================  ===================================================
``rillet streams rate``                     events streamed per second
``rillet streams latency Q``                time to stream one request's events (ms), at
                                            quantiles 0.5, 0.95, 0.99 and ``max``, over
                                            one request in 8; only after requests came
``rillet streams skewed``                   events dropped for clock skew (``max_skew``)
                                            by the running streams so far
``rillet by keys``                          keys held by every ``by`` together
``rillet by largest keys``                  keys of the ``by`` holding most; its place in
                                            the config (``streams[1]/where/by('host')``)
                                            is the description
``rillet index size``                       events in the index
``rillet loop longest stall``               longest time the event loop was held (ms)
``rillet server tcp H:P conns``             open connections
``rillet server tcp H:P in rate``           requests per second
``rillet server tcp H:P buffered``          bytes of partial frames held
``rillet server udp H:P in rate``           datagrams per second
``rillet server udp H:P dropped rate``      datagrams dropped per second (garbage, too long)
``rillet server udp H:P kernel dropped``    datagrams the kernel dropped so far (Linux)
``rillet queue NAME queue size``            events waiting; warning past half, critical past 3/4
``rillet queue NAME dropped rate``          events dropped per second; warning if above 0
==========================================  ===================================================
"""

from __future__ import annotations

import random
import socket
import time
from typing import Any

import trio

from streams import Event
from streams._census import census
from streams._config import service

from . import _counters
from ._limits import check_seconds
from ._recording import record_events

__all__ = ["instrumentation"]

# How often the loop's responsiveness is sampled between two reports.
_PROBE = 0.05

# Latency quantiles reported, by the suffix of their service name.
_QUANTILES = {"0.5": 0.5, "0.95": 0.95, "0.99": 0.99}


class LatencySampler:
    """Times one :meth:`Runtime.stream` call in ``every`` and keeps a bounded
    uniform sample of the durations since the last :meth:`take`.

    The other calls cost a decrement and a test: streaming a request stays
    as fast with instrumentation on as off.
    """

    __slots__ = ("_countdown", "every", "longest", "samples", "size", "timed")

    def __init__(self, every: int = 8, size: int = 1024) -> None:
        self.every = every
        self.size = size
        self._countdown = 1  # the first call is timed
        self.samples: list[float] = []
        self.longest = 0.0
        self.timed = 0

    def start(self) -> float | None:
        self._countdown -= 1
        if self._countdown:
            return None
        self._countdown = self.every
        return time.perf_counter()

    def stop(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.timed += 1
        if elapsed > self.longest:
            self.longest = elapsed
        if len(self.samples) < self.size:
            self.samples.append(elapsed)
        else:
            # Reservoir sampling: every timed call is equally likely to be kept.
            slot = random.randrange(self.timed)
            if slot < self.size:
                self.samples[slot] = elapsed

    def take(self) -> tuple[list[float], float]:
        """The sorted sample and the longest duration since the last take; starts afresh."""
        samples, longest = sorted(self.samples), self.longest
        self.samples, self.longest, self.timed = [], 0.0, 0
        return samples, longest


class instrumentation:
    """Stream events about rillet itself every ``interval`` seconds (Riemann's
    ``instrumentation``). Declare it in the config: ``instrumentation(interval=10)``.
    """

    def __init__(self, interval: float = 10) -> None:
        check_seconds("instrumentation", "interval", interval, 10)
        self.interval = interval
        self.reports = 0
        self._host = socket.gethostname()
        self._previous: dict[str, float] = {}
        self._longest_stall = 0.0
        self.latency = LatencySampler()
        service(self)

    def __repr__(self) -> str:
        return f"instrumentation(interval={self.interval!r})"

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        runtime.latency = self.latency
        task_status.started(0)
        try:
            last = time.monotonic()
            while True:
                reported = time.monotonic()
                while time.monotonic() - reported < self.interval:
                    await trio.sleep(_PROBE)
                    now = time.monotonic()
                    # A sleep that ends late measures how long something held the loop.
                    self._longest_stall = max(self._longest_stall, now - last - _PROBE)
                    last = now
                report = self.events(runtime, time.time(), time.monotonic() - reported)
                record_events(runtime, report)
                runtime.stream(report)
                self.reports += 1
        finally:
            # A reload may already have started the instrumentation replacing this one.
            if runtime.latency is self.latency:
                runtime.latency = None

    def events(self, runtime: Any, now: float, elapsed: float) -> list[Event]:
        """The report for ``elapsed`` seconds since the previous one."""
        out = [
            self._event("rillet streams rate", self._rate("streams", runtime.events, elapsed),
                        now),
            self._event("rillet index size", len(runtime.index), now, state="ok"),
            self._event("rillet loop longest stall", round(self._longest_stall * 1000, 1), now,
                        state="ok"),
        ]
        self._longest_stall = 0.0
        out += self._latency_events(now)
        out += self._census_events(runtime, now)
        for declared in runtime.services:
            out += self._service_events(declared, now, elapsed)
        counters = _counters.active
        if counters is not None and runtime.config is not None:
            for path, _stream, count, passed in counters.table(runtime.config.streams):
                out.append(self._event(f"rillet stream {path} in", count, now, state="ok"))
                if passed is not None:
                    out.append(self._event(f"rillet stream {path} out", passed, now,
                                           state="ok"))
        return out

    def _latency_events(self, now: float) -> list[Event]:
        samples, longest = self.latency.take()
        if not samples:
            return []
        n = len(samples)
        out = [self._event(f"rillet streams latency {suffix}",
                           round(samples[min(n - 1, int(n * q))] * 1000, 3), now, state="ok")
               for suffix, q in _QUANTILES.items()]
        out.append(self._event("rillet streams latency max", round(longest * 1000, 3), now,
                               state="ok"))
        return out

    def _census_events(self, runtime: Any, now: float) -> list[Event]:
        config = runtime.config
        found = census(config.streams if config is not None else [])
        estimated = " (estimated from a sample of each by's keys)" if found.estimated else ""
        out = [
            self._event("rillet streams skewed", found.skewed, now, state="ok"),
            self._event("rillet by keys", found.total_keys, now, state="ok",
                        description=f"{len(found.by_keys)} by streams{estimated}"),
        ]
        if found.largest is not None:
            name, keys = found.largest
            out.append(self._event("rillet by largest keys", keys, now, state="ok",
                                   description=name + estimated))
        return out

    def _service_events(self, declared: Any, now: float, elapsed: float) -> list[Event]:
        kind = type(declared).__name__
        stats = declared.statistics() if hasattr(declared, "statistics") else {}
        if kind in ("TcpServer", "UdpServer"):
            protocol = "tcp" if kind == "TcpServer" else "udp"
            name = f"rillet server {protocol} {declared.host}:{declared.bound_port}"
            if protocol == "tcp":
                return [
                    self._event(f"{name} conns", stats["connections"], now, state="ok"),
                    self._event(f"{name} in rate",
                                self._rate(name, stats["requests"], elapsed), now, state="ok"),
                    self._event(f"{name} buffered", stats["buffered"], now, state="ok"),
                ]
            return [
                self._event(f"{name} in rate", self._rate(name, stats["datagrams"], elapsed),
                            now, state="ok"),
                self._event(f"{name} dropped rate",
                            self._rate(f"{name} dropped", stats["dropped"], elapsed), now,
                            state="ok"),
                self._event(f"{name} kernel dropped", stats["kernel_dropped"], now, state="ok"),
            ]
        if kind == "async_queue":
            name = f"rillet queue {stats['name']}"
            used = stats["queued"] / stats["size"]
            dropped = self._rate(f"{name} dropped", stats["dropped"], elapsed)
            return [
                self._event(f"{name} queue size", stats["queued"], now,
                            state="critical" if used > 0.75 else "warning" if used > 0.5
                            else "ok"),
                self._event(f"{name} dropped rate", dropped, now,
                            state="warning" if dropped > 0 else "ok"),
            ]
        return []

    def _rate(self, key: str, count: float, elapsed: float) -> float:
        previous = self._previous.get(key, count)
        self._previous[key] = count
        return round((count - previous) / elapsed, 3) if elapsed > 0 else 0.0

    def _event(self, service_name: str, metric: float, now: float,
               state: str | None = None, description: str | None = None) -> Event:
        return Event(host=self._host, service=service_name, metric=metric, state=state,
                     description=description, time=round(now), ttl=2 * self.interval,
                     tags=("rillet",))

    def statistics(self) -> dict[str, Any]:
        return {"reports": self.reports}
