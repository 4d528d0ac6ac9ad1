"""The ``rillet`` command: run a config, send events, query the index."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ._cli_client import add_commands

if TYPE_CHECKING:
    from streams._config import Config

__all__ = ["main"]

# Each subcommand imports what it needs when it runs: `rillet send` must not
# pay for trio, the servers and the whole stream library.

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
    import errno
    import logging

    import trio

    from streams._config import ConfigError, load_config

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
        trio.run(_serve_until_stopped, config)
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


async def _serve_until_stopped(config: Config) -> None:
    """Serve until Ctrl-C or SIGTERM; either way the config's streams are closed."""
    import logging
    import signal

    import trio

    from ._run import serve

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, config)
            async for signum in signals:
                logging.getLogger("rillet").info("received %s; stopping",
                                                 signal.Signals(signum).name)
                nursery.cancel_scope.cancel()


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


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
    run.set_defaults(func=_run)
    add_commands(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
