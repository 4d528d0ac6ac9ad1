"""``rillet run``, ``rillet check`` and ``rillet reload``: what runs a config.

Kept apart from the ``rillet`` parser, which imports this module only when
one of these subcommands runs (``rillet send`` must not pay for trio and the
stream library).
"""

from __future__ import annotations

import argparse
import errno
import functools
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from streams import Config, ConfigError, Runtime, VirtualClock

from ._run import Running, listeners, serve, watch
from ._scheduler import TrioScheduler
from ._watchdog import Watchdog, set_stop_deadline

__all__ = ["check", "reload", "run"]

DEFAULT_CONFIG = Path(__file__).with_name("default_config.py")


def tune_garbage_collector() -> None:
    """Collect cycles less often: ingest allocates an object per event, and the
    default thresholds run a collection every 700 allocations, which scans the
    young events again and again (it halves decoding speed). Events form no
    cycles, so little is lost by collecting rarely; what config loading built
    is frozen out of every later scan.

    The youngest generation is collected every 20,000 allocations (about a
    millisecond each), not every 100,000 (6 ms, as long as three turns of
    work, which a bystander client waited for); the older generations keep
    their old pace in allocations (250 and 100 collections of the one below).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 250, 100)


log = logging.getLogger("rillet")


def _config_path(args: argparse.Namespace) -> Path | None:
    """The config to run; the built-in one takes --host/--port through the environment."""
    if args.config:
        if args.host is not None or args.port is not None:
            return None
        return Path(args.config)
    if args.host is not None:
        os.environ["RILLET_HOST"] = args.host
    if args.port is not None:
        os.environ["RILLET_PORT"] = str(args.port)
    return DEFAULT_CONFIG


def _load(runtime: Runtime, path: Path, prefix: str) -> Config | None:
    """The loaded config, or None once the error (file:line and problem) is printed."""
    try:
        return runtime.load(path)
    except ConfigError as error:
        print(f"{prefix}: {error}", file=sys.stderr)
        return None


def _no_server_warning(config: Config) -> str | None:
    if listeners(config):
        return None
    return (f"{config.source}: the config declares no server, so no event can reach it; "
            f"add tcp_server() and udp_server() (from transport) to listen on 127.0.0.1:5555")


def load_for_run(args: argparse.Namespace) -> tuple[Path, Runtime, Config] | None:
    """Logging set up and the config loaded for ``rillet run``; None once the problem
    is printed."""
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    path = _config_path(args)
    if path is None:
        print("rillet: --host and --port move the built-in config's servers; a config file "
              "declares its own, e.g. tcp_server(host='0.0.0.0', port=5556)", file=sys.stderr)
        return None
    runtime = Runtime(TrioScheduler())
    alerts = getattr(args, "record_alerts", "all")
    if getattr(args, "record", None) and alerts != "none":
        from ._livelog import LiveSinks

        # Before the load, as a replay captures them: the sinks report what they receive.
        runtime.service_hook = LiveSinks(runtime, None if alerts == "all" else alerts)
    if getattr(args, "count_streams", False):
        from . import _counters

        # Before the load: the streams bind their children's __call__ as they are built.
        _counters.active = _counters.StreamCounters().install()
    config = _load(runtime, path, "rillet: cannot load the config")
    return None if config is None else (path, runtime, config)


def exit_status(error: BaseException) -> int:
    """0 for Ctrl-C, 1 (with the errors printed) for OSErrors; anything else is raised."""
    # trio wraps what escapes a nursery in (nested) exception groups.
    leaves = _leaves(error)
    if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return 0
    if not all(isinstance(leaf, OSError) for leaf in leaves):
        raise error
    for leaf in leaves:
        hint = ("; is another server already using the port?"
                if getattr(leaf, "errno", None) == errno.EADDRINUSE else "")
        print(f"rillet: {leaf}{hint}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    loaded = load_for_run(args)
    if loaded is None:
        return 2
    path, runtime, config = loaded
    warning = _no_server_warning(config)
    if warning:
        log.warning("%s", warning)
    log.info("rillet running %s (%d top-level streams, %d services, pid %d); Ctrl-C stops it, "
             "SIGHUP or 'rillet reload' reloads it", path, len(config.streams),
             len(config.services), os.getpid())
    recorder = _recorder(args, runtime, path)
    if recorder is False:
        return 2
    tune_garbage_collector()
    pid_file = Path(args.pid_file)
    try:
        with Watchdog(args.stall, args.stop_within) as watchdog:
            trio.run(_serve_until_stopped, config, runtime, pid_file, args.watch, watchdog)
    except BaseException as error:
        return exit_status(error)
    finally:
        _remove_pid_file(pid_file)
        if runtime.recorder is not None:
            runtime.recorder.close()
    return 0


def _recorder(args: argparse.Namespace, runtime: Runtime, path: Path) -> object:
    """Start recording into --record DIR (None: not asked; False: a bad option, printed)."""
    if not getattr(args, "record", None):
        return None
    from ._livelog import LiveSinks
    from ._recording import Sampler, WireRecorder, config_sha256, parse_duration

    hook = runtime.service_hook
    try:
        if isinstance(hook, LiveSinks):
            hook.check_names()
        rotate = parse_duration(args.record_rotate, "--record-rotate")
        keep = parse_duration(args.record_keep, "--record-keep")
        sample = Sampler.parse(args.record_sample) if args.record_sample else None
        recorder = WireRecorder(args.record, rotate=rotate, keep=keep, sample=sample,
                                snapshot=lambda: list(runtime.index),
                                alerts=isinstance(hook, LiveSinks),
                                alert_sinks=hook.only if isinstance(hook, LiveSinks) else None,
                                config_sha256=config_sha256(path))
    except (ValueError, OSError) as error:
        print(f"rillet: {error}", file=sys.stderr)
        return False
    runtime.recorder = recorder
    return recorder


async def _serve_until_stopped(config: Config, runtime: Runtime, pid_file: Path,
                               watching: bool, watchdog: Watchdog) -> None:
    """Serve until Ctrl-C or SIGTERM (which the watchdog handles, so that it
    works even while a stream blocks), reloading on SIGHUP and recording on
    SIGUSR1 ('rillet record running'); then stop gracefully (see
    :func:`stop_gracefully`), and close the config's streams."""
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            stop = [nursery.cancel_scope.cancel]  # until the servers run
            await nursery.start(watchdog.heartbeat, lambda: stop[0]())
            running: Running = await nursery.start(
                lambda task_status: serve(config, runtime=runtime, task_status=task_status))
            stop[0] = functools.partial(nursery.start_soon, stop_gracefully, running,
                                        nursery.cancel_scope, watchdog.stop_within)
            _write_pid_file(pid_file)
            if runtime.recorder is not None:
                nursery.start_soon(runtime.recorder.run)
            if watching:
                nursery.start_soon(watch, running)
            async for signum in signals:
                if signum == signal.SIGUSR1:  # 'rillet record running'
                    from ._recording import record_on_request

                    record_on_request(runtime, nursery, pid_file)
                    continue
                log.info("received SIGHUP; reloading %s", runtime.config and
                         runtime.config.source)
                await running.reload()


