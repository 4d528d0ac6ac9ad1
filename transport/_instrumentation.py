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

import socket
import time
from typing import Any

import trio

from streams import Event
from streams._config import service

from . import _counters
from ._limits import check_seconds
from ._recording import record_events

__all__ = ["instrumentation"]

# How often the loop's responsiveness is sampled between two reports.
_PROBE = 0.05


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
        service(self)

    def __repr__(self) -> str:
        return f"instrumentation(interval={self.interval!r})"

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(0)
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
               state: str | None = None) -> Event:
        return Event(host=self._host, service=service_name, metric=metric, state=state,
                     time=round(now), ttl=2 * self.interval, tags=("rillet",))

    def statistics(self) -> dict[str, Any]:
        return {"reports": self.reports}
