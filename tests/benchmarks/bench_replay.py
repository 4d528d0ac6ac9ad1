"""Recording size, replay speed and diff time over a synthetic production day.

    .venv/bin/python tests/benchmarks/bench_replay.py [--events N] [--per-request K]
        [--before REV [--rounds R] | --breakdown]

Traffic like REPLAY.md §5.2 measured: 2,000 hosts with 37-character names ×
20 services, a one-decimal double metric, a state, a ttl and one tag, K
events per request (default 10), one request every 10 ms of server time and
a timer tick every second. The recording is written the way ``rillet run
--record``'s writer thread writes it. Then a typical config (threshold
alerts per host and service with ``changed_state`` and ``throttle``, a
``stable`` health check, the index with expiry) is replayed, and ``rillet
diff`` compares it with a copy whose threshold is one point higher. Targets:
<= 18 MB per million events, >= 200k events/s replayed per core. Last, the
replay is run again storing checkpoints every minute of recorded time, and
``explain --alert`` and ``--why-not`` near the end of the recording are timed
with and without them, side by side.

With ``--before REV`` (e.g. ``main``) it only measures replay speed, of this
checkout and of ``git archive REV`` side by side: each round replays the same
recording through both, each in a fresh process, alternating (drift on a
shared VM hits both alike), and the medians and their ratio are printed.
With ``--breakdown`` it only times the typical config's replay by part
(expiry sweeps, their tombstones, all timers).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streams import Event, Runtime, VirtualClock
from transport._cli_run import tune_garbage_collector
from transport._codec import decode_message, encode_request
from transport._recording import MSG, RecordingReader, RecordingWriter
from transport._replay import _SinkCapture, replay

CONFIG = """
from streams import *
from transport import pagerduty, slack

