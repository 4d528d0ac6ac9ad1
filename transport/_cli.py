"""The ``rillet`` command: run, check and reload a config, send events, query the index."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from ._cli_client import add_commands
from ._cli_replay_parser import add_commands as add_recording_commands

__all__ = ["main"]

# Each subcommand imports what it needs when it runs: `rillet send` must not
# pay for trio, the servers and the whole stream library.


def default_pid_file() -> Path:
    """Where ``rillet run`` writes its pid and ``rillet reload`` looks for it."""
    directory = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(directory) / f"rillet-{os.getuid()}.pid"


def _run(args: argparse.Namespace) -> int:
    if args.workers is not None or args.nats is not None or args.worker:
        from ._cli_scaleout import run_scaled

        return run_scaled(args)
    from ._cli_run import run

    return run(args)


def _check(args: argparse.Namespace) -> int:
    from ._cli_run import check

    return check(args)


def _reload(args: argparse.Namespace) -> int:
    from ._cli_run import reload

    return reload(args)


class _Version(argparse.Action):
    # argparse's "version" action wants the text up front; reading the installed
    # version costs more than the rest of `rillet send`'s start, so only on demand.
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        from importlib.metadata import version

        print(f"rillet {version('rillet')}")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="rillet", description="Riemann-compatible event stream processing in Python.")
    top.add_argument("--version", action=_Version, help="show rillet's version and exit")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run a monitoring config (default: the built-in one)")
    run.add_argument("config", nargs="?", help="path of a monitoring .py script")
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    run.add_argument("--host", help="the built-in config's TCP and UDP address "
                                    "(default 127.0.0.1)")
    run.add_argument("--port", type=int, help="the built-in config's TCP and UDP port "
                                              "(default 5555)")
    run.add_argument("--pid-file", default=str(default_pid_file()),
                     help="where to write the pid that 'rillet reload' signals "
                          "(default: %(default)s)")
    run.add_argument("--watch", action="store_true",
                     help="reload when the config file or a module next to it changes")
    run.add_argument("--stall", type=float, metavar="SECONDS",
                     help="log the stack of whatever holds the event loop longer than this "
                          "(default 1)")
    run.add_argument("--stop-within", type=float, metavar="SECONDS",
                     help="after SIGTERM, exit with status 1 if still running after this long "
                          "(default 10)")
    run.add_argument("--count-streams", action="store_true",
                     help="count the events in and out of every stream (one dict update per "
                          "stream an event passes); instrumentation(...) reports them")
    run.add_argument("--record", metavar="DIR",
                     help="record every request the servers handle into DIR (*.rrec files) "
                          "for 'rillet replay' and 'rillet diff'")
    run.add_argument("--record-rotate", default="1h", metavar="DURATION",
                     help="start a new recording file this often (default: %(default)s)")
    run.add_argument("--record-keep", default="7d", metavar="DURATION",
                     help="delete recording files older than this (default: %(default)s)")
    run.add_argument("--record-sample", metavar="FIELDS:SHARE",
                     help="record only the events of a share of the keys, whole, e.g. host:10%%")
    run.add_argument("--record-alerts", default="all", metavar="SINKS",
                     help="the sinks whose deliveries are recorded too, for 'rillet replay "
                          "--check-live': all, none, or names as a replay gives them, e.g. "
                          "pagerduty,slack#2 (default: %(default)s)")
    scale = run.add_argument_group("scale-out on NATS JetStream (docs/scale-out.md)")
    scale.add_argument("--workers", type=int, metavar="N",
                       help="run this process as an edge and start N worker processes (and a "
                            "local nats-server unless --nats is given)")
    scale.add_argument("--nats", metavar="URL",
                       help="the NATS server(s) to use, e.g. nats://127.0.0.1:4222; without "
                            "--worker or --workers this process is an edge")
    scale.add_argument("--worker", action="store_true",
                       help="run as a worker: consume partitions from --nats")
    scale.add_argument("--partitions", type=int, default=16,
                       help="the fixed partition count (default %(default)s)")
    scale.add_argument("--partition-key", default="host",
                       help="comma-separated event fields choosing the partition "
                            "(default %(default)s)")
    scale.add_argument("--stream", default="RILLET", help="the JetStream stream's name "
                                                          "(default %(default)s)")
    scale.add_argument("--lease", type=float, default=6.0, metavar="SECONDS",
                       help="how long a dead worker's partitions wait for a new owner "
                            "(default %(default)s)")
    scale.add_argument("--snapshot-interval", type=float, default=5.0, metavar="SECONDS",
                       help="seconds between a worker's index snapshots: what a new owner "
                            "replays at most (default %(default)s)")
    scale.add_argument("--replicas", type=int, default=1,
                       help="JetStream copies of the events, leases and snapshots on a NATS "
                            "cluster (default %(default)s)")
    scale.add_argument("--publish-timeout", type=float, default=20.0, metavar="SECONDS",
                       help="how long an edge retries storing events before it answers the "
                            "client with an error (default %(default)s)")
    scale.add_argument("--query-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="how long an edge waits for every partition's answer to a query "
                            "(default %(default)s)")
    run.set_defaults(func=_run)
    check = commands.add_parser(
        "check", help="load a config without running it: print what it declares, "
                      "exit 1 with file:line on a mistake")
    check.add_argument("config", nargs="?", help="path of a monitoring .py script")
    check.set_defaults(func=_check)
    reload = commands.add_parser(
        "reload", help="make a running 'rillet run' load its config again (sends SIGHUP)")
    reload.add_argument("--pid-file", default=str(default_pid_file()),
                        help="the pid file 'rillet run' wrote (default: %(default)s)")
    reload.set_defaults(func=_reload)
    add_commands(commands)
    add_recording_commands(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if argv is None and args.command in _PINNED and "PYTHONHASHSEED" not in os.environ:
        # A replay's alert log must not depend on string hashing (set order):
        # pin the seed, which only a fresh interpreter can take.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "transport._cli", *sys.argv[1:]])
    return int(args.func(args))


_PINNED = ("replay", "diff", "explain")


if __name__ == "__main__":
    sys.exit(main())
