"""Test your rules: run streams over events in virtual time, tap named points,
and draw events from Hypothesis strategies.

The usual shape of a rule test::

    from streams import Event, by, rate
    from streams.testing import run

    def test_rate_per_host():
        out = run(lambda sink: by("host", rate(1, sink)),
                  [Event(host="a", metric=1, time=0), Event(host="a", metric=3, time=0.5)],
                  until=1)
        assert [(e.host, e.metric) for e in out] == [("a", 4.0)]

``run`` puts a fresh runtime in effect (a virtual clock at 0 and an empty
index), builds the stream (a function receiving the collecting sink), and for
each event first advances the clock to the event's time, which fires every
timer due by then, then delivers it. When it returns, the runtime that was in
effect before is back; pass ``runtime=`` to keep driving the same one.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ._clock import VirtualClock, _runtime, current_runtime
from ._config import Config
from ._core import Child, Stream
from ._event import Event
from ._nodes import nodes
from ._runtime import Runtime
from ._validate import argument_error

__all__ = [
    "Sink",
    "clock",
    "events",
    "inject",
    "load",
    "perturbed",
    "reload",
    "replay",
    "run",
    "run_intervals",
    "tap",
    "taps",
    "timed_events",
]


class Sink(Stream):
    """A shared stream that records everything it receives in ``.events``.

    >>> sink = Sink()
    >>> sink(1); sink(2); sink.events
    [1, 2]
    """

    __slots__ = ("events",)
    shared = True
    # Two sinks are two outputs, however alike: a reload keeps each one's events.
    compared_by_identity = True

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._set_children(())

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def __repr__(self) -> str:
        return f"Sink(<{len(self.events)} events>)"


class tap(Stream):
    """A named observation point: forwards everything, and records it while a
    :func:`taps` block is active (Riemann's ``tap``). Outside tests it costs one call
    and one look at the runtime in effect.

    >>> with taps() as seen:
    ...     s = tap("alerts")
    ...     s("boom")
    >>> seen
    {'alerts': ['boom']}
    """

    __slots__ = ("name",)
    shared = True  # a tap names one point of the config, whichever fork passes it

    def __init__(self, name: str, *children: Child) -> None:
        if not isinstance(name, str) or not name:
            raise argument_error("tap(name, *children)", "name", name, "a non-empty string",
                                 "tap('alerts', child)")
        self.name = name
        self._set_children(children)
        recording = current_runtime().taps
        if recording is not None:
            recording.setdefault(name, [])

    def __call__(self, event: Any) -> None:
        try:
            recording = _runtime.get().taps
        except LookupError:
            recording = current_runtime().taps
        if recording is not None:
            recording.setdefault(self.name, []).append(event)
        self._out(event)


class _Recorded(dict[str, list[Any]]):
    """Taps seen so far; a tap that saw nothing reads as ``[]`` (spec §7: every tap
    has a result), even one built before the block began."""

    def __missing__(self, name: str) -> list[Any]:
        return []


@contextlib.contextmanager
def taps() -> Iterator[dict[str, list[Any]]]:
    """Record what every :class:`tap` sees inside the block, by tap name.

    A tap that saw nothing reads as an empty list. The recording belongs to
    the runtime in effect; :func:`run` and :func:`inject` record into it too.
    """
    runtime = current_runtime()
    previous = runtime.taps
    recorded = runtime.taps = _Recorded()
    try:
        yield recorded
    finally:
        runtime.taps = previous


def clock() -> VirtualClock:
    """The virtual clock of the runtime in effect."""
    found = current_runtime().clock
    if not isinstance(found, VirtualClock):
        raise TypeError(f"clock(): the runtime in effect runs on {found!r}, not a virtual "
                        f"clock; use runtime.clock")
    return found


def _fresh_runtime(start: float = 0) -> Runtime:
    """A runtime on a virtual clock at ``start`` that records into the taps block
    in effect, if any."""
    runtime = Runtime(VirtualClock(start))
    runtime.taps = current_runtime().taps
    return runtime


def _build(stream: Callable[[Sink], Child] | Child, sink: Sink) -> Child:
    if isinstance(stream, Stream):
        raise TypeError(
            "run(stream, events): pass a function that builds the stream from the sink, "
            "e.g. run(lambda sink: rate(5, sink), events), so the stream is built on the "
            "fresh virtual clock and its output is collected"
        )
    return stream(sink)  # type: ignore[return-value]


def _virtual(runtime: Runtime) -> VirtualClock:
    if not isinstance(runtime.clock, VirtualClock):
        raise TypeError(f"runtime=: tests run on a virtual clock, got {runtime.clock!r}")
    return runtime.clock


def run(build: Callable[[Sink], Child], inputs: Iterable[Any], *,
        until: float | None = None, start: float = 0, runtime: Runtime | None = None
        ) -> list[Any]:
    """Run events through a stream in virtual time and return what reached the sink.

    ``build`` receives the collecting sink and returns the stream. Before each
    event the clock advances to the event's time (events without a time are
    delivered at the current time); ``until`` advances the clock once more at
    the end, so timers due by then fire. It all happens in a fresh runtime
    whose clock starts at ``start``, or in ``runtime`` when given (then
    ``start`` is ignored, and you can go on with ``runtime.clock``).

    >>> from streams import Event, rate
    >>> out = run(lambda sink: rate(1, sink), [Event(metric=2, time=0)], until=2)
    >>> [(e.time, e.metric) for e in out]
    [(1, 2.0), (2, 0.0)]
    """
    runtime = runtime if runtime is not None else _fresh_runtime(start)
    virtual = _virtual(runtime)
    sink = Sink()
    with runtime:
        stream = _build(build, sink)
        for event in inputs:
            time = getattr(event, "time", None)
            if time is not None:
                virtual.advance(time)
            stream(event)
        if until is not None:
            virtual.advance(until)
    return sink.events


def run_intervals(build: Callable[[Sink], Child], steps: Iterable[tuple[Any, float | None]],
                  *, start: float = 0, runtime: Runtime | None = None) -> list[Any]:
    """Deliver each event, then advance the clock by its gap (None: no advance).

    >>> from streams import Event, rate
    >>> out = run_intervals(lambda sink: rate(1, sink),
    ...                     [(Event(metric=1), 0.5), (Event(metric=2), 0.5)])
    >>> [(e.time, e.metric) for e in out]
    [(1, 3.0)]
    """
    runtime = runtime if runtime is not None else _fresh_runtime(start)
    virtual = _virtual(runtime)
    sink = Sink()
    with runtime:
        stream = _build(build, sink)
        for event, gap in steps:
            stream(event)
            if gap:
                virtual.advance(virtual.now() + gap)
    return sink.events


# Whole configs ----------------------------------------------------------------

def load(path: str | Path, *, start: float = 0) -> Config:
    """Load a config script into a fresh runtime on a virtual clock at ``start``,
    as ``rillet run`` would load it; ``config.runtime`` is that runtime.

    Servers it declares are recorded, never started. Use with :func:`inject`.
    """
    return _fresh_runtime(start).load(path)


def reload(config: Config, path: str | Path | None = None) -> Config:
    """Load the script again (or ``path``) and swap it in for ``config`` in its
    runtime, as ``rillet reload`` does: unchanged streams keep their state.
    Returns the new config."""
    runtime = _runtime_of(config)
    new = runtime.load(path if path is not None else config.source)
    runtime.swap(new)
    return new


def replay(config: str | Path | Config, recording: str | Path, *,
           fidelity: str | None = None, checkpoints: Any = None) -> Any:
    """Replay a recording (``rillet run --record``, ``rillet record import``) through
    a config file, hermetically: its sinks record instead of sending. Returns the
    result; ``.alerts`` is the alert log (sink, clock, event, and the ``input``
    request behind each), ``.digest`` its hash. ``checkpoints`` (a
    ``transport.CheckpointWriter``) stores the replay's state as it goes, for
    ``transport.explain_alert`` and ``why_not``.

    Needs the transport package (the recording holds wire bytes); its pytest
    plugin gives the fixtures ``rillet_replay`` and ``rillet_diff``."""
    from transport._replay import replay as replay_recording

    return replay_recording(config, recording, fidelity=fidelity, checkpoints=checkpoints)


def _runtime_of(config: Config) -> Runtime:
    if not isinstance(config, Config):
        raise TypeError(f"expected a Config (from streams.testing.load), got {config!r}")
    if config.runtime is None:
        _fresh_runtime().start(config)
    elif config.runtime.config is not config:
        config.runtime.start(config)
    runtime: Runtime = config.runtime
    return runtime


def inject(config: Config, inputs: Iterable[Any], *, until: float | None = None
           ) -> dict[str, list[Any]]:
    """Run events through a loaded config in virtual time (Riemann's ``inject!``)
    and return what every :class:`tap` saw, by name.

    The config runs in its runtime (the one :func:`load` made, or a fresh one):
    the config-level ``index`` feeds ``config.runtime.index``, ``reinject``
    feeds the config again, and ``periodically_expire`` sweeps the index on the
    virtual clock. Like :func:`run`, the clock advances to each event's time
    before the event is delivered, and to ``until`` at the end, so expired
    events reach the streams as the clock passes their ttl.

    >>> from streams import Config, Event, default, index as index_stream
    >>> config = Config(streams=[default({"ttl": 3}, tap("indexed", index_stream))])
    >>> inject(config, [Event(service="test", time=1)])
    {'indexed': [Event(service='test', time=1, ttl=3)]}
    """
    runtime = _runtime_of(config)
    virtual = _virtual(runtime)
    with runtime, taps() as seen:
        for event in inputs:
            time = getattr(event, "time", None)
            if time is not None:
                virtual.advance(time)
            runtime.dispatch(event)
        if until is not None:
            virtual.advance(until)
        found: dict[str, list[Any]] = {name: [] for name in _tap_names(config.streams)}
        found.update((name, list(events)) for name, events in seen.items())
        return found


def _tap_names(streams: Iterable[Any]) -> list[str]:
    """Names of every tap in a stream tree, so taps that saw nothing still report []."""
    return sorted(node.stream.name for node in nodes(streams) if isinstance(node.stream, tap))


# Hypothesis strategies -------------------------------------------------------

def events(
    *,
    hosts: Iterable[str] = ("a", "b", "c"),
    services: Iterable[str] = ("cpu", "memory", "http req"),
    states: Iterable[str | None] = ("ok", "warning", "critical", None),
    tags: Iterable[str] = ("web", "db", "prod"),
    metrics: Any = None,
    times: Any = None,
    ttls: Any = None,
) -> Any:
    """A Hypothesis strategy for events drawn from small alphabets, so keys collide.

    Every argument narrows what is drawn; ``metrics``, ``times`` and ``ttls``
    take strategies (defaults: small ints and floats or None; times from 0 to
    100 s; ttls None or 1 to 120 s).

    >>> from hypothesis import given
    >>> @given(events(hosts=["x"]))
    ... def test_host(event): assert event.host == "x"
    >>> test_host()
    """
    from hypothesis import strategies as st

    if metrics is None:
        metrics = st.one_of(
            st.none(), st.integers(-1000, 1000),
            st.floats(-1000, 1000, allow_nan=False, allow_infinity=False),
        )
    if times is None:
        times = st.floats(0, 100, allow_nan=False).map(lambda t: round(t, 3))
    if ttls is None:
        ttls = st.one_of(st.none(), st.floats(1, 120, allow_nan=False))
    return st.builds(
        Event,
        host=st.sampled_from(list(hosts)),
        service=st.sampled_from(list(services)),
        state=st.sampled_from(list(states)),
        metric=metrics,
        time=times,
        ttl=ttls,
        tags=st.lists(st.sampled_from(list(tags)), max_size=3, unique=True).map(tuple),
        description=st.one_of(st.none(), st.text(string.ascii_letters, max_size=8)),
    )


def timed_events(**kwargs: Any) -> Any:
    """A strategy for lists of events in non-decreasing time order."""
    from hypothesis import strategies as st

    return st.lists(events(**kwargs), max_size=40).map(
        lambda es: sorted(es, key=lambda e: e.time)
    )



def perturbed(recording: str | Path, directory: str | Path, *, drop: float = 0.1,
              duplicate: float = 0.1, delay: float = 0.0, jitter: float = 0.0) -> Any:
    """A strategy for perturbed copies of a recording, written into ``directory``.

    Each draw drops up to a ``drop`` fraction of the requests, sends up to a
    ``duplicate`` fraction twice, delays some by up to ``delay`` seconds and
    moves every one by up to ``jitter`` seconds either way (order follows the
    new times). The copies have no timer ticks, so they replay with ideal
    timers. Draws the copy's path: replay it with :func:`replay`.
    """
    from hypothesis import strategies as st

    from transport._recording import read_requests, write_requests

    requests = read_requests(recording)
    count = len(requests)
    folder = Path(directory)
    made = iter(range(1 << 62))

    def write(draw: tuple[set[int], set[int], dict[int, float], Any]) -> Path:
        dropped, doubled, delays, rng = draw
        out = []
        for i, (t_us, conn, payload) in enumerate(requests):
            if i in dropped:
                continue
            t_us += round(delays.get(i, 0.0) * 1e6)
            if jitter:
                t_us += round(rng.uniform(-jitter, jitter) * 1e6)
            out.append((t_us, conn, payload))
            if i in doubled:
                out.append((t_us, conn, payload))
        path = folder / f"perturbed-{next(made)}.rrec"
        write_requests(out, path, note=f"perturbed from {recording}")
        return path

    indices = st.integers(0, max(count - 1, 0))
    return st.tuples(
        st.sets(indices, max_size=int(count * drop)) if count else st.just(set()),
        st.sets(indices, max_size=int(count * duplicate)) if count else st.just(set()),
        st.dictionaries(indices, st.floats(0, delay), max_size=count) if delay and count
        else st.just({}),
        st.randoms(use_true_random=False),
    ).map(write)
