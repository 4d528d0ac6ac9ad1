"""What the sinks of a recorded ``rillet run`` received, and whether a replay agrees.

``rillet run --record DIR`` installs :class:`LiveSinks` as the runtime's
service hook before the config loads: each sink the config declares (a
service that is a stream, as a replay captures them) tells the recorder
every event it receives, named as a replay names it. The recorder writes
one ALERT frame per event (see ``transport/_recording.py``); the writer
thread, not the event loop, works out its lineage from the frames before it,
so a request costs nothing more than recording it did.

:func:`check_live` replays the recording through the config and compares the
replay's alert log with the live one (``rillet replay --check-live``);
:func:`live_alert` finds the replayed counterpart of a live alert
(``rillet explain --alert ID --live``).
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams import Stream

from ._recording import (
    ALERT,
    BY_LAST_REQUEST,
    BY_TIMER,
    GAP,
    MARK,
    MSG,
    RecordingError,
    RecordingReader,
    alert_fields,
    config_sha256,
    recording_files,
)

__all__ = ["LiveAlert", "LiveCheck", "LiveSinks", "check_live", "live_alert", "note_config",
           "read_live", "sink_name", "with_call"]

#: A live alert whose request is not in the recording (sampled out, lost in a GAP).
UNRECORDED = "unrecorded"


def sink_name(declared: Any, counts: dict[str, int]) -> str | None:
    """The name a sink gets in alert logs: its type, numbered from its second
    (``slack#2``), in the order the config declares them; None: not a sink."""
    if not isinstance(declared, Stream):
        return None
    kind = type(declared).__name__
    counts[kind] = counts.get(kind, 0) + 1
    return kind if counts[kind] == 1 else f"{kind}#{counts[kind]}"


def with_call(declared: Any, classes: dict[type, type],
              make: Callable[[type], Callable[[Any, Any], None]]) -> None:
    """Give ``declared`` a subclass of its class whose ``__call__`` is ``make(cls)``: before
    any stream binds its ``__call__``, so every event sent to it goes through it."""
    cls = type(declared)
    if cls not in classes:
        call = make(cls)
        call.__name__ = "__call__"  # a bound ``sink.__call__`` pickles by this name
        classes[cls] = type(cls.__name__, (cls,), {"__slots__": (), "__call__": call,
                                                   "__module__": cls.__module__})
        from ._counters import adopt

        adopt(classes[cls])
    declared.__class__ = classes[cls]


class LiveSinks:
    """``rillet run --record``'s service hook: every sink reports what it receives to
    ``runtime.recorder`` (when there is one), before doing its work.

    What a sink's own children do (an ``async_queue``'s, when it drains) is not
    reported: a replay captures the sink, so they never run there either.
    ``only`` (``--record-alerts``: names separated by commas) reports those
    sinks alone; the others are left as they are, at no cost.
    """

    def __init__(self, runtime: Any, only: str | None = None) -> None:
        self.runtime = runtime
        self.only = None if only is None else sorted(
            {name.strip() for name in only.split(",") if name.strip()})
        self.names: dict[int, str] = {}
        self._counts: dict[str, int] = {}
        self._declaring: Any = None
        self._classes: dict[type, type] = {}
        self.quiet = 0

    def __call__(self, declared: Any) -> None:
        declaring = self.runtime.declaring
        if declaring is not self._declaring:  # a reload: numbered afresh, as its replay would
            self._declaring, self._counts = declaring, {}
        name = sink_name(declared, self._counts)
        if name is None:
            return
        self.names[id(declared)] = name
        if self.only is not None and name not in self.only:
            return
        with_call(declared, self._classes, self._reporting)
        if getattr(declared, "children", None):
            declared._out = self._quietly(declared._out)

    def check_names(self) -> None:
        """Raise ValueError when ``only`` names a sink the config does not declare."""
        known = list(dict.fromkeys(self.names.values()))
        unknown = [name for name in self.only or () if name not in known]
        if unknown or self.only == []:
            raise ValueError(
                f"--record-alerts {','.join(self.only or [])!r}: the config declares no sink "
                f"named {', '.join(unknown) or 'at all'}; its sinks, as a replay names them: "
                f"{', '.join(known) or 'none'} (or give all, or none)")

    def _reporting(self, cls: type) -> Callable[[Any, Any], None]:
        original = cls.__call__
        hook, runtime, names = self, self.runtime, self.names

        def call(sink: Any, event: Any) -> None:
            recorder = runtime.recorder
            if recorder is not None and not hook.quiet:
                name, now = names[id(sink)], runtime.now()
                if type(event) is list or type(event) is tuple:
                    for one in event:
                        recorder.alert(now, name, one)
                else:
                    recorder.alert(now, name, event)
            original(sink, event)

        return call

    def _quietly(self, out: Callable[[Any], Any]) -> Callable[[Any], None]:
        hook = self

        def quiet(event: Any) -> None:
            hook.quiet += 1
            try:
                out(event)
            finally:
                hook.quiet -= 1

        return quiet


def note_config(runtime: Any, path: str | Path) -> None:
    """Tell the recorders which config runs now (``rillet run`` after a reload)."""
    from ._tap import Tee

    recorder = runtime.recorder
    digest = config_sha256(path)
    for one in recorder.recorders if isinstance(recorder, Tee) else [recorder]:
        if hasattr(one, "config_sha256"):
            one.config_sha256 = digest


# Reading the live alert log ---------------------------------------------------------


@dataclass(frozen=True)
class LiveAlert:
    """One event a live sink received: ``ordinal`` is the number of the MSG frame
    (counted from 0 over the recording) being streamed, None for a timer's,
    :data:`UNRECORDED` when that request is not in the recording."""

    id: int
    t: float
    sink: str
    event: dict[str, Any]
    ordinal: int | str | None
    config: str


@dataclass
class LiveLog:
    """The live alerts of a recording, and what decides whether a replay can match them."""

    alerts: list[LiveAlert] = field(default_factory=list)
    recorded: bool = False  # a file says its sinks were recorded
    sampled: str | None = None
    gaps: int = 0
    reloads: list[str] = field(default_factory=list)
    configs: set[str] = field(default_factory=set)
    #: The sinks whose deliveries were recorded (``--record-alerts``); None: all.
    sinks: set[str] | None = None

    def missing_ids(self) -> int:
        """Alerts the full writer queue dropped (holes in the ids of each run)."""
        missing, previous = 0, -1
        for alert in self.alerts:
            if alert.id > previous + 1:
                missing += alert.id - previous - 1
            previous = alert.id
        return missing


def read_live(recording: str | Path) -> LiveLog:
    """The ALERT frames of ``recording`` with their lineage resolved to MSG frame numbers."""
    log = LiveLog()
    ordinal = 0
    every_sink = False
    for path in recording_files(recording):
        reader = RecordingReader(path)
        header = reader.header
        log.sampled = log.sampled or header.get("sample")
        if header.get("alerts"):
            log.recorded = True
            if header.get("config_sha256"):
                log.configs.add(header["config_sha256"])
            if header.get("alert_sinks") is None:
                every_sink = True
            else:
                log.sinks = (log.sinks or set()) | set(header["alert_sinks"])
        last = None  # an ALERT's lineage names the last MSG frame of its own file
        for frame in reader.frames():
            kind = frame.kind
            if kind == MSG:
                last = ordinal
                ordinal += 1
            elif kind == ALERT:
                data = json.loads(frame.data)
                lineage: int | str | None = None
                if frame.n != BY_TIMER:
                    lineage = last if frame.n == BY_LAST_REQUEST and last is not None \
                        else UNRECORDED
                log.alerts.append(LiveAlert(frame.conn, frame.t_us / 1e6, data["sink"],
                                            data["event"], lineage, data["config_sha256"]))
                log.configs.add(data["config_sha256"])
            elif kind == GAP:
                log.gaps += frame.n
            elif kind == MARK and frame.data.startswith(b"reload "):
                log.reloads.append(f"{_when(frame.t_us / 1e6)} ({frame.data.decode()})")
    if every_sink:
        log.sinks = None
    return log


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


def _usable(log: LiveLog, recording: str | Path, config: str | Path, digest: str) -> None:
    """Raise RecordingError when no replay of ``config`` could match ``log``, saying why."""
    if not log.recorded:
        raise RecordingError(
            f"{recording} holds no live alerts: only 'rillet run --record' records what the "
            f"sinks receive (not with --record-alerts none; 'rillet record running' and "
            f"'record remote', imports, merges and recordings of older rillets do not)")
    if log.sampled:
        raise RecordingError(
            f"{recording} is sampled ({log.sampled}): the live alerts of the keys it left out "
            f"cannot replay; check a recording made without --record-sample")
    if log.reloads:
        raise RecordingError(
            f"the config was reloaded during {recording}, at {', '.join(log.reloads)}: a replay "
            f"runs one config; 'rillet recording cut' the part after the last reload")
    others = sorted(log.configs - {digest})
    if others:
        raise RecordingError(
            f"{recording} was recorded running config sha256:"
            f"{', sha256:'.join(d[:16] for d in others)}, not {config} (sha256:{digest[:16]}): "
            f"check the config that ran (its revision: 'git show REV:{Path(config).name}'); "
            f"to see what a change does, 'rillet diff OLD.py {config} --recording {recording}'")
    lost = log.missing_ids()
    if log.gaps or lost:
        raise RecordingError(
            f"{recording} lost {log.gaps} requests and {lost} live alerts to a full writer "
            f"queue (GAP frames, holes in the alert ids): a replay cannot match what the "
            f"sinks received; check a recording without gaps ('rillet recording info')")


# Comparing --------------------------------------------------------------------------


def _without_time(event: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in event.items() if k != "time"}, sort_keys=True,
                      default=repr)


