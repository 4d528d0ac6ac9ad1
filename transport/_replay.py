"""Replay a recording through a config: hermetic, on a virtual clock, deterministic.

The config is loaded into its own :class:`streams.Runtime` on a
:class:`ReplayClock`. Every sink it declares (each service that is a stream:
``forward``, ``pagerduty``, ``graphite``...) is turned into a recorder before
anything runs, and no service is started, so a replay opens no socket and
pages nobody. Requests are decoded from their recorded wire bytes at their
recorded processing time, exactly as the server decoded them.

Two fidelities:

- ``exact`` (the default for recordings made by ``rillet run --record``):
  timers run at the recorded TICK frames, when the live scheduler ran them,
  and the clock reads that time while they run, as it did live;
- ``ideal``: every timer runs at its due time, between requests ("what if the
  server had never lagged"); the only choice for imported recordings, which
  have no TICK frames.

The alert log is one JSON line per event a sink received, in order; the same
recording, config, rillet version and hash seed give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams import Config, Runtime, VirtualClock
from streams._nodes import nodes

from ._checkpoint import Checkpoint, CheckpointReader, CheckpointWriter
from ._codec import ProtocolError, decode_message
from ._livelog import sink_name, with_call
from ._recording import (
    GAP,
    MARK,
    MSG,
    SEED,
    TICK,
    Frame,
    RecordingReader,
    alert_fields,
    config_sha256,
    recording_files,
    rillet_version,
)
from ._recording import _frames as _block_frames

__all__ = ["Alert", "ReplayClock", "ReplayResult", "determinism_hazards", "hash_seed", "replay",
           "replay_portable"]


class ReplayClock(VirtualClock):
    """A virtual clock that, in exact mode, keeps reading the tick's time while
    the tick's timers run (the live scheduler's ``now()`` did not go back to
    each task's due time either)."""

    def __init__(self, start: float = 0, *, exact: bool = True) -> None:
        super().__init__(start)
        self.exact = exact

    def tick(self, t: float) -> None:
        """Run every task due by ``t`` with the clock at ``t`` (exact mode)."""
        if t > self._now:
            self._now = t
        # A tick is recorded to the microsecond: what was due at the live time
        # is due within a microsecond of the recorded one.
        self.run_due(t + 1e-6)

    def _before_run(self, due: float) -> None:
        if not self.exact:
            super()._before_run(due)


@dataclass(frozen=True)
class Alert:
    """One event a sink received during a replay, with the clock at that moment.

    ``input`` and ``node`` are its lineage: the number of the request (counted
    from 0 over the recording's decodable requests) being streamed when the
    sink got it, None when a timer emitted it (``stable``, ``rate``, expiry);
    and the sink's node id in the config (its first place, as ``rillet replay
    --counts`` names it: ``streams[0]/where/throttle/pagerduty``).
    """

    seq: int
    t: float
    sink: str
    event: Any
    input: int | None = None
    node: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "t": round(self.t, 6), "sink": self.sink, "input": self.input,
                "node": self.node, "event": alert_fields(self.event)}


@dataclass
class ReplayResult:
    """What a replay produced, and the digests that make it reproducible."""

    alerts: list[Alert]
    recording: str
    config: str
    recording_sha256: str
    config_sha256: str
    hash_seed: str
    messages: int = 0
    events: int = 0
    undecodable: int = 0
    gaps: int = 0
    ticks: int = 0
    start: float | None = None
    end: float | None = None
    fidelity: str = "exact"
    sample: str | None = None
    sinks: list[str] = field(default_factory=list)
    version: str = field(default_factory=rillet_version)
    #: The number (counted over every MSG frame) of each undecodable request.
    undecodable_at: list[int] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        for alert in self.alerts:
            yield json.dumps(alert.as_dict(), sort_keys=True, default=repr)

    def jsonl(self) -> str:
        return "".join(line + "\n" for line in self.lines())

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.jsonl().encode()).hexdigest()

    def digests(self) -> dict[str, str]:
        return {"recording": self.recording_sha256, "config": self.config_sha256,
                "rillet": self.version, "hash_seed": self.hash_seed,
                "alert_log": self.digest}

    def summary(self) -> str:
        span = "" if self.start is None or self.end is None else \
            f" over {self.end - self.start:.1f} s"
        return (f"replayed {self.messages} requests ({self.events} events){span} through "
                f"{self.config}, {self.fidelity} timers: {len(self.alerts)} sink events; "
                f"gaps {self.gaps}, undecodable {self.undecodable}"
                f"{f', sampled {self.sample}' if self.sample else ''}\n"
                f"digests: recording sha256:{self.recording_sha256[:16]} config sha256:"
                f"{self.config_sha256[:16]} rillet {self.version} hash seed {self.hash_seed} "
                f"alert log sha256:{self.digest[:16]}")


