"""The runtime: everything a running config shares, in one object.

A :class:`Runtime` holds the clock and scheduler, the index, the running
config and what ``reinject`` feeds, the default exception stream, the
config's services and the taps being recorded. ``with runtime:`` puts it in
effect for the code inside the block (streams built, events fed, timers run)
and restores whatever was in effect before, so two configs can live in one
process, each with its own runtime. ``rillet run``, reload and
``streams.testing`` all go through it.

>>> from streams import Config, Event, Runtime, VirtualClock, index, rate
>>> from streams.testing import Sink
>>> sink = Sink()
>>> with Runtime(VirtualClock()) as runtime:
...     runtime.start(Config(streams=[rate(1, sink), index]))
...     runtime.stream([Event(host="a", metric=2, time=0)])
...     runtime.clock.advance(1)
>>> [(e.time, e.metric) for e in sink.events], len(runtime.index)
([(1, 2.0)], 1)
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from ._clock import Scheduler, VirtualClock, _runtime, current_runtime
from ._config import Config, declaring, load_config
from ._core import Child, report_failure
from ._index import Index
from ._pubsub import PubSub, publish_index
from ._ratelimit import LogLimiter
from ._reload import Carried, carry_over

__all__ = ["Runtime", "current_runtime"]


class LatencyTimer(Protocol):
    """Times some of :meth:`Runtime.stream`'s calls (self-instrumentation installs one)."""

    def start(self) -> float | None:
        """A start mark if this call is to be timed, else None."""

    def stop(self, started: float) -> None:
        """The timed call, begun at ``started``, is over."""


def _nothing_running(event: Any) -> None:
    raise RuntimeError(
        "reinject: no config is running in this runtime; start one with runtime.start(config), "
        "or in tests use streams.testing.inject(config, events)"
    )