def _times_apart(a: dict[str, Any], b: dict[str, Any]) -> float:
    """How far apart two events' ``time`` fields are (expiry and ``rate`` stamp the clock)."""
    ta, tb = a.get("time"), b.get("time")
    if isinstance(ta, (int, float)) and isinstance(tb, (int, float)):
        return abs(ta - tb)
    return 0.0 if ta == tb else float("inf")


@dataclass
class LiveCheck:
    """The live alert log against a replay's: pairs, and what only one side has."""

    recording: str
    config: str
    config_sha256: str
    tolerance: float
    live: list[LiveAlert]
    replayed: list[Any]  # the replay's Alerts (of the recorded sinks); live is renumbered
    sinks: set[str] | None = None  # None: every sink's deliveries were recorded
    pairs: list[tuple[LiveAlert, Any]] = field(default_factory=list)
    live_only: list[LiveAlert] = field(default_factory=list)
    replay_only: list[Any] = field(default_factory=list)
    apart: list[tuple[LiveAlert, Any, float]] = field(default_factory=list)
    largest: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.live_only or self.replay_only or self.apart)

    def text(self) -> str:
        lines = [f"check-live: {self.recording} through {self.config} "
                 f"(config sha256:{self.config_sha256[:16]}, as recorded): "
                 f"{len(self.live)} live alerts, {len(self.replayed)} replayed"
                 f"{'' if self.sinks is None else ' (sinks ' + ', '.join(sorted(self.sinks))}"
                 f"{'' if self.sinks is None else ', as recorded)'}, "
                 f"{len(self.pairs) - len(self.apart)} the same; largest time difference "
                 f"{self.largest:.6f} s (tolerance {self.tolerance:g} s)"]
        for alert in self.live_only:
            lines.append(f"LIVE ONLY    #{alert.id} {_describe(alert.sink, alert.event)} at "
                         f"{_when(alert.t)} <- {_origin(alert.ordinal)}: the sink got it live, "
                         f"the replay does not send it")
        for replayed in self.replay_only:
            lines.append(f"REPLAY ONLY  seq {replayed.seq} "
                         f"{_describe(replayed.sink, replayed.event)} at {_when(replayed.t)} "
                         f"<- {_origin(replayed.input)}: the replay "
                         f"sends it, the sink did not get it live")
        for alert, replayed, apart in self.apart:
            lines.append(f"TIME         #{alert.id} {_describe(alert.sink, alert.event)}: live "
                         f"{_when(alert.t)}, replay {_when(replayed.t)} (seq {replayed.seq}), "
                         f"{apart:.6f} s apart")
        if self.ok:
            lines.append("check-live: the replay sends exactly what the sinks received live")
        else:
            lines.append(f"check-live: MISMATCH: {len(self.live_only)} live only, "
                         f"{len(self.replay_only)} replay only, {len(self.apart)} beyond the "
                         f"tolerance")
        return "\n".join(lines)


