"""What recording the live alert log costs per alert, side by side in one run.

    .venv/bin/python tests/benchmarks/bench_livelog.py [--alerts 200000] [--rounds 5]

A sink (a shared stream that counts) is called ``--alerts`` times, one
request recorded before every ten calls, in three ways, rounds alternating:

- ``plain``: the sink as a config without ``--record`` has it;
- ``requests``: recording the requests only (``--record-alerts none``);
- ``alerts``: ``rillet run --record``'s capture: the sink reports each event to
  the recorder, which the writer thread turns into an ALERT frame.

It prints the event loop's time per call (what ingest pays) and the time
until the writer thread has written everything (what the recorder's thread
pays on top, on another core when there is one).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from streams import Config, Event, Runtime, Stream, VirtualClock
from streams._config import declaring
from transport._codec import encode_request
from transport._livelog import LiveSinks
from transport._recording import WireRecorder


class Counter(Stream):
    shared = True
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0
        self._set_children(())

    def __call__(self, event: Any) -> None:
        self.n += 1


def one_round(mode: str, alerts: int, tmp: Path) -> tuple[float, float]:
    runtime = Runtime(VirtualClock(1_800_000_000))
    hook = LiveSinks(runtime)
    with runtime, declaring(Config()):
        sink = Counter()
        if mode == "alerts":
            hook(sink)
    recorder = None
    if mode != "plain":
        recorder = WireRecorder(tmp / mode, alerts=mode == "alerts", config_sha256="0" * 64)
        runtime.recorder = recorder
    events = [Event(host=f"web-{i % 100}", service="disk", metric=float(i), time=1.8e9)
              for i in range(1000)]
    payload = encode_request(events[:10], framed=False)
    call = sink.__call__
    started = time.perf_counter()
    for i in range(alerts):
        if recorder is not None and i % 10 == 0:
            recorder.message(payload, 1.8e9, 1)
        call(events[i % 1000])
    loop = time.perf_counter() - started
    if recorder is not None:
        recorder.close()
    total = time.perf_counter() - started
    assert sink.n == alerts
    return loop, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    modes = ("plain", "requests", "alerts")
    found: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for number in range(args.rounds):
        for mode in modes:
            with tempfile.TemporaryDirectory() as tmp:
                found[mode].append(one_round(mode, args.alerts, Path(tmp, str(number))))
    print(f"{args.alerts} sink calls, a recorded request every 10, {args.rounds} rounds "
          f"(medians):")
    for mode in modes:
        loop = statistics.median(f[0] for f in found[mode]) / args.alerts * 1e9
        total = statistics.median(f[1] for f in found[mode]) / args.alerts * 1e9
        print(f"  {mode:9s} event loop {loop:7.0f} ns per call; until written {total:7.0f} ns")


if __name__ == "__main__":
    main()
