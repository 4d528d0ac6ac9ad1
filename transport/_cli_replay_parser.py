"""The parsers of the recording subcommands (replay, diff, explain, recording, record).

Kept apart from ``_cli_replay``, which they import only when one of them runs.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """The replay family's subcommands (each imports this module when it runs)."""
    def recording_arg(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--recording", required=True, metavar="R",
                            help="a .rrec file or a directory of them ('rillet run --record')")
        parser.add_argument("--from", dest="start", metavar="T",
                            help="replay from this time: Unix seconds or an ISO time")
        parser.add_argument("--to", dest="end", metavar="T", help="replay up to this time")
        parser.add_argument("--fidelity", choices=["exact", "ideal"],
                            help="exact: timers run when the server ran them (default for "
                                 "live recordings); ideal: on time (default for imports)")

    run = commands.add_parser("replay", help="replay a recording through a config; "
                                             "sinks record instead of sending")
    run.add_argument("config", nargs="?")
    recording_arg(run)
    run.add_argument("--send-to", dest="send_to", metavar="HOST:PORT",
                     help="instead: send the recorded requests to this server")
    run.add_argument("--speed", type=float, default=1.0,
                     help="with --send-to: times the recorded pace (0: as fast as it acks; "
                          "default: %(default)s)")
    run.add_argument("--alerts", metavar="FILE", help="write the alert log (JSON lines) here "
                                                      "instead of stdout")
    run.add_argument("--check", action="store_true",
                     help="replay twice; exit 3 unless the alert logs are identical")
    run.add_argument("--counts", action="store_true",
                     help="print the events in and out of every stream of the config "
                          "(by its path id) after the replay")
    run.add_argument("--check-live", dest="check_live", action="store_true",
                     help="compare the replay's alert log with what the sinks received live "
                          "(recorded by 'rillet run --record'); exit 1 on any difference")
    run.add_argument("--tolerance", default="1s", metavar="DURATION",
                     help="with --check-live: how far apart a live and a replayed alert's "
                          "times may be (default: %(default)s)")
    run.add_argument("--checkpoints", metavar="FILE",
                     help="store the replay's state here as it goes, and the alert log with "
                          "lineage: rillet explain --checkpoints FILE then replays only from "
                          "the checkpoint before its question")
    run.add_argument("--checkpoint-every", default="10m", metavar="DURATION",
                     help="recorded time between checkpoints (default: %(default)s)")
    run.set_defaults(func=lazy("_cli_replay", "replay"))

    compare = commands.add_parser("diff", help="replay a recording through two configs and "
                                               "compare what their sinks received")
    compare.add_argument("a", metavar="A.py")
    compare.add_argument("b", metavar="B.py", nargs="?")
    recording_arg(compare)
    compare.add_argument("--against", metavar="git:REV",
                         help="compare the config as it is at REV (A) with the file (B)")
    compare.add_argument("--tolerance", default="5m", help="max shift of a moved alert "
                                                           "(default: %(default)s)")
    compare.add_argument("--warmup", default="0", help="ignore alerts this long after the "
                                                       "recording starts (default: 0)")
    compare.add_argument("--key", default="host,service,state",
                         help="event fields that identify an alert (default: %(default)s)")
    compare.add_argument("--policy", metavar="FILE.toml",
                         help="budgets, e.g. [gone] pagerduty = 0 (default: none allowed)")
    compare.add_argument("--json", metavar="FILE", help="write the rillet.diff/1 JSON here")
    compare.add_argument("--no-explain", dest="explain", action="store_false",
                         help="skip the why-not of gone and new alerts")
    compare.add_argument("--check", action="store_true",
                         help="replay A twice; exit 3 unless both alert logs are identical")
    compare.set_defaults(func=lazy("_cli_replay", "diff"))

    why = commands.add_parser("explain", help="why an alert fired, or where the events that "
                                              "could have made one stopped")
    why.add_argument("config")
    recording_arg(why)
    why.add_argument("--alert", type=int, metavar="SEQ", help="the alert's seq in the log")
    why.add_argument("--live", action="store_true",
                     help="--alert is a live alert's id (from 'rillet replay --check-live' or "
                          "'rillet recording info'), not a replayed seq")
    why.add_argument("--why-not", nargs="+", metavar="FIELD=VALUE",
                     help="the candidate inputs, e.g. host=web-42 service='disk /var'")
    why.add_argument("--at", help="when the alert was expected: Unix seconds or an ISO time "
                                  "(default: the whole recording)")
    why.add_argument("--window", default="10m",
                     help="candidates within this much of --at (default: %(default)s)")
    why.add_argument("--checkpoints", metavar="FILE",
                     help="checkpoints from 'rillet replay --checkpoints FILE': replay only "
                          "from the one before the alert's input (or --at minus --window)")
    why.set_defaults(func=lazy("_cli_replay", "explain"))

    recording = commands.add_parser("recording", help="inspect recordings")
    inner = recording.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = inner.add_parser("info", help="what a recording holds; checks its checksums")
    info.add_argument("recording")
    info.set_defaults(func=lazy("_cli_replay", "recording_info"))
    cut = inner.add_parser("cut", help="copy a time range of a recording into a new file")
    cut.add_argument("recording")
    cut.add_argument("--from", dest="start", metavar="T",
                     help="Unix seconds or an ISO time, e.g. 2026-12-01T03:00:00Z")
    cut.add_argument("--to", dest="end", metavar="T")
    cut.add_argument("-o", "--output", required=True)
    cut.set_defaults(func=lazy("_cli_replay", "recording_cut"))
    merge = inner.add_parser("merge", help="merge recordings of several servers by time")
    merge.add_argument("recordings", nargs="+")
    merge.add_argument("-o", "--output", required=True)
    merge.set_defaults(func=lazy("_cli_replay", "recording_merge"))

    record = commands.add_parser("record", help="make recordings")
    inner = record.add_subparsers(dest="action", required=True, metavar="ACTION")
    imported = inner.add_parser("import", help="a recording from JSON lines of events "
                                               "(each with a time)")
    imported.add_argument("events", help="the .jsonl file, or - for stdin")
    imported.add_argument("-o", "--output", required=True, help="the .rrec file to write")
    imported.set_defaults(func=lazy("_cli_replay", "record_import"))
    running = inner.add_parser("running", help="make a running 'rillet run' record for a "
                                               "while (it needs no --record)")
    running.add_argument("--pid-file", default=None,
                         help="the pid file 'rillet run' wrote (default: its default)")
    running.add_argument("--duration", default="1h", help="how long (default: %(default)s)")
    running.add_argument("--sample", metavar="FIELDS:SHARE",
                         help="record only the events of a share of the keys, e.g. host:10%%")
    running.add_argument("-o", "--output", required=True, metavar="DIR",
                         help="the directory to record into")
    running.set_defaults(func=lazy("_cli_replay", "record_running"))
    remote = inner.add_parser("remote", help="record a running rillet from elsewhere, through "
                                             "its SSE server (sse_server in its config)")
    remote.add_argument("server", metavar="HOST:PORT", help="the SSE server's address")
    remote.add_argument("--duration", default="1h", help="how long (default: %(default)s)")
    remote.add_argument("--token", help="a token of the SSE server whose query is \"true\"")
    remote.add_argument("-o", "--output", required=True, help="the .rrec file to write")
    remote.set_defaults(func=lazy("_cli_replay", "record_remote"))


def lazy(module: str, function: str) -> Any:
    """A subcommand function that imports its module when it runs."""
    def run(args: argparse.Namespace) -> int:
        import importlib

        found = importlib.import_module(f"transport.{module}")
        return int(getattr(found, function)(args))

    return run