def _describe(sink: str, event: Any) -> str:
    fields = event if isinstance(event, dict) else alert_fields(event)
    shown = " ".join(f"{k}={fields[k]!r}" for k in ("host", "service", "state", "metric")
                     if fields.get(k) is not None)
    return f"{sink} {shown}"


def _origin(lineage: int | str | None) -> str:
    if lineage is None:
        return "a timer"
    if lineage == UNRECORDED:
        return "a request not in the recording"
    return f"input #{lineage}"


def check_live(config: str | Path, recording: str | Path, *, tolerance: float = 1.0,
               fidelity: str | None = None,
               replayed: Callable[..., Any] | None = None) -> LiveCheck:
    """Replay ``recording`` through ``config`` and compare with what its sinks received
    live. Raises RecordingError when the recording cannot be checked (no live alerts,
    another config, a reload, gaps, sampling)."""
    from ._replay import replay

    digest = config_sha256(config)
    log = read_live(recording)
    _usable(log, recording, config, digest)
    result = (replayed or replay)(config, recording, fidelity=fidelity)
    # Replay numbers the decodable requests; the live lineage, every MSG frame.
    skipped = sorted(result.undecodable_at)
    live = [_renumbered(alert, skipped) for alert in log.alerts]
    sinks = log.sinks
    replayed_alerts = [r for r in result.alerts if sinks is None or r.sink in sinks]
    check = LiveCheck(str(recording), str(config), digest, tolerance, live, replayed_alerts,
                      sinks=sinks)
    keys_live = [(a.sink, a.ordinal, _without_time(a.event)) for a in live]
    keys_replayed = [(r.sink, r.input, _without_time(alert_fields(r.event)))
                     for r in replayed_alerts]
    matcher = difflib.SequenceMatcher(None, keys_live, keys_replayed, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for alert, again in zip(live[i1:i2], replayed_alerts[j1:j2], strict=True):
                check.pairs.append((alert, again))
                apart = max(abs(alert.t - again.t),
                            _times_apart(alert.event, alert_fields(again.event)))
                check.largest = max(check.largest, apart)
                if apart > tolerance:
                    check.apart.append((alert, again, apart))
        else:
            check.live_only += live[i1:i2]
            check.replay_only += replayed_alerts[j1:j2]
    return check


def _renumbered(alert: LiveAlert, skipped: list[int]) -> LiveAlert:
    if not isinstance(alert.ordinal, int) or not skipped:
        return alert
    import bisect

    before = bisect.bisect_left(skipped, alert.ordinal)
    if before < len(skipped) and skipped[before] == alert.ordinal:  # cannot have streamed
        return LiveAlert(alert.id, alert.t, alert.sink, alert.event, UNRECORDED, alert.config)
    return LiveAlert(alert.id, alert.t, alert.sink, alert.event, alert.ordinal - before,
                     alert.config)


def live_alert(check: LiveCheck, alert_id: int) -> tuple[LiveAlert, Any | None]:
    """The live alert ``alert_id`` and its replayed counterpart (None: the replay has none)."""
    for alert, replayed in check.pairs:
        if alert.id == alert_id:
            return alert, replayed
    for alert in check.live_only:
        if alert.id == alert_id:
            return alert, None
    ids = [a.id for a in check.live]
    span = f"{min(ids)}..{max(ids)}" if ids else "none"
    raise ValueError(f"--alert {alert_id} --live: {check.recording} has no live alert "
                     f"{alert_id} (its ids: {span}; 'rillet replay --check-live' lists them)")
