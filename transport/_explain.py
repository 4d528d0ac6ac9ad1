"""Why an alert fired, and why one did not: rebuilt by replaying, nothing kept live.

A traced replay wraps every stream class's ``__call__`` (only while it runs)
and notes, for each *candidate* input (an event matching the given fields
within the time window), which streams it reached. Synchronous streams make
that exact: everything called while a candidate is dispatched descends from
it. Where a candidate reached a stream but none of that stream's children,
it *stopped* there: dropped by a ``where``, held by ``throttle``, ``stable``
or ``changed_state``. Each stream is told apart by its node id (its place in
the config, see ``streams._nodes``; a ``by``'s per-key forks by the template
they copy) and shown by the config line that built it (recorded while the
config loads), its repr, which reads like that line, and its node id with its
counts. Outputs that a timer emits later are not attributed to the input.

Given the checkpoints a replay stored (``rillet replay --checkpoints FILE``),
explain replays only from the nearest checkpoint before its question: an
alert is found in the stored alert log, with its lineage (the request that
triggered it), and a why-not starts at the checkpoint before ``--at`` minus
``--window`` and stops after ``--at`` plus ``--window``.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams import Runtime, Stream, by
from streams._core import WIRING
from streams._nodes import nodes, step

from ._checkpoint import Checkpoint, CheckpointReader
from ._counters import StreamCounters, _classes
from ._replay import replay

__all__ = ["WhyNot", "explain_alert", "explain_changes", "why_not"]

#: Diff items explained per side (all in one traced replay).
EXPLAIN_LIMIT = 50


@dataclass
class _Question:
    """One why-not: the candidate inputs, and what became of them."""

    match: dict[str, str]
    at: float | None
    window: float
    candidates: int = 0
    stopped: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    evicted: Counter[str] = field(default_factory=Counter)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    paths: list[list[tuple[str, str]]] = field(default_factory=list)
    #: The last stopped candidate's view of each stopping stream: its state, and
    #: the numbers its condition compares with (a where's thresholds).
    states: dict[str, tuple[str, list[float]]] = field(default_factory=dict)

    def wants(self, event: Any, now: float) -> bool:
        if self.at is not None and abs(now - self.at) > self.window:
            return False
        get = getattr(event, "get", None)
        return get is not None and all(str(get(k)) == v for k, v in self.match.items())


class _Tracer:
    def __init__(self, source: Path, template: dict[int, Any]) -> None:
        self.sources = {str(source), str(source.resolve())}
        self.name = source.name
        #: Config line per stream (by id), and per label for streams built at run time.
        self.lines: dict[int, str] = {}
        self.labelled_lines: dict[str, str] = {}
        #: fork id -> the config's stream it copies (the counters' map), and node ids.
        self.template = template
        self.node_ids: dict[int, str] = {}
        #: key -> a stream it stands for (see ``key``).
        self.shown: dict[str, Stream] = {}
        self.reached: dict[int, Stream] | None = None
        self.asking: list[_Question] = []
        self.entries = 0
        self.leaves: dict[int, Stream] = {}
        self.owners: dict[str, str] = {}
        #: Stream (by id) -> the stream whose construction built it (changed_state's changed).
        self.built_by: dict[int, Stream] = {}
        #: Keys each ``by`` ever made a fork for.
        self.keys: dict[int, set[Any]] = {}
        #: node id -> (events in, events out) over the replayed span.
        self.counts: dict[str, tuple[int, int | None]] = {}

    def label(self, stream: Stream) -> str:
        text = repr(stream)
        return text if len(text) <= 100 else text[:97] + "..."

    def key(self, stream: Stream) -> str:
        """What tells a stream apart in the answers: its node id (a fork's is the one of
        the stream it copies); for a stream another one built (changed_state's
        changed), that one's id and its step, as the scale-out handover names it; else
        (a stream a by_builder's function built) its label."""
        origin = self.template.get(id(stream), stream)
        found = self.node_ids.get(id(origin))
        if found is None:
            owner = self.built_by.get(id(origin))
            inside = None if owner is None else self.node_ids.get(id(owner))
            found = self.label(stream) if inside is None else f"{inside}/{step(origin)}"
        self.shown.setdefault(found, origin)
        return found

    def where(self, key: str) -> str:
        stream = self.shown[key]
        label = self.label(stream)
        line = self.lines.get(id(stream)) or self.labelled_lines.get(label)
        owner = self.owners.get(label)
        counted = self.counts.get(key)
        if owner is not None:
            label = f"{owner} (inside it: {label})"
        text = f"{line} {label}" if line else label
        if counted is not None:
            count, out = counted
            text += f"  [{key}: {count} in" + ("" if out is None else f", {out} out") + "]"
        elif key.startswith("streams["):
            text += f"  [{key}]"
        return text

    def seen(self, stream: Stream) -> None:
        assert self.reached is not None
        self.entries += 1
        if id(stream) not in self.reached:
            self.reached[id(stream)] = stream

    def left(self, stream: Stream, before: int) -> None:
        """A stream returned: it stopped the input when it called no other stream."""
        if self.reached is not None and self.entries == before + 1 and not stream.shared:
            self.leaves[id(stream)] = stream

    def sink(self, stream: Stream) -> None:
        if self.reached is not None:
            self.seen(stream)

    def dispatch(self, inner: Callable[[Any], object], event: Any,
                 questions: list[_Question]) -> object:
        self.reached = {}
        self.leaves = {}
        self.asking = questions
        for question in questions:
            question.candidates += 1
        try:
            return inner(event)
        finally:
            reached, self.reached = self.reached, None
            path = [(self.key(stream), _state(stream)) for stream in reached.values()]
            metric = getattr(event, "metric", None)
            for question in questions:
                question.paths.append(path)
                for (key, _), stream in zip(path, reached.values(), strict=True):
                    if stream.shared:
                        question.delivered[key] += 1
                    elif id(stream) in self.leaves:
                        question.stopped[key] += 1
                        question.states[key] = (_state(stream), _numbers(stream))
                        if isinstance(metric, (int, float)):
                            question.metrics.setdefault(key, []).append(float(metric))

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Trace every stream class and note the config line building each stream."""
        patched: list[tuple[type, Any]] = []
        tracer = self

        def wrap(original: Callable[[Any, Any], object]) -> Callable[[Any, Any], object]:
            def traced(stream: Any, event: Any) -> object:
                if tracer.reached is None:
                    return original(stream, event)
                before = tracer.entries
                tracer.seen(stream)
                try:
                    return original(stream, event)
                finally:
                    tracer.left(stream, before)
            return traced

        original_new_key = by.__dict__["_new_key"]

        def new_key(stream: by, key: Any) -> Any:
            seen = tracer.keys.setdefault(id(stream), set())
            if tracer.reached is not None and key in seen:
                for question in tracer.asking:
                    question.evicted[tracer.key(stream)] += 1
            seen.add(key)
            return original_new_key(stream, key)

        by._new_key = new_key  # type: ignore[method-assign,assignment]
        patched.append((by, None))
        for cls in {*_classes(Stream)}:
            if "__call__" in cls.__dict__:
                patched.append((cls, cls.__dict__["__call__"]))
                cls.__call__ = wrap(cls.__dict__["__call__"])  # type: ignore[method-assign]
        original_new = Stream.__dict__["__new__"]

        def new(cls: type, *args: Any, **kwargs: Any) -> Any:
            stream = original_new(cls, *args, **kwargs)
            frame: Any = sys._getframe(1)
            owner = None  # the stream whose construction built this one, if any
            while frame is not None and frame.f_code.co_filename not in tracer.sources:
                if owner is None and frame.f_code.co_name == "__init__" and \
                        isinstance(frame.f_locals.get("self"), Stream) and \
                        frame.f_locals["self"] is not stream:
                    owner = frame.f_locals["self"]
                frame = frame.f_back
            if frame is not None:
                tracer.pending.append((stream, f"{tracer.name}:{frame.f_lineno}", owner))
            return stream

        self.pending: list[tuple[Stream, str, Stream | None]] = []
        Stream.__new__ = new  # type: ignore[method-assign]
        try:
            yield
        finally:
            Stream.__new__ = original_new  # type: ignore[method-assign]
            by._new_key = original_new_key  # type: ignore[method-assign]
            for cls, call in patched:
                if call is not None:
                    cls.__call__ = call  # type: ignore[method-assign]

    def name_lines(self, streams: list[Any]) -> None:
        """Note the config lines and node ids of ``streams``, the config just loaded."""
        self.node_ids = {}
        for node in nodes(streams):
            self.node_ids[id(node.stream)] = node.id
            # The by that changed_state (or by_builder) keeps inside, and its templates:
            # found by structure too, for a checkpoint restores them as new objects.
            inner = getattr(node.stream, "_by", None)
            if isinstance(inner, by):
                self.built_by[id(inner)] = node.stream
                self.built_by.update((id(c), node.stream) for c in inner.children)
        # Labels are taken once the streams are whole (a repr shows the children).
        for stream, line, owner in self.pending:
            label = self.label(stream)
            self.lines.setdefault(id(stream), line)
            self.labelled_lines.setdefault(label, line)
            if owner is not None:
                # Streams built inside another (changed_state's changed per key)
                # are reported as part of the one the config wrote.
                self.owners.setdefault(label, self.label(owner))
                self.built_by.setdefault(id(stream), owner)
        self.pending.clear()


def _state(stream: Stream, depth: int = 0) -> str:
    """A stream's state right after an input passed it: its private slots that
    hold values (window contents, counts, previous state, pending timers)."""
    if stream.shared:
        return ""
    parts = []
    for cls in type(stream).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name in WIRING or not name.startswith("_"):
                continue
            value = getattr(stream, name, None)
            if value is None or callable(value) or value == ():
                continue
            if isinstance(value, dict):
                text = f"<{len(value)} keys>"
            elif isinstance(value, (list, tuple, set)) or type(value).__name__ == "deque":
                text = repr(value) if len(value) <= 3 else f"<{len(value)} items>"
            elif hasattr(value, "__slots__") and " object at 0x" in repr(value) and depth < 1:
                inner = " ".join(f"{k}={getattr(value, k)!r}" for k in value.__slots__
                                 if not callable(getattr(value, k, None)))
                text = f"{{{inner}}}"
            else:
                text = repr(value)
            parts.append(f"{name.lstrip('_')}={text[:100]}")
    return " ".join(parts)


def _numbers(stream: Stream) -> list[float]:
    """The numbers a where's condition compares with: its code's constants and the
    values it closes over (``lambda e: e.metric > limit``)."""
    predicate = getattr(stream, "predicate", None)
    code = getattr(predicate, "__code__", None)
    if code is None:
        return []
    values = list(code.co_consts)
    values += [cell.cell_contents for cell in getattr(predicate, "__closure__", None) or ()]
    return sorted({float(v) for v in values
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})


def _miss(question: _Question, key: str) -> str:
    """The closest miss: the stopped metrics against the condition's numbers, or
    the stream's state (a throttle's next opening, stable's pending candidate)."""
    metrics = question.metrics.get(key)
    state, numbers = question.states.get(key, ("", []))
    note = ""
    if metrics:
        note = f"   metric of those: max {max(metrics):g}, min {min(metrics):g}"
        if numbers:
            margin = min((abs(n - m), n, m) for n in numbers for m in metrics)
            note += f"; closest: {margin[2]:g} against {margin[1]:g} " \
                    f"(short by {margin[0]:.6g})"
    if state and not numbers:
        note += f"\n      its state then: {state}"
    return note


@dataclass
class WhyNot:
    config: str
    match: dict[str, str]
    at: float | None
    window: float
    candidates: int = 0
    stopped: list[tuple[str, int, str]] = field(default_factory=list)
    delivered: list[tuple[str, int]] = field(default_factory=list)
    evicted: list[tuple[str, int]] = field(default_factory=list)
    note: str = ""

    def text(self) -> str:
        wanted = " ".join(f"{k}={v}" for k, v in self.match.items())
        span = "the whole recording" if self.at is None else \
            f"{self.at - self.window:.3f}..{self.at + self.window:.3f}"
        lines = [f"WHY-NOT {wanted} in {self.config} over {span}: "
                 f"{self.candidates} candidate inputs{self.note}"]
        for where, count, note in self.stopped:
            lines.append(f"  {count} stopped at {where}{note}")
        for where, count in self.evicted:
            lines.append(f"  {count} arrived at {where} after their key had been evicted "
                         f"(max_keys or idle): the streams below it started fresh")
        for sink, count in self.delivered:
            lines.append(f"  {count} reached sink {sink}")
        if not self.candidates:
            lines.append("  no input matched: check the fields and --at/--window")
        return "\n".join(lines)


def _traced(config: str | Path, recording: str | Path, questions: list[_Question], *,
            resume: tuple[CheckpointReader, Checkpoint] | None = None,
            end: float | None = None) -> _Tracer:
    """One replay of ``config`` tracing the candidates of every question."""
    counters = StreamCounters()
    tracer = _Tracer(Path(config), counters.template)
    # Questions indexed by their first field's value: one dict look-up per
    # input, however many questions a diff asks.
    index: dict[str, dict[str, list[_Question]]] = {}
    for question in questions:
        first, value = next(iter(question.match.items()))
        index.setdefault(first, {}).setdefault(value, []).append(question)

    def instrument(runtime: Runtime, sinks: Any) -> None:
        tracer.name_lines(runtime.config.streams if runtime.config is not None else [])
        sinks.observer = tracer.sink
        inner = runtime.dispatch
        clock = runtime.clock

        def dispatch(event: Any) -> object:
            get = getattr(event, "get", None)
            if get is not None:
                for name, values in index.items():
                    found = values.get(str(get(name)))
                    if found:
                        now = clock.now()
                        asked = [q for q in found if q.wants(event, now)]
                        if asked:
                            return tracer.dispatch(inner, event, asked)
            return inner(event)

        runtime.dispatch = dispatch

    loaded: list[Runtime] = []

    def instrumented(runtime: Runtime, sinks: Any) -> None:
        loaded.append(runtime)
        if runtime.config is not None:
            counters.restored(runtime.config.streams)
        instrument(runtime, sinks)

    with tracer.installed(), counters:
        replay(config, recording, instrument=instrumented, resume=resume, end=end)
    if loaded and loaded[0].config is not None:
        for node_id, _stream, count, out in counters.table(loaded[0].config.streams):
            tracer.counts[node_id] = (count, out)
    return tracer


def _answer(tracer: _Tracer, config: str | Path, question: _Question) -> WhyNot:
    out = WhyNot(str(config), question.match, question.at, question.window,
                 candidates=question.candidates)
    for key, count in question.stopped.most_common():
        out.stopped.append((tracer.where(key), count, _miss(question, key)))
    out.delivered = [(tracer.label(tracer.shown[key]), count)
                     for key, count in question.delivered.most_common()]
    out.evicted = [(tracer.where(key), count)
                   for key, count in question.evicted.most_common()]
    return out


def _reader(checkpoints: str | Path | CheckpointReader | None, config: str | Path,
            recording: str | Path) -> CheckpointReader | None:
    """The checkpoints, once checked to be this config's and recording's."""
    if checkpoints is None:
        return None
    from ._recording import recording_files, rillet_version
    from ._replay import _file_digest

    reader = checkpoints if isinstance(checkpoints, CheckpointReader) else \
        CheckpointReader(checkpoints)
    reader.check(hashlib.sha256(Path(config).read_bytes()).hexdigest(),
                 _file_digest(recording_files(recording)), rillet_version())
    return reader


def _resume_note(resume: tuple[CheckpointReader, Checkpoint] | None) -> str:
    if resume is None:
        return ""
    point = resume[1]
    return (f"  (replayed from the checkpoint at {point.t:.3f}, after request #"
            f"{point.messages}: {resume[0].path})")


def why_not(config: str | Path, recording: str | Path, match: dict[str, str], *,
            at: float | None = None, window: float = 600.0,
            checkpoints: str | Path | CheckpointReader | None = None) -> WhyNot:
    """Where the inputs matching ``match`` (near ``at``) stopped in ``config``; with
    ``checkpoints`` (and ``at``), replaying only from the one before ``at - window``."""
    if not match:
        raise ValueError("why_not(match=...): give at least one field, e.g. {'host': 'web-42'}")
    question = _Question(dict(match), at, window)
    reader = _reader(checkpoints, config, recording)
    resume = None
    end = None
    if reader is not None and at is not None:
        found = reader.before(t=at - window)
        resume = None if found is None else (reader, found)
        end = at + window
    answer = _answer(_traced(config, recording, [question], resume=resume, end=end), config,
                     question)
    answer.note = _resume_note(resume)
    return answer


def _logged(config: str | Path, recording: str | Path, seq: int,
            reader: CheckpointReader | None) -> tuple[str, float, int | None, dict[str, Any]]:
    """Alert ``seq``'s sink, time, input request and fields: from the checkpoint
    file's alert log, else from a replay."""
    if reader is not None:
        logged = reader.alerts()
        if not 0 <= seq < len(logged):
            raise ValueError(f"--alert {seq}: the replay logged alerts 0..{len(logged) - 1}")
        _seq, t, sink, source, fields = logged[seq]
        return sink, t, source, fields
    plain = replay(config, recording)
    if not 0 <= seq < len(plain.alerts):
        raise ValueError(f"--alert {seq}: the replay logged alerts 0..{len(plain.alerts) - 1}")
    alert = plain.alerts[seq]
    return alert.sink, alert.t, alert.input, alert.as_dict()["event"]


def explain_alert(config: str | Path, recording: str | Path, seq: int, *,
                  checkpoints: str | Path | CheckpointReader | None = None) -> str:
    """The path of the input that made alert ``seq`` through the config; with
    ``checkpoints``, replaying only from the checkpoint before that input."""
    reader = _reader(checkpoints, config, recording)
    sink, t, source, event = _logged(config, recording, seq, reader)
    match = {k: str(event[k]) for k in ("host", "service") if event.get(k) is not None}
    question = _Question(match, t, 0.0)
    resume = None
    if reader is not None:
        found = reader.before(t=t, messages=source)
        resume = None if found is None else (reader, found)
    tracer = _traced(config, recording, [question], resume=resume,
                     end=t if reader is not None else None)
    origin = "a timer" if source is None else f"input request #{source}"
    head = f"ALERT #{seq} {sink} " + " ".join(f"{k}={v}" for k, v in match.items()) + \
        f" state={event.get('state')} at {t:.6f} <- {origin}" + _resume_note(resume)
    for path in question.paths:
        if any(question.delivered.get(key) for key, _ in path):
            steps = []
            for key, state in path:
                steps.append(f"  {tracer.where(key)}")
                if state:
                    steps.append(f"      state after it: {state}")
            return "\n".join([head, "  the input at that time took this path:", *steps])
    return "\n".join([head, "  no input at that time reached a sink: a timer emitted it "
                            "(stable, rate, expiry); try rillet explain --why-not " +
                      " ".join(f"{k}={v}" for k, v in match.items())])


def explain_changes(report: Any, b_path: str, a_path: str, recording: str | Path) -> None:
    """Attach a why-not to each gone item (traced in B) and new item (traced in A),
    the first EXPLAIN_LIMIT of each: one traced replay per side."""
    fields = [f for f in report.key_fields if f != "state"]
    window = min(report.tolerance, 60.0)
    for kind, config, side in (("gone", b_path, "B"), ("new", a_path, "A")):
        items = [c for c in report.changes if c.kind == kind][:EXPLAIN_LIMIT]
        asked = []
        for change in items:
            alert = change.a or change.b
            match = {f: str(alert.event.get(f)) for f in fields
                     if alert.event.get(f) is not None}
            if match:
                asked.append((change, _Question(match, alert.t, window)))
        if not asked:
            continue
        tracer = _traced(config, recording, [q for _, q in asked])
        for change, question in asked:
            found = _answer(tracer, config, question).text()
            change.explain = f"{side}: " + found.replace("\n", "\n   ")