def hash_seed() -> str:
    """The PYTHONHASHSEED this process runs with ("random" when unpinned)."""
    return os.environ.get("PYTHONHASHSEED") or "random"


def _file_digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


class _SinkCapture:
    """Turns each sink (a service that is a stream) into a recorder as the config
    declares it: before any stream binds its ``__call__``."""

    def __init__(self, record: Callable[[str, Any], None]) -> None:
        self.record = record
        self.names: dict[int, str] = {}
        self.counts: dict[str, int] = {}
        self.classes: dict[type, type] = {}
        self.keep: list[Any] = []
        #: Told of every sink that receives an event (explain traces with it).
        self.observer: Callable[[Any], None] | None = None
        #: The sink being called, and each sink's node id in the config.
        self.current: Any = None
        self.paths: dict[int, str] = {}

    def __call__(self, declared: Any) -> None:
        name = sink_name(declared, self.counts)
        if name is None:
            return
        self.names[id(declared)] = name
        self.keep.append(declared)  # ids stay unique while the replay runs
        with_call(declared, self.classes, self._recording)

    def _recording(self, _cls: type) -> Callable[[Any, Any], None]:
        capture = self

        def call(sink: Any, event: Any) -> None:
            name = capture.names[id(sink)]
            capture.current = sink
            if capture.observer is not None:
                capture.observer(sink)
            if type(event) is list or type(event) is tuple:
                for one in event:
                    capture.record(name, one)
            else:
                capture.record(name, event)

        return call


def _load(config: Config | str | Path, runtime: Runtime) -> tuple[Config, str, str]:
    source = config.source if isinstance(config, Config) else config
    if source is None:
        raise ValueError("replay(config, ...): give the config's path (or a Config loaded from "
                         "a file): its sinks must be built inside the replay to be recorded")
    path = Path(source)
    loaded = runtime.load(path)
    return loaded, str(path), config_sha256(path)