page = pagerduty(routing_key="0123456789abcdef0123456789abcdef")
chat = slack("https://hooks.slack.invalid/x")
periodically_expire(60)
streams(
    where(lambda e: e.service.startswith("disk"),
          by(["host", "service"],
             where(lambda e: e.metric is not None and e.metric > {limit},
                                      with_({{"state": "critical"}},
                                            changed_state(throttle(5, 3600, page)))))),
    where(lambda e: e.service == "health",
          by(["host"], stable(30, "state", chat))),
    index,
)
"""


def write_recording(path: Path, events: int, per_request: int) -> float:
    rng = random.Random(7)
    hosts = [f"web-{i:04d}.eu-west-1.prod.example.net"[:37] for i in range(2000)]
    services = [f"disk /var/{i}" for i in range(10)] + [f"cpu {i}" for i in range(9)] + \
        ["health"]
    start = 1_800_000_000.0
    writer = RecordingWriter(path, start_us=int(start * 1e6))
    t = start
    encode = 0.0
    for sent in range(0, events, per_request):
        batch = []
        for _ in range(per_request):
            service = rng.choice(services)
            if service == "health":
                batch.append(Event(host=rng.choice(hosts), service=service, time=t,
                                   state=rng.choice(("ok", "ok", "ok", "critical")), ttl=60,
                                   tags=("prod",)))
            else:
                batch.append(Event(host=rng.choice(hosts), service=service, time=t,
                                   metric=round(rng.uniform(50, 99.9), 1), state="ok",
                                   ttl=60, tags=("prod",)))
        started = time.perf_counter()
        payload = encode_request(batch, framed=False)
        encode += time.perf_counter() - started
        writer.message(int(t * 1e6), 1 + sent % 8, payload)
        t += 0.01
        if sent % (per_request * 100) == 0:
            writer.tick(int(t * 1e6))
    writer.close()
    return encode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-request", type=int, default=10)
    parser.add_argument("--before", help="git revision to compare replay speed with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true",
                        help="only time the typical config's replay by part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        recording = directory / "day.rrec"
        if args.breakdown:
            write_recording(recording, args.events, args.per_request)
            (directory / "typical.py").write_text(CONFIG.format(limit=95))
            _breakdown(directory / "typical.py", recording)
            return
        if args.before:
            write_recording(recording, args.events, args.per_request)
            _side_by_side(directory, recording, args.before, args.rounds)
            return
        started = time.perf_counter()
        encode = write_recording(recording, args.events, args.per_request)
        wrote = time.perf_counter() - started
        size = recording.stat().st_size
        print(f"recording: {args.events} events, {args.per_request} per request: {size} bytes "
              f"= {size / args.events:.1f} MB per million events (target <= 18); written in "
              f"{wrote:.1f} s ({encode:.1f} s of it protobuf-encoding the synthetic events)")
        tune_garbage_collector()  # as rillet run, replay and diff do
        a = directory / "a.py"
        b = directory / "b.py"
        a.write_text(CONFIG.format(limit=95))
        b.write_text(CONFIG.format(limit=96))
        cpu = time.process_time()
        started = time.perf_counter()
        result = replay(a, recording)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        print(f"replay: {result.events} events in {elapsed:.2f} s wall, {cpu:.2f} s CPU = "
              f"{result.events / cpu:,.0f} events/s per core (target >= 200,000); "
              f"{len(result.alerts)} alerts")
        print(f"  the server's own work on the same requests (decode, stream; no timers): "
              f"{_direct(a, recording):,.0f} events/s per core")
        bare = directory / "bare.py"
        bare.write_text("from streams import *\nstreams(index)\n")
        cpu = time.process_time()
        bare_result = replay(bare, recording)
        cpu = time.process_time() - cpu
        print(f"replay through streams(index) alone: {bare_result.events / cpu:,.0f} events/s "
              f"per core")
        print(f"  the server's own work on the same requests: "
              f"{_direct(bare, recording):,.0f} events/s per core")
        events = result.events
        _timed_diff(f"rillet diff A B over {events} events", "two replays", a, b, recording)
        _timed_diff(f"rillet diff A A --check over {events} events", "three replays", a, a,
                    recording, "--check")
        _checkpoint_bench(a, recording, directory / "a.ckp", elapsed)


def _checkpoint_bench(config: Path, recording: Path, path: Path, plain: float) -> None:
    """Checkpointing's cost, and explain's time from the nearest checkpoint against
    from the start (both in this process, one after the other)."""
    from transport._checkpoint import CheckpointReader, CheckpointWriter
    from transport._explain import explain_alert, why_not

    writer = CheckpointWriter(path, every=60)
    started = time.perf_counter()
    result = replay(config, recording, checkpoints=writer)
    elapsed = time.perf_counter() - started
    print(f"replay storing a checkpoint every 60 s of recorded time: {elapsed:.2f} s wall "
          f"(plain {plain:.2f} s), {writer.taken} checkpoints, {path.stat().st_size:,} bytes")
    reader = CheckpointReader(path)
    late = [a for a in result.alerts if a.input is not None]
    alert = late[len(late) * 9 // 10]
    event = alert.event
    for label, run in (
            (f"explain --alert {alert.seq}",
             lambda checkpoints: explain_alert(config, recording, alert.seq,
                                               checkpoints=checkpoints)),
            (f"explain --why-not host={event.host} --at {alert.t:.0f} --window 60",
             lambda checkpoints: why_not(config, recording, {"host": event.host}, at=alert.t,
                                         window=60, checkpoints=checkpoints))):
        times = []
        for checkpoints in (None, reader):
            started = time.perf_counter()
            run(checkpoints)
            times.append(time.perf_counter() - started)
        print(f"{label}: {times[0]:.2f} s from the start, {times[1]:.2f} s from the nearest "
              f"checkpoint = {times[0] / times[1]:.1f}x faster")


#: One replay in a fresh process: prints events per CPU second.
_REPLAY_RATE = """
import sys, time
from transport._cli_run import tune_garbage_collector
from transport._replay import replay
tune_garbage_collector()
cpu = time.process_time()
result = replay(sys.argv[1], sys.argv[2])
print(result.events / (time.process_time() - cpu), len(result.alerts))
"""


def _side_by_side(directory: Path, recording: Path, revision: str, rounds: int) -> None:
    from bench_server import ROOT, snapshot

    before = snapshot(revision, directory / "before")
    if before is None:
        sys.exit(f"git cannot give revision {revision!r}")
    configs = {"typical config": directory / "typical.py", "streams(index)": directory / "bare.py"}
    configs["typical config"].write_text(CONFIG.format(limit=95))
    configs["streams(index)"].write_text("from streams import *\nstreams(index)\n")
    trees = {"before": before, "after": ROOT}
    rates: dict[tuple[str, str], list[float]] = {}
    alerts: dict[tuple[str, str], set[str]] = {}
    for _ in range(rounds):
        for name, config in configs.items():
            for tree, path in trees.items():
                env = {**os.environ, "PYTHONPATH": str(path), "PYTHONHASHSEED": "0"}
                env.pop("RILLET_PURE_PYTHON", None)
                done = subprocess.run([sys.executable, "-c", _REPLAY_RATE, str(config),
                                       str(recording)], cwd=path, env=env, check=True,
                                      capture_output=True, text=True)
                rate, count = done.stdout.split()
                rates.setdefault((name, tree), []).append(float(rate))
                alerts.setdefault((name, tree), set()).add(count)
    print(f"replay events/s per core, median of {rounds} alternating rounds "
          f"(before = {revision}, after = this checkout):")
    print("| config | before | after | after / before | alerts before, after |")
    print("|---|---:|---:|---:|---|")
    for name in configs:
        old, new = (statistics.median(rates[name, tree]) for tree in trees)
        print(f"| {name} | {old:,.0f} | {new:,.0f} | {new / old:.2f} | "
              f"{', '.join(sorted(alerts[name, 'before']))}; "
              f"{', '.join(sorted(alerts[name, 'after']))} |")


def _breakdown(config: Path, recording: Path) -> None:
    """Where a replay's time goes: the index's expiry sweeps (judging each key),
    their tombstones through the streams, and every timer run (sweeps,
    tombstones, throttle and stable included); the rest is the requests'
    decoding and streaming. Wall time, one process, timers wrapped."""
    from streams._index import Index, Reaper
    from transport._replay import ReplayClock

    spent = dict.fromkeys(("expiry sweeps", "tombstones", "all timers"), 0.0)
    clock = time.perf_counter

    def timed(part: str, function: Any) -> Any:
        def run(*args: Any) -> Any:
            started = clock()
            try:
                return function(*args)
            finally:
                spent[part] += clock() - started
        return run

    def slices(index: Index, now: float, n: int = 2048) -> Any:
        parts = sweep(index, now, n)
        while (part := timed("expiry sweeps", next)(parts, None)) is not None:
            yield part

    sweep, send, tick = Index.expire_slices, Reaper._send, ReplayClock.tick
    Index.expire_slices = slices  # type: ignore[method-assign,assignment]
    Reaper._send = timed("tombstones", send)  # type: ignore[method-assign]
    ReplayClock.tick = timed("all timers", tick)  # type: ignore[method-assign]
    try:
        tune_garbage_collector()
        started = clock()
        result = replay(config, recording)
        total = clock() - started
    finally:
        Index.expire_slices, Reaper._send, ReplayClock.tick = sweep, send, tick
    print(f"replay of the typical config: {result.events / total:,.0f} events/s wall, "
          f"{total:.2f} s: " + ", ".join(f"{part} {seconds:.2f} s ({seconds / total:.0%})"
                                         for part, seconds in spent.items()))


def _direct(config: Path, recording: Path) -> float:
    """Events per CPU second of what the server does per request with ``config``
    (decode, stream), without the recording and the clock (so without timers):
    what replay adds is the difference."""
    requests = [(f.t_us / 1e6, f.data) for f in RecordingReader(recording).frames()
                if f.kind == MSG]
    runtime = Runtime(VirtualClock(requests[0][0]))
    # Sinks as in a replay, appending and never sending, so that only the
    # replay's own machinery (frames, clock, ticks) differs.
    runtime.service_hook = _SinkCapture(lambda sink, event: None)
    runtime.start(runtime.load(config))
    runtime.service_hook = None
    count = 0
    cpu = time.process_time()
    with runtime:
        for t, data in requests:
            events = decode_message(data, t).events
            count += len(events)
            runtime.stream(events)
    return count / (time.process_time() - cpu)


def _timed_diff(what: str, work: str, a: Path, b: Path, recording: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "transport._cli", "diff", str(a), str(b),
                           "--recording", str(recording), "--no-explain", *extra],
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    summary = [line for line in done.stdout.splitlines() if line.startswith("same ")]
    print(f"{what}: {elapsed:.1f} s wall ({work} and the matching), exit {done.returncode}: "
          f"{summary[0] if summary else done.stderr}")

if __name__ == "__main__":
    main()
