"""``rillet replay``, ``rillet diff``, ``rillet explain``, ``rillet recording info`` and
``rillet record import``: what works on recordings.

Exit codes of replay and diff: 0 fine (diff: within the policy), 1 policy
violated, 2 a config or recording error, 3 non-determinism (``--check``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from streams import ConfigError

from ._recording import (
    CONN,
    GAP,
    KIND_NAMES,
    MSG,
    RecordingError,
    RecordingReader,
    import_jsonl,
    parse_duration,
    recording_files,
)

__all__ = ["diff", "explain", "record_import", "record_running", "recording_cut", "recording_info",
           "recording_merge", "replay", "resend"]

OK, VIOLATED, ERROR, NONDETERMINISTIC = 0, 1, 2, 3


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def recording_info(args: argparse.Namespace) -> int:
    try:
        files = recording_files(args.recording)
        total_bytes = messages = events = gaps = 0
        counts: dict[str, int] = {}
        first = last = None
        conns: set[int] = set()
        live_sinks: set[str] | None = set()  # None: every sink's deliveries
        from ._codec import ProtocolError, decode_message

        for path in files:
            reader = RecordingReader(path)
            total_bytes += path.stat().st_size
            verified = reader.verify()
            status = {True: "sha256 ok", False: "SHA256 MISMATCH",
                      None: "no footer (writer stopped early; blocks checked by CRC)"}[verified]
            header = reader.header
            if header.get("alerts"):
                recorded = header.get("alert_sinks")
                live_sinks = None if recorded is None or live_sinks is None else \
                    live_sinks | set(recorded)
            print(f"{path}: {header.get('format')} rillet {header.get('rillet_version')}"
                  f", {path.stat().st_size} bytes, "
                  f"{len(reader.footer['blocks']) if reader.footer else '?'} blocks, {status}"
                  + (f", note: {reader.header['note']}" if reader.header.get("note") else ""))
            for frame in reader.frames():
                name = KIND_NAMES[frame.kind]
                counts[name] = counts.get(name, 0) + 1
                if frame.kind == MSG:
                    messages += 1
                    if frame.conn:  # 0: UDP, no connection
                        conns.add(frame.conn)
                    with contextlib.suppress(ProtocolError):
                        events += len(decode_message(frame.data, 0).events)
                    t = frame.t_us / 1e6
                    first = t if first is None else first
                    last = t
                elif frame.kind == GAP:
                    gaps += frame.n
                elif frame.kind == CONN:
                    conns.add(frame.conn)
            if reader.torn:
                print(f"{path}: the last block was torn and is ignored")
    except RecordingError as error:
        print(f"rillet recording info: {error}", file=sys.stderr)
        return ERROR
    span = (last - first) if first is not None and last is not None else 0.0
    print(f"requests {messages}, events {events}, from {_when(first)} to {_when(last)} "
          f"({span:.1f} s), connections {len(conns)}, gaps {gaps} requests dropped")
    print("frames: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if live_sinks != set():
        print(f"live alerts {counts.get('alert', 0)} (what the sinks received, for 'rillet "
              f"replay --check-live'), of "
              f"{'every sink' if live_sinks is None else ', '.join(sorted(live_sinks))}")
    if events:
        print(f"size: {total_bytes} bytes, {total_bytes / events:.1f} bytes per event "
              f"(= MB per million events)")
    return OK


def recording_cut(args: argparse.Namespace) -> int:
    from ._recording import cut

    try:
        start = None if args.start is None else _time_arg(args.start, "--from")
        end = None if args.end is None else _time_arg(args.end, "--to")
        count = cut(args.recording, args.output, start=start, end=end)
    except (RecordingError, OSError, ValueError) as error:
        print(f"rillet recording cut: {error}", file=sys.stderr)
        return ERROR
    print(f"rillet recording cut: wrote {count} requests to {args.output}")
    return OK


def recording_merge(args: argparse.Namespace) -> int:
    from ._recording import merge

    try:
        count = merge(args.recordings, args.output)
    except (RecordingError, OSError) as error:
        print(f"rillet recording merge: {error}", file=sys.stderr)
        return ERROR
    print(f"rillet recording merge: wrote {count} requests to {args.output}")
    return OK


def _time_arg(text: str, option: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option} {text!r}: give Unix seconds or an ISO time such as "
                         f"2026-12-01T03:14:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def record_running(args: argparse.Namespace) -> int:
    """Ask a running 'rillet run' (found through its pid file) to record for a while."""
    import os
    import signal

    from ._cli import default_pid_file
    from ._recording import Sampler, request_path

    pid_file = args.pid_file or str(default_pid_file())
    try:
        duration = parse_duration(args.duration, "--duration")
        if args.sample:
            Sampler.parse(args.sample)
        pid = int(Path(pid_file).read_text().strip())
        directory = Path(args.output).resolve()
        request_path(pid_file).write_text(json.dumps(
            {"directory": str(directory), "duration": duration, "sample": args.sample}))
        os.kill(pid, signal.SIGUSR1)
    except (OSError, ValueError) as error:
        print(f"rillet record running: {error} (is 'rillet run' running with the pid file "
              f"{pid_file}?)", file=sys.stderr)
        return ERROR
    deadline = time.monotonic() + 10
    while not (directory.is_dir() and any(directory.glob("*.rrec"))):
        if time.monotonic() > deadline:
            print(f"rillet record running: process {pid} did not start recording into "
                  f"{directory}; its log says why", file=sys.stderr)
            return ERROR
        time.sleep(0.05)
    print(f"rillet record running: process {pid} records into {directory} for "
          f"{duration:g} s")
    return OK


def record_remote(args: argparse.Namespace) -> int:
    """Record a running rillet through its SSE server's /recording stream."""
    from ._tap import record_remote as follow

    try:
        duration = parse_duration(args.duration, "--duration")
        writer = follow(args.server, args.output, duration=duration, token=args.token,
                        started=lambda: print(f"rillet record remote: recording {args.server} "
                                              f"into {args.output} for {duration:g} s",
                                              file=sys.stderr, flush=True))
    except (OSError, ValueError) as error:
        print(f"rillet record remote: {error}", file=sys.stderr)
        return ERROR
    print(f"rillet record remote: wrote {writer.messages} requests to {args.output}" +
          (f"; the server dropped {writer.gaps} it could not send in time (GAP frames)"
           if writer.gaps else ""))
    return OK