def replay(config: Config | str | Path, recording: str | Path, *,
           fidelity: str | None = None, until: float | None = None,
           start: float | None = None, end: float | None = None,
           instrument: Callable[[Runtime, _SinkCapture], None] | None = None,
           checkpoints: CheckpointWriter | None = None,
           resume: tuple[CheckpointReader, Checkpoint] | None = None) -> ReplayResult:
    """Replay ``recording`` (a ``.rrec`` file or a directory of them) through
    ``config`` (a path, or a loaded Config) and return the sinks' alert log.

    ``fidelity`` is "exact" or "ideal" (default: exact when the recording has
    timer ticks, else ideal). ``start`` and ``end`` (Unix seconds) replay that
    part of the recording only (the blocks before ``start`` are skipped
    through the file's index). ``until`` runs the timers due by that time at
    the end. ``instrument(runtime, sinks)`` runs once the config has started,
    before the first request (explain wraps ``runtime.dispatch`` there and
    sets ``sinks.observer``).

    ``checkpoints`` (a :class:`CheckpointWriter`) stores the replay's state at
    block boundaries as it goes, and the alert log at the end; ``resume``
    (a reader and one of its checkpoints) starts from that state instead of
    the beginning: the alerts after it are those of a full replay.
    """
    if fidelity not in (None, "exact", "ideal"):
        raise ValueError(f"replay(fidelity={fidelity!r}): fidelity must be 'exact' or 'ideal'")
    files = recording_files(recording)
    readers = [RecordingReader(path) for path in files]
    has_ticks = fidelity == "exact" or (fidelity is None and _has_ticks(readers))
    begin = readers[0].header.get("start_us", 0) / 1_000_000
    if start is not None:
        begin = max(begin, start)
    start_us = None if start is None else round(start * 1_000_000)
    end_us = None if end is None else round(end * 1_000_000)
    # Loading may start timers: they must start at the recording's time, not 0.
    clock = ReplayClock(begin, exact=has_ticks)
    runtime = Runtime(clock)
    alerts: list[Alert] = []
    # The request being streamed (lineage of what sinks get), and the alerts
    # before a resumed checkpoint.
    lineage: list[Any] = [None, 0]

    def record(sink: str, event: Any) -> None:
        alerts.append(Alert(lineage[1] + len(alerts), clock._now, sink, event, lineage[0],
                            capture.paths.get(id(capture.current))))

    capture = _SinkCapture(record)
    runtime.service_hook = capture
    try:
        loaded, name, config_digest = _load(config, runtime)
    finally:
        runtime.service_hook = None
    result = ReplayResult(alerts=alerts, recording=str(recording), config=name,
                          recording_sha256=_file_digest(files), config_sha256=config_digest,
                          hash_seed=hash_seed(), fidelity="exact" if has_ticks else "ideal",
                          start=begin, sample=readers[0].header.get("sample"))
    result.sinks = list(capture.names.values())
    position = None
    if resume is not None:
        resume[0].check(config_digest, result.recording_sha256, result.version)
        position = (resume[1].file, resume[1].offset)
        start_us = None
    if checkpoints is not None:
        checkpoints.open(config_digest, result.recording_sha256, result.version)
    with runtime:
        started = False

        def start_config() -> None:
            runtime.start(loaded)
            capture.paths = {id(node.stream): node.id for node in nodes(loaded.streams)}
            if resume is not None:
                _resume(runtime, result, lineage, resume[0].state(resume[1]))
            if instrument is not None:
                instrument(runtime, capture)

        if resume is not None:
            start_config()
            started = True
        for frame in _frames_between(readers, start_us, end_us, position,
                                     boundaries=checkpoints is not None):
            kind = frame.kind
            t = frame.t_us / 1_000_000
            if not started and kind in (MSG, TICK, MARK):
                # The config's own timers (index expiry) start when it started
                # live, so they fall due at the same ticks.
                if kind == MARK and frame.data == b"start" and t > clock.now():
                    clock.set(t)
                start_config()
                started = True
            if kind == MSG:
                if has_ticks:
                    clock._now = t
                else:
                    clock.advance(t)
                try:
                    events = decode_message(frame.data, t).events
                except ProtocolError:
                    result.undecodable_at.append(result.messages + result.undecodable)
                    result.undecodable += 1
                    continue
                lineage[0] = result.messages
                result.messages += 1
                if events:
                    result.events += len(events)
                    runtime.stream(events)
                lineage[0] = None
            elif kind == TICK:
                result.ticks += 1
                if has_ticks:
                    clock.tick(t)
            elif kind == GAP:
                result.gaps += frame.n
            elif kind == SEED and frame.data:
                for event in decode_message(frame.data, t).events:
                    runtime.index(event)
            elif kind == _BLOCK:
                if started and checkpoints is not None and checkpoints.due(t):
                    checkpoints.take(runtime, t, frame.conn, frame.n, _progress(
                        result, lineage[1] + len(alerts)))
                continue
            result.end = t
        if not started:
            start_config()
        if until is not None and has_ticks:
            clock.tick(until)
        elif until is not None:
            clock.advance(until)
        runtime.stop()
    if checkpoints is not None:
        checkpoints.alerts(alerts)
        checkpoints.close()
    return result


