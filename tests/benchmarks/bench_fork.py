"""What a new key under ``by`` costs: microseconds per fork (and per close) of a stream.

    .venv/bin/python tests/benchmarks/bench_fork.py [--before REV] [--rounds R] [--forks N]
        [--replay]

Every new key of a ``by`` forks its children, and every key a ``by`` drops
(or a stop) closes them: the typical replay config makes about 38,000 forks
per million events. For each stream below, ``N`` forks of one template are
made (garbage collection tuned as ``rillet run`` does), then closed, and the
microseconds per fork and per close printed; and for the typical config's two
``by`` streams, ``N`` new keys are sent an event each, then closed. With ``--before REV`` (e.g.
``main``) the same is measured in this checkout and in ``git archive REV``
side by side: each round runs both trees, each in a fresh process,
alternating, and the best of the rounds and their ratio are printed. With
``--replay`` it then times, in bench_replay.py's replay of the typical config,
the seconds spent making new keys and closing them at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: The streams timed, as written in a config (``page`` is a sink, shared by forks).
STREAMS = [
    "where(lambda e: e.metric > 95, with_({'state': 'critical'}, "
    "changed_state(throttle(5, 3600, page))))",
    "with_({'state': 'critical'}, page)",
    "throttle(5, 3600, page)",
    "changed('state', page)",
    "changed_state(page)",
    "stable(30, 'state', page)",
    "by(['host'], stable(30, 'state', page))",
    "rate(5, page)",
    "moving_time_window(60, page)",
    "ewma(10, page)",
    "percentiles(10, [0.5, 0.99], page)",
]

#: Whole new keys (the key's forks made, its first event through them, the key
#: closed), as the typical replay config's two by streams see them.
KEYED = [
    "by(['host', 'service'], where(lambda e: e.metric > 95, with_({'state': 'critical'}, "
    "changed_state(throttle(5, 3600, page)))))",
    "by(['host'], stable(30, 'state', page))",
]

#: Run in a fresh process with the tree on PYTHONPATH: prints {stream: [fork µs, close µs]}.
_MEASURE = """
import json, sys, time
from streams import *
from streams import Runtime, VirtualClock
from streams.testing import Sink
from transport._cli_run import tune_garbage_collector

forks, expressions, keyed = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
page = Sink()
result = {}
with Runtime(VirtualClock(1_800_000_000.0)):
    templates = [eval(expression) for expression in expressions]
    events = [Event(host=f"web-{i:05d}", service="disk /var", metric=99.0, state="ok",
                    time=1_800_000_000.0, ttl=60) for i in range(forks)]
    tune_garbage_collector()
    for expression in keyed:
        best_key = best_close = float("inf")
        for _ in range(5):
            stream = eval(expression)
            started = time.perf_counter()
            for event in events:
                stream(event)
            best_key = min(best_key, time.perf_counter() - started)
            started = time.perf_counter()
            stream.close()
            best_close = min(best_close, time.perf_counter() - started)
        result["new key: " + expression] = [best_key / forks * 1e6, best_close / forks * 1e6]
    for expression, template in zip(expressions, templates):
        best_fork = best_close = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            made = [template.fork() for _ in range(forks)]
            best_fork = min(best_fork, time.perf_counter() - started)
            started = time.perf_counter()
            for fork in made:
                fork.close()
            best_close = min(best_close, time.perf_counter() - started)
            del made
        result[expression] = [best_fork / forks * 1e6, best_close / forks * 1e6]
print(json.dumps(result))
"""


#: The typical replay in a fresh process, by's new keys and closes timed: prints JSON.
_REPLAY = """
import json, sys, time
from streams._partition import by
from transport._cli_run import tune_garbage_collector
from transport._replay import replay

spent = {"new keys": 0.0, "closing keys": 0.0}
inside = [False]

def timed(part, method):
    def run(*args):
        if inside[0]:  # a nested by's keys are timed with the outer one's
            return method(*args)
        inside[0] = True
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            spent[part] += time.perf_counter() - started
            inside[0] = False
    return run

by._new_key = timed("new keys", by._new_key)
by.close = timed("closing keys", by.close)
tune_garbage_collector()
cpu = time.process_time()
replay(sys.argv[1], sys.argv[2])
spent["replay CPU"] = time.process_time() - cpu
print(json.dumps(spent))
"""


def measure_replay(tree: Path, config: Path, recording: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-c", _REPLAY, str(config), str(recording)],
                          cwd=tree, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def replay_parts(trees: dict[str, Path], directory: Path, rounds: int) -> None:
    """Seconds of the typical replay (bench_replay.py's) spent making new keys and
    closing them at the end, best of ``rounds`` for each tree, alternating."""
    from bench_replay import CONFIG, write_recording

    recording, config = directory / "day.rrec", directory / "typical.py"
    write_recording(recording, 1_000_000, 10)
    config.write_text(CONFIG.format(limit=95))
    runs: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(rounds):
        for tree, path in trees.items():
            runs[tree].append(measure_replay(path, config, recording))
    print(f"\nthe typical replay of 1M events (bench_replay.py), seconds, best of {rounds}:")
    print("| part | " + " | ".join(trees) + (" | after / before |" if len(trees) > 1 else " |"))
    print("|---|" + "---:|" * (len(trees) + (len(trees) > 1)))
    for part in ("new keys", "closing keys", "replay CPU"):
        values = [min(run[part] for run in runs[tree]) for tree in trees]
        ratio = f" | {values[1] / values[0]:.2f}" if len(values) > 1 else ""
        print(f"| {part} | " + " | ".join(f"{v:.3f}" for v in values) + ratio + " |")


def measure(tree: Path, forks: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(forks), json.dumps(STREAMS),
                           json.dumps(KEYED)],
                          cwd=tree, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", help="git revision to compare with, e.g. main")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forks", type=int, default=20_000)
    parser.add_argument("--replay", action="store_true",
                        help="also time new keys and their closing in the typical replay")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_server import ROOT, snapshot

    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": ROOT}
        if args.before:
            before = snapshot(args.before, Path(tmp) / "before")
            if before is None:
                sys.exit(f"git cannot give revision {args.before!r}")
            trees = {"before": before, "after": ROOT}
        runs: dict[str, list[dict[str, list[float]]]] = {tree: [] for tree in trees}
        for _ in range(args.rounds):
            for tree, path in trees.items():
                runs[tree].append(measure(path, args.forks))
        report(args, trees, runs)
        if args.replay:
            replay_parts(trees, Path(tmp), args.rounds)


def report(args: argparse.Namespace, trees: dict[str, Path],
           runs: dict[str, list[dict[str, list[float]]]]) -> None:
    def best(tree: str, stream: str, part: int) -> float:
        # The least of the rounds: on a shared VM, noise only ever adds.
        return min(run[stream][part] for run in runs[tree])

    print(f"µs per fork and per close, best of {args.rounds} rounds (each the best of 5) of "
          f"{args.forks:,} forks "
          f"(for a by: per new key, its first event included)"
          + (f" (before = {args.before}, after = this checkout)" if args.before else ""))
    if args.before:
        print("| stream | fork before | fork after | after / before "
              "| close before | close after | after / before |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    else:
        print("| stream | fork | close |")
        print("|---|---:|---:|")
    for stream in [*(f"new key: {k}" for k in KEYED), *STREAMS]:
        cells = []
        for part in (0, 1):
            values = [best(tree, stream, part) for tree in trees]
            cells += [f"{v:.2f}" for v in values]
            if args.before:
                cells.append(f"{values[1] / values[0]:.2f}")
        print(f"| `{stream}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
