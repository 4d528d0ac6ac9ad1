"""The ``rillet`` command: run a config, send events, query the index."""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import sys
from pathlib import Path

import trio

from streams._config import Config, ConfigError, load_config

from ._cli_client import add_commands
from ._run import serve
from ._watchdog import DEFAULT_STALL, DEFAULT_STOP_WITHIN, Watchdog

__all__ = ["main"]

DEFAULT_CONFIG = Path(__file__).with_name("default_config.py")


def tune_garbage_collector() -> None:
    """Collect cycles less often: ingest allocates an object per event, and the
    default thresholds run a collection every 700 allocations, which scans the
    young events again and again (it halves decoding speed). Events form no
    cycles, so little is lost by collecting rarely; what config loading built
    is frozen out of every later scan.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    path = Path(args.config) if args.config else DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"rillet: cannot load the config: {error}", file=sys.stderr)
        return 2
    logging.getLogger("rillet").info(
        "rillet running %s (%d top-level streams, %d services); Ctrl-C stops it",
        path, len(config.streams), len(config.services),
    )
    tune_garbage_collector()
    try:
        with Watchdog(args.stall, args.stop_within) as watchdog:
            trio.run(_serve_until_stopped, config, watchdog)
    except BaseException as error:
        # trio wraps what escapes a nursery in (nested) exception groups.
        leaves = _leaves(error)
        if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            return 0
        if not all(isinstance(leaf, OSError) for leaf in leaves):
            raise
        for leaf in leaves:
            hint = ("; is another server already using the port?"
                    if getattr(leaf, "errno", None) == errno.EADDRINUSE else "")
            print(f"rillet: {leaf}{hint}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_stopped(config: Config, watchdog: Watchdog) -> None:
    """Serve until Ctrl-C or SIGTERM; either way the config's streams are closed."""
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.heartbeat, nursery.cancel_scope.cancel)
        nursery.start_soon(serve, config)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="rillet", description="Riemann-compatible event stream processing in Python.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run a monitoring config (default: the built-in one)")
    run.add_argument("config", nargs="?", help="path of a monitoring .py script")
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    run.add_argument("--stall", type=float, default=DEFAULT_STALL, metavar="SECONDS",
                     help="log the stack of whatever holds the event loop longer than this "
                          "(default %(default)s)")
    run.add_argument("--stop-within", type=float, default=DEFAULT_STOP_WITHIN,
                     metavar="SECONDS", help="after SIGTERM, exit with status 1 if still "
                     "running after this long (default %(default)s)")
    run.set_defaults(func=_run)
    add_commands(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