def record_import(args: argparse.Namespace) -> int:
    source = args.events
    try:
        if source == "-":
            count = import_jsonl(sys.stdin, args.output, source="stdin")
        else:
            with open(source, encoding="utf-8") as lines:
                count = import_jsonl(lines, args.output, source=source)
    except (RecordingError, OSError) as error:
        print(f"rillet record import: {error}", file=sys.stderr)
        return ERROR
    print(f"rillet record import: wrote {count} requests to {args.output}")
    return OK


def _replay(config: str, args: argparse.Namespace, checkpoints: Any = None,
            instrument: Any = None) -> Any:
    from ._cli_run import tune_garbage_collector
    from ._replay import replay as run_replay

    tune_garbage_collector()  # as rillet run does: decoding allocates an event per event
    span = _span(args)
    return run_replay(config, args.recording, fidelity=args.fidelity, start=span["start"],
                      end=span["end"], checkpoints=checkpoints, instrument=instrument)


def _span(args: argparse.Namespace) -> dict[str, float | None]:
    """--from and --to as replay's start and end."""
    return {"start": None if args.start is None else _time_arg(args.start, "--from"),
            "end": None if args.end is None else _time_arg(args.end, "--to")}


def _replay_all(configs: list[str], args: argparse.Namespace) -> list[Any]:
    """Replay each config, in parallel processes when there is more than one core."""
    import os

    if (os.cpu_count() or 1) < 2:
        return [_replay(config, args) for config in configs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ._replay import replay_portable

    # spawn: a fresh interpreter per worker (forking a process that holds the
    # recorder's or trio's threads is unsafe); it inherits PYTHONHASHSEED.
    with ProcessPoolExecutor(min(len(configs), os.cpu_count() or 1),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        span = _span(args)
        futures = [pool.submit(replay_portable, config, args.recording, args.fidelity, **span)
                   for config in configs]
        return [future.result() for future in futures]


def _errors() -> tuple[type[BaseException], ...]:
    from ._checkpoint import CheckpointError

    return (ConfigError, RecordingError, CheckpointError, OSError, ValueError)


def resend(args: argparse.Namespace) -> int:
    """``rillet replay --send-to HOST:PORT``: send the recorded requests to a server, over
    one TCP connection, at ``--speed`` times the recorded pace (0: at once)."""
    import socket

    from . import _proto
    from ._codec import FrameDecoder, frame

    host, _, port = args.send_to.rpartition(":")
    if not host or not port.isdigit():
        print(f"rillet replay: --send-to {args.send_to!r}: give HOST:PORT, e.g. "
              f"127.0.0.1:5555",
              file=sys.stderr)
        return ERROR
    sent = failed = 0
    try:
        files = recording_files(args.recording)
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            decoder = FrameDecoder()
            first: float | None = None
            started = time.monotonic()
            for path in files:
                for recorded in RecordingReader(path).frames():
                    if recorded.kind != MSG:
                        continue
                    t = recorded.t_us / 1e6
                    first = t if first is None else first
                    if args.speed > 0:
                        wait = (t - first) / args.speed - (time.monotonic() - started)
                        if wait > 0:
                            time.sleep(wait)
                    sock.sendall(frame(recorded.data))
                    reply = None
                    while reply is None:
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError("the server closed the connection")
                        decoder.feed(data)
                        reply = decoder.next_frame()
                    sent += 1
                    if not _proto.Msg.FromString(reply).ok:
                        failed += 1
    except (RecordingError, OSError) as error:
        print(f"rillet replay: {error} (after {sent} requests)", file=sys.stderr)
        return ERROR
    print(f"rillet replay: sent {sent} requests to {args.send_to}; {failed} answered with an "
          f"error", file=sys.stderr)
    return OK if not failed else VIOLATED


def replay(args: argparse.Namespace) -> int:
    if args.send_to:
        return resend(args)
    if not args.config:
        print("rillet replay: give a config to replay through (or --send-to HOST:PORT to "
              "send the recording to a server)", file=sys.stderr)
        return ERROR
    if getattr(args, "check_live", False):
        others = [option for option, given in (("--alerts", args.alerts), ("--check", args.check),
                                               ("--counts", args.counts),
                                               ("--checkpoints", args.checkpoints)) if given]
        if others:
            print(f"rillet replay --check-live: leave out {', '.join(others)}: it prints the "
                  f"comparison only (run 'rillet replay' without --check-live for those)",
                  file=sys.stderr)
            return ERROR
        return check_live(args)
    try:
        checkpoints = None
        if getattr(args, "checkpoints", None):
            from ._checkpoint import CheckpointWriter

            checkpoints = CheckpointWriter(
                args.checkpoints, parse_duration(args.checkpoint_every, "--checkpoint-every"))
        if getattr(args, "counts", False):
            from ._counters import StreamCounters

            loaded: list[Any] = []
            with StreamCounters() as counters:
                result = _replay(args.config, args, checkpoints,
                                 lambda runtime, _sinks: loaded.append(runtime.config))
            print(counters.text(loaded[0].streams if loaded else []), file=sys.stderr)
        else:
            result = _replay(args.config, args, checkpoints)
        if checkpoints is not None:
            print(f"rillet replay: {checkpoints.taken} checkpoints in {args.checkpoints}" +
                  (f" ({checkpoints.failed} postponed a block)" if checkpoints.failed else ""),
                  file=sys.stderr)
        if args.check:
            again = _replay(args.config, args)
            if again.digest != result.digest:
                print(f"rillet replay: NOT DETERMINISTIC: two replays gave alert logs "
                      f"{result.digest[:16]} and {again.digest[:16]}; look for time.time, "
                      f"random or set iteration in the config", file=sys.stderr)
                return NONDETERMINISTIC
    except _errors() as error:
        print(f"rillet replay: {error}", file=sys.stderr)
        return ERROR
    if args.alerts:
        Path(args.alerts).write_text(result.jsonl())
    else:
        for line in result.lines():
            print(line)
    print(result.summary(), file=sys.stderr)
    return OK


def _git_config(spec: str, config: str) -> str:
    """``--against git:REV``: the config file as it is at REV, in a temporary file next
    to it (so modules it imports from its directory still load)."""
    import subprocess

    rev = spec.removeprefix("git:")
    path = Path(config).resolve()
    top = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, check=False)
    if top.returncode:
        raise ValueError(f"--against {spec}: {path} is not in a git repository")
    relative = path.relative_to(Path(top.stdout.strip()))
    shown = subprocess.run(["git", "-C", top.stdout.strip(), "show", f"{rev}:{relative}"],
                           capture_output=True, text=True, check=False)
    if shown.returncode:
        raise ValueError(f"--against {spec}: {shown.stderr.strip()}")
    out = path.with_name(f".{path.stem}@{rev.replace('/', '_')}.py")
    out.write_text(shown.stdout)
    return str(out)


def diff(args: argparse.Namespace) -> int:
    from ._diff import Policy, diff_alerts

    made: Path | None = None  # the config as it is at --against's revision
    try:
        if args.against:
            if args.b is not None:
                raise ValueError("rillet diff CONFIG --against git:REV takes one config")
            a_path, b_path = _git_config(args.against, args.a), args.a
            made = Path(a_path)
        else:
            if args.b is None:
                raise ValueError("rillet diff A.py B.py --recording R (or A.py --against "
                                 "git:REV)")
            a_path, b_path = args.a, args.b
        policy = Policy.load(args.policy) if args.policy else Policy()
        tolerance = parse_duration(args.tolerance, "--tolerance")
        warmup = parse_duration(args.warmup, "--warmup")
        key = tuple(k.strip() for k in args.key.split(",") if k.strip())
        if not key:
            raise ValueError(f"--key {args.key!r}: give event fields, e.g. host,service,state")
        runs = _replay_all([a_path, b_path] + ([a_path] if args.check else []), args)
        a, b = runs[0], runs[1]
        if args.check:
            again = runs[2]
            if again.digest != a.digest:
                print(f"rillet diff: NOT DETERMINISTIC: A replayed twice gave alert logs "
                      f"{a.digest[:16]} and {again.digest[:16]}", file=sys.stderr)
                return NONDETERMINISTIC
        report = diff_alerts(a, b, tolerance=tolerance, key_fields=key, warmup=warmup)
        if args.explain:
            from ._explain import explain_changes

            explain_changes(report, b_path, a_path, args.recording)
    except _errors() as error:
        print(f"rillet diff: {error}", file=sys.stderr)
        return ERROR
    finally:
        if made is not None:
            made.unlink(missing_ok=True)
    report.policy = policy.source
    report.violations = policy.violations(report.changes)
    print(report.text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2, sort_keys=True,
                                              default=repr) + "\n")
    return VIOLATED if report.violations else OK


