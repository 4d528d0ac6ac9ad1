"""What naming streams by node id costs: the walks at load, reload and report time, and the
hot path they must leave alone, this tree against another revision, side by side.

    .venv/bin/python tests/benchmarks/bench_nodes.py [--rounds 5] [--base main]

Each round runs every measurement once in a fresh process per tree (this one and
``--base``, default where this branch left main), alternating, so both see the same
neighbours on a shared machine. A measurement is the best of a few repetitions:

- ``reload``: ``carry_over`` of 300 rules (where -> by -> throttle -> sink, and a split)
  into an unchanged copy of themselves;
- ``census``: the by census of ``by('host', by('service', ewma))`` holding 2,000 x 5 keys
  (the instrumentation report's walk, a sample of 1,000 forks);
- ``counters``: the per-stream counters' table of the 300 rules (``rillet replay --counts``);
- ``handover``: exporting the state of ``by('host', changed_state)`` holding 20,000 keys,
  for every partition (what a scale-out worker snapshots);
- ``stream``: 200,000 events through ``where -> by('host') -> throttle -> sink`` (the hot
  path, which neither walk touches).

Printed: per measurement, each tree's best time over the rounds and their ratio
this / base (1.00 means the same; below 1, this tree is faster).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import snapshot

ROOT = Path(__file__).resolve().parents[2]

MEASURE = r'''
import gc, json, time
from streams import Event, Runtime, VirtualClock, by, changed_state, ewma, split, throttle, where
from streams._census import census
from streams._reload import carry_over
from streams.testing import Sink
from transport._counters import StreamCounters
from transport._handover import export
from transport._jetstream import ScaleOut

def rules(sink):
    return [where(f"metric > {i}", by("host", throttle(1, 60, sink)),
                  split("metric > 5", throttle(2, 60, sink), sink)) for i in range(300)]

def best(run, times=5):
    # Collected before and paused during each run: a collection the previous
    # measurement's garbage triggers would be charged to this one.
    found = []
    for _ in range(times):
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        run()
        found.append(time.perf_counter() - started)
        gc.enable()
    return min(found)

out = {}
with Runtime(VirtualClock(0)):
    sink = Sink()
    old, new = rules(sink), rules(sink)
    out["reload"] = best(lambda: carry_over(old, [], new, []))
    keyed = by("host", by("service", ewma(5, sink)))
    for h in range(2000):
        for s in range(5):
            keyed(Event(host=f"h{h}", service=f"s{s}", metric=1, time=0))
    out["census"] = best(lambda: census([keyed]))
    counters = StreamCounters()
    out["counters"] = best(lambda: counters.table(old))
    states = by("host", changed_state(sink))
    for h in range(20000):
        states(Event(host=f"h{h}", service="s", state="ok", time=0))
    settings = ScaleOut(partitions=16)
    out["handover"] = best(lambda: export([states], settings), times=3)
    hot = where("metric > 1", by("host", throttle(1, 60, sink)))
    events = [Event(host=f"h{i % 1000}", metric=i % 7, time=0) for i in range(200_000)]
    def stream():
        for event in events:
            hot(event)
        sink.events.clear()
    out["stream"] = best(stream, times=3)
print(json.dumps(out))
'''


def measure(tree: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", MEASURE], cwd=tree, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", default="main",
                        help="git revision to compare with (default: where this branch left "
                             "main)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = snapshot(args.base, Path(tmp, "base"))
        if base is None:
            sys.exit(f"git cannot give the revision {args.base!r}")
        runs: dict[str, list[dict[str, float]]] = {"this": [], "base": []}
        for _ in range(args.rounds):
            runs["base"].append(measure(base))
            runs["this"].append(measure(ROOT))
    # The best of all rounds: on a shared machine a run is often slowed whole
    # (times come out bimodal), and nothing makes a run faster than its code.
    print(f"{'':10} {'base ms':>10} {'this ms':>10} {'this/base':>10}   (best of {args.rounds} "
          f"rounds)")
    for name in runs["this"][0]:
        a = min(r[name] for r in runs["base"]) * 1000
        b = min(r[name] for r in runs["this"]) * 1000
        print(f"{name:10} {a:10.2f} {b:10.2f} {b / a:10.2f}")


if __name__ == "__main__":
    main()