# Of --stop-within, the seconds kept for the process to exit after the flushes.
_EXIT_MARGIN = 1.0
# How long connections may go on reading what their clients had sent, and how
# long they may take to answer it, after SIGTERM.
_READ_AFTER_STOP = 1.0
_ANSWER_AFTER_STOP = 3.0


async def stop_gracefully(running: Running, scope: trio.CancelScope, within: float) -> None:
    """SIGTERM's stop, done before ``within`` seconds (--stop-within) have passed.

    In order: the TCP and HTTP servers accept no more connections and answer
    every request they had read (a client that sent a message just before
    SIGTERM gets its ok; WebSocket subscribers get a 1001 close and SSE
    streams end); every listener stops, so nothing more comes in; each
    ``async_queue`` hands what it holds to its children; then ``scope`` is
    cancelled, and the sinks flush and the last index snapshot is written
    concurrently. Each of those stops at the deadline and logs what it could
    not flush, with a count, so the process still exits 0 in time.
    """
    now = trio.current_time()
    deadline = now + max(within - _EXIT_MARGIN, within / 2)
    set_stop_deadline(deadline)
    services = running.services
    drained = [s for s in services if hasattr(s, "drain")]
    with trio.move_on_at(min(deadline, now + _READ_AFTER_STOP + _ANSWER_AFTER_STOP)):
        async with trio.open_nursery() as nursery:
            for server in drained:
                nursery.start_soon(server.drain, _READ_AFTER_STOP)
    unanswered = sum(server.answering for server in drained)
    if unanswered:
        log.warning("stopping: %d TCP or HTTP connections were still answering after %s s; "
                    "they are closed, and their clients see no reply to what they sent last",
                    unanswered, _READ_AFTER_STOP + _ANSWER_AFTER_STOP)
    for service in listeners(Config(services=services)):
        await running.stop_service(service)
    for service in services:
        if hasattr(service, "wait_for_room"):  # an async_queue: into its children
            await running.stop_service(service)
    scope.cancel()


def _write_pid_file(path: Path) -> None:
    try:
        # Renamed into place, so a reader never sees the file empty.
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(f"{os.getpid()}\n")
        partial.replace(path)
    except OSError as error:
        log.warning("cannot write the pid file %s (rillet reload will not find this server; "
                    "SIGHUP still reloads): %s", path, error.strerror or error)


def _remove_pid_file(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def reload(args: argparse.Namespace) -> int:
    path = Path(args.pid_file)
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        print(f"rillet reload: no pid file at {path}; is 'rillet run' running? (give the "
              f"same --pid-file to both)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"rillet reload: cannot read a pid from {path}: {error}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"rillet reload: no process {pid}; {path} is left over from a server that "
              f"stopped", file=sys.stderr)
        return 1
    except PermissionError:
        print(f"rillet reload: not allowed to signal process {pid} (from {path})",
              file=sys.stderr)
        return 1
    print(f"rillet reload: sent SIGHUP to rillet run (pid {pid}); its log says whether the "
          f"new config was loaded or why the previous one still runs")
    return 0


def check(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else DEFAULT_CONFIG
    runtime = Runtime(VirtualClock())
    config = _load(runtime, path, "rillet check")
    runtime.stop()
    if config is None:
        return 1
    print(f"{path}: loads")
    print(f"streams ({len(config.streams)}):")
    for stream in config.streams:
        print(f"  {stream!r}")
    print(f"services ({len(config.services)}):")
    for service in config.services:
        print(f"  {service!r}")
    if config.expire_interval is not None:
        print(f"index expiry: every {config.expire_interval} s, keeping {config.keep_keys!r}")
    else:
        print("index expiry: none (add periodically_expire(10) to expire indexed events)")
    warning = _no_server_warning(config)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    from ._replay import determinism_hazards

    for hazard in determinism_hazards(config):
        print(f"warning: {hazard} reads the wall clock or randomness: replays of this config "
              f"('rillet replay', 'rillet diff') will differ; read current_runtime().now() "
              f"(from streams), the clock every stream reads",
              file=sys.stderr)
    return 0


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