def explain(args: argparse.Namespace) -> int:
    from ._explain import explain_alert, why_not

    try:
        if args.why_not:
            match = dict(_pair(text) for text in args.why_not)
            at = _time_arg(args.at, "--at") if args.at is not None else None
            window = parse_duration(args.window, "--window")
            print(why_not(args.config, args.recording, match, at=at, window=window,
                          checkpoints=args.checkpoints).text())
        elif getattr(args, "live", False):
            if args.alert is None:
                raise ValueError("rillet explain --live: give --alert ID, a live alert's id")
            text, found = _explain_live(args)
            print(text)
            if not found:
                return VIOLATED
        else:
            if args.alert is None:
                raise ValueError("rillet explain: give --alert SEQ (from rillet replay's log) "
                                 "or --why-not field=value ...")
            print(explain_alert(args.config, args.recording, args.alert,
                                checkpoints=args.checkpoints))
    except _errors() as error:
        print(f"rillet explain: {error}", file=sys.stderr)
        return ERROR
    return OK


def _checked(args: argparse.Namespace) -> Any:
    """The live alert log of ``args.recording`` against a replay of ``args.config``."""
    from ._livelog import check_live as compare

    if args.start is not None or args.end is not None:
        raise ValueError("--check-live compares the whole recording: leave out --from and "
                         "--to ('rillet recording cut' a part, then check that)")
    tolerance = parse_duration(getattr(args, "tolerance", "1s"), "--tolerance")
    return compare(args.config, args.recording, tolerance=tolerance, fidelity=args.fidelity,
                   replayed=lambda config, recording, fidelity: _replay(config, args))