class Runtime:
    """What a running config shares: clock, index, config, exception stream, services, taps.

    Args:
        clock: the clock and scheduler (default: a :class:`VirtualClock` at 0;
            the server passes its trio scheduler). A clock belongs to one runtime.
        index: the index that ``index`` feeds (default: a fresh one).
        exception_stream: where failures go that no ``exception_stream(...)``
            around the failing stream catches (default: the log).

    Attributes:
        config: the running config, or None before :meth:`start`.
        dispatch: feeds one event to the running config's top-level streams
            (what ``reinject`` calls).
        services: the running config's services (servers, sinks' tasks).
        taps: tap name → events, while a ``streams.testing.taps()`` block records.
        events: events streamed through :meth:`stream` so far.
        recorder: what the servers and the scheduler report requests and timer
            runs to while ``rillet run --record`` records (None otherwise).
        service_hook: called with each service as a config declares it, before
            any stream holds it (a replay turns sinks into recorders there).
        latency: times calls of :meth:`stream` while self-instrumentation runs
            (None otherwise, which costs the hot path one test).
    """

    __slots__ = ("_load_mark", "_log_limits", "_tokens", "clock", "config", "declaring",
                 "dispatch", "events", "exception_stream", "index", "latency", "pubsub", "recorder",
                 "service_hook", "services", "taps")

    def __init__(self, clock: Scheduler | None = None, *, index: Index | None = None,
                 exception_stream: Child | None = None) -> None:
        clock = clock if clock is not None else VirtualClock()
        if not isinstance(clock, Scheduler):
            raise TypeError(f"Runtime(clock): clock must be a Scheduler such as VirtualClock(), "
                            f"got {clock!r}")
        if clock.runtime is not None:
            raise ValueError(f"Runtime(clock): {clock!r} already belongs to another runtime; "
                             f"give each runtime its own clock")
        if index is not None and not isinstance(index, Index):
            raise TypeError(f"Runtime(index=...): index must be an Index(), got {index!r}")
        if exception_stream is not None and not callable(exception_stream):
            raise TypeError(f"Runtime(exception_stream=...): must be a stream, "
                            f"got {exception_stream!r}")
        clock.runtime = self
        self.clock = clock
        self.index = index if index is not None else Index()
        #: Pub/sub channels; the index publishes to "index" while it has subscribers.
        self.pubsub = PubSub()
        publish_index(self.pubsub, self.index)
        self._load_mark: int | None = None
        self.exception_stream = exception_stream
        self.config: Config | None = None
        self.dispatch: Callable[[Any], object] = _nothing_running
        self.services: list[Any] = []
        self.taps: dict[str, list[Any]] | None = None
        #: Where ``streams(...)`` and ``service(...)`` declare outside a config load.
        self.declaring = Config()
        self.events = 0
        self.recorder: Any = None
        self.service_hook: Callable[[Any], object] | None = None
        self.latency: LatencyTimer | None = None
        self._tokens: list[contextvars.Token[Runtime]] = []
        # The memory of recent repeated log lines (stream failures, skewed
        # events) is this runtime's: two configs side by side never silence
        # or count each other's, and a reload keeps counting where it was.
        self._log_limits: dict[str, LogLimiter] = {}

    # In effect -------------------------------------------------------------

    def __enter__(self) -> Runtime:
        self._tokens.append(_runtime.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _runtime.reset(self._tokens.pop())

    def now(self) -> float:
        """The runtime's current time in seconds."""
        return self.clock.now()

    def limited_log(self, logger: logging.Logger) -> LogLimiter:
        """This runtime's rate limiter for ``logger``: repeated identical lines are
        logged once per interval with a count (see ``streams._ratelimit``)."""
        limiter = self._log_limits.get(logger.name)
        if limiter is None:
            limiter = self._log_limits[logger.name] = LogLimiter(logger)
        return limiter

    # Running a config ------------------------------------------------------

    def load(self, path: str | Path) -> Config:
        """Load a config script with this runtime in effect (nothing starts yet).

        A script that fails half-way may have built streams that started
        timers (``fill_in``); those are cancelled, so a broken reload leaves
        nothing of itself running.
        """
        before = self.clock.pending()
        # Config-level subscriptions made before this load are swept when it is swapped in.
        self._load_mark = self.pubsub.next_id
        try:
            with self:
                config = load_config(path)
        except BaseException:
            for task in self.clock.pending() - before:
                task.cancel()
            raise
        config.runtime = self
        return config

    def start(self, config: Config) -> None:
        """Make ``config`` the running one: its streams get :meth:`stream`'s events,
        ``reinject`` feeds them, and the index expiry it declares runs."""
        if not isinstance(config, Config):
            raise TypeError(f"Runtime.start(config) takes a Config, got {config!r}")
        with self:
            self.config, config.runtime = config, self
            self.services = list(config.services)
            self.dispatch = config.dispatcher(self.index)
            self._start_expiry(config)

    def _start_expiry(self, config: Config) -> None:
        if config.expire_interval is None:
            self.index.close()
        else:
            self.index.start_reaper(config.expire_interval, self.dispatch,
                                    keep_keys=config.keep_keys)

    def swap(self, config: Config) -> Carried:
        """Run ``config`` in place of the running one, keeping what did not change.

        Every subtree of ``config`` whose definition equals one of the running
        config is replaced by the running object (see ``streams._reload``), so
        its state survives; the rest starts fresh. The index stays, and so do
        persistent pub/sub subscriptions (WebSocket and SSE clients); config
        ``subscribe(...)`` calls of earlier loads are swept, as Riemann means to.
        Returns what was kept, and which services to start and stop (the
        caller runs them).
        """
        old = self.config
        if old is None:
            self.start(config)
            return Carried(streams=list(config.streams), services=list(config.services),
                           started_services=list(config.services))
        with self, declaring(Config()):
            carried = carry_over(old.streams, self.services, config.streams, config.services)
        config.streams = carried.streams
        config.services = carried.services
        with self:
            dispatch = config.dispatcher(self.index)
            self.config, self.dispatch, self.services = config, dispatch, list(carried.services)
            config.runtime = self
            carried.retire()
            self._start_expiry(config)
        if self._load_mark is not None:
            self.pubsub.sweep(before=self._load_mark)
        return carried

    def stream(self, events: Iterable[Any]) -> Exception | None:
        """Feed events to the running config; returns the first failure, reported
        like every other one (later failures are only reported)."""
        timer = self.latency
        started = timer.start() if timer is not None else None
        dispatch = self.dispatch
        failure: Exception | None = None
        count = 0
        for event in events:
            count += 1
            try:
                dispatch(event)
            except Exception as error:
                report_failure(error, event)
                failure = failure or error
        self.events += count
        if started is not None:
            timer.stop(started)  # type: ignore[union-attr]
        return failure

    def stop(self) -> None:
        """Stop the running config's timers and the index expiry."""
        self.index.close()
        if self.config is not None:
            self.config.close()

    def __repr__(self) -> str:
        running = self.config.source if self.config is not None else None
        return (f"Runtime(clock={self.clock!r}, index=<{len(self.index)} events>, "
                f"config={running!r})")