_COUNTS = ("messages", "events", "undecodable", "gaps", "ticks")


def _progress(result: ReplayResult, alerts: int) -> dict[str, Any]:
    progress: dict[str, Any] = {name: getattr(result, name) for name in _COUNTS}
    progress["alerts"] = alerts
    return progress


def _resume(runtime: Runtime, result: ReplayResult, lineage: list[Any], state: bytes) -> None:
    from ._checkpoint import restore_state

    progress = restore_state(runtime, state)
    for name in _COUNTS:
        setattr(result, name, progress[name])
    lineage[1] = progress["alerts"]
    result.start = runtime.clock.now()


# What makes two replays of one config differ: the wall clock and randomness.
_HAZARDS = re.compile(r"\b(time\.time|time\.monotonic|datetime\.now|datetime\.utcnow|"
                      r"random\.\w+|uuid\.uuid[14]|os\.urandom)\(")


def determinism_hazards(config: Config) -> list[str]:
    """``file:line: call`` for each call in the config's files that reads the wall
    clock or randomness: a replay of such a config is not reproducible (streams
    read ``streams.current_runtime().now()``, the runtime's clock, instead)."""
    from streams._config import source_files

    found = []
    for path in source_files(config):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            code = line.split("#", 1)[0]
            found += [f"{path}:{number}: {match.group(1)}()" for match in _HAZARDS.finditer(code)]
    return found


# Not a recorded frame kind: the start of a block (conn: file number, n: its
# offset), where a checkpoint may be taken.
_BLOCK = 0


def _frames_between(readers: list[RecordingReader], start_us: int | None,
                    end_us: int | None, position: tuple[int, int] | None = None, *,
                    boundaries: bool = False) -> Iterator[Frame]:
    """The frames from ``start_us`` (or the block at ``position``: file number and
    offset) to ``end_us``; with ``boundaries``, a ``_BLOCK`` frame before each block."""
    for number, reader in enumerate(readers):
        if position is not None and number < position[0]:
            continue
        if boundaries or position is not None:
            offset = position[1] if position is not None and number == position[0] else None
            blocks = reader.blocks_at(offset)
            frames: Iterator[Frame] = (
                frame for at, first_us, _seq, data in blocks
                for frame in _with_boundary(number, at, first_us, data, boundaries))
        else:
            frames = reader.frames(start_us)
        if start_us is None and end_us is None:
            # A whole replay: no generator layer between the reader and the loop.
            yield from frames
            continue
        for frame in frames:
            if end_us is not None and frame.kind not in (SEED, _BLOCK) and frame.t_us > end_us:
                return
            if start_us is None or frame.kind == SEED or frame.t_us >= start_us:
                yield frame


def _with_boundary(number: int, offset: int, first_us: int, data: bytes,
                   boundary: bool) -> Iterator[Frame]:
    if boundary:
        yield Frame(_BLOCK, first_us, number, b"", offset)
    yield from _block_frames(data, first_us)


def _has_ticks(readers: list[RecordingReader]) -> bool:
    """Whether the server's timer runs were recorded (live recordings; not imports)."""
    return bool(readers[0].header.get("ticks", False))


def replay_portable(config: str | Path, recording: str | Path, fidelity: str | None = None,
                    **span: float | None) -> ReplayResult:
    """:func:`replay` for another process: the alerts' events become plain
    :class:`streams.Event` objects, which pickle (decoded wire events do not)."""
    import gc

    gc.freeze()  # like rillet run: events form no cycles, collect rarely
    gc.set_threshold(100_000, 50, 100)
    result = replay(config, recording, fidelity=fidelity, **span)  # type: ignore[arg-type]
    result.alerts = [Alert(a.seq, a.t, a.sink, _plain(a.event), a.input, a.node)
                     for a in result.alerts]
    return result


def _plain(event: Any) -> Any:
    from streams import Event

    if isinstance(event, Event):
        return Event(**event.as_dict())
    return repr(event)