def check_live(args: argparse.Namespace) -> int:
    """``rillet replay --check-live``: 0 when the replay sends exactly what the sinks
    received live, 1 when not (the differences are listed), 2 when it cannot tell."""
    try:
        check = _checked(args)
    except _errors() as error:
        print(f"rillet replay --check-live: {error}", file=sys.stderr)
        return ERROR
    print(check.text())
    return OK if check.ok else VIOLATED


def _explain_live(args: argparse.Namespace) -> tuple[str, bool]:
    """``rillet explain --alert ID --live``: the live alert, its replayed counterpart
    and why that one fired; False when the replay has no counterpart."""
    from ._explain import explain_alert
    from ._livelog import _describe, _origin, _when, live_alert

    alert, replayed = live_alert(_checked(args), args.alert)
    head = (f"LIVE ALERT #{alert.id} {_describe(alert.sink, alert.event)} at {_when(alert.t)} "
            f"<- {_origin(alert.ordinal)}")
    if replayed is None:
        return (f"{head}\n  the replay does not send it: 'rillet replay --check-live' lists "
                f"the differences"), False
    text = explain_alert(args.config, args.recording, replayed.seq,
                         checkpoints=args.checkpoints)
    return f"{head}; replayed as seq {replayed.seq}\n{text}", True


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--why-not {text!r}: give field=value, e.g. host=web-42")
    return name, value
