"""``rillet run --workers N`` / ``--nats URL`` / ``--worker``: rillet scaled out on NATS JetStream.

Imported only when one of those options is given. ``--workers N`` makes
this process the edge, starts a local ``nats-server -js`` (unless ``--nats``
names one) and N worker processes, and restarts a worker that dies; see
docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trio

from streams import Config, Runtime

from ._cli_run import exit_status, load_for_run, tune_garbage_collector
from ._edge import Edge
from ._jetstream import ScaleOut
from ._run import listeners, serve
from ._worker import Worker

__all__ = ["edge_config", "run_scaled"]

log = logging.getLogger("rillet")

NATS_START_SECONDS = 20


def edge_config(config: Config, edge: Edge) -> Config:
    """What an edge runs of ``config``: its listeners, feeding the edge instead of the streams."""
    return Config(streams=[edge], services=[edge, *listeners(config)], source=config.source)


def run_scaled(args: argparse.Namespace) -> int:
    if args.worker and args.nats is None:
        print("rillet run --worker: give the NATS server with --nats URL", file=sys.stderr)
        return 2
    if args.workers is not None and (args.workers < 1 or args.worker):
        print(f"rillet run --workers {args.workers}: give a worker count of 1 or more, "
              f"without --worker", file=sys.stderr)
        return 2
    try:
        settings = ScaleOut(url=args.nats or "nats://127.0.0.1:4222",
                            partitions=args.partitions,
                            key=tuple(k.strip() for k in args.partition_key.split(",")),
                            stream=args.stream, lease=args.lease,
                            snapshot_interval=args.snapshot_interval,
                            replicas=args.replicas,
                            publish_timeout=args.publish_timeout,
                            query_timeout=args.query_timeout)
    except ValueError as error:
        print(f"rillet run: {error}", file=sys.stderr)
        return 2
    loaded = load_for_run(args)
    if loaded is None:
        return 2
    path, runtime, config = loaded
    tune_garbage_collector()
    try:
        if args.worker:
            trio.run(_until_stopped, _work, config, runtime, settings)
        elif args.workers is not None:
            with _local_nats(args.nats) as url:
                settings = dataclasses.replace(settings, url=url)
                with _workers(args, path, url) as supervise:
                    trio.run(_until_stopped, _edge_and_supervise, config, runtime, settings,
                             supervise)
        else:
            trio.run(_until_stopped, _edge, config, runtime, settings)
    except BaseException as error:
        return exit_status(error)
    return 0


async def _until_stopped(main: object, *args: object) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(main, *args)  # type: ignore[arg-type]
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for received in signals:
                if received == signal.SIGHUP:
                    # SIGHUP's default would end the process: a 'rillet reload' must not.
                    log.warning("received SIGHUP: a scaled-out rillet does not reload; restart "
                                "the workers one at a time to change the config "
                                "(docs/scale-out.md)")
                    continue
                log.info("received %s; stopping", signal.Signals(received).name)
                nursery.cancel_scope.cancel()
                return


async def _work(config: Config, runtime: Runtime, settings: ScaleOut) -> None:
    worker = Worker(settings)
    log.info("rillet worker %s running %s on %s (%d partitions)", worker.name, config.source,
             settings.url, settings.partitions)
    await worker.run(config, runtime)


async def _edge(config: Config, runtime: Runtime, settings: ScaleOut) -> None:
    edge = Edge(settings)
    log.info("rillet edge for %s on %s: %d partitions keyed by %s", config.source, settings.url,
             settings.partitions, ",".join(settings.key))
    await serve(edge_config(config, edge), runtime=runtime)


async def _edge_and_supervise(config: Config, runtime: Runtime, settings: ScaleOut,
                              supervise: object) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervise)  # type: ignore[arg-type]
        await _edge(config, runtime, settings)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _local_nats(url: str | None) -> Iterator[str]:
    """``url``, or a nats-server with JetStream started on a free loopback port."""
    if url is not None:
        yield url
        return
    binary = shutil.which("nats-server")
    if binary is None:
        raise OSError("rillet run --workers: nats-server not found; install it (Debian: "
                      "apt-get install nats-server) or give one with --nats URL")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="rillet-nats-") as store, \
            open(Path(store) / "nats.log", "wb") as output:
        process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + NATS_START_SECONDS
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=0.5):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise OSError(f"nats-server did not start on 127.0.0.1:{port}: "
                                  f"{(Path(store) / 'nats.log').read_text()[-1000:]}")
                time.sleep(0.05)
            log.info("started nats-server (pid %d) on 127.0.0.1:%d, JetStream store %s",
                     process.pid, port, store)
            yield f"nats://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def _workers(args: argparse.Namespace, path: Path, url: str) -> Iterator[object]:
    """N worker processes; yields the trio task that restarts those that die."""
    argv = [sys.executable, "-m", "transport._cli", "run", str(path), "--worker",
            "--nats", url, "--partitions", str(args.partitions),
            "--partition-key", args.partition_key, "--stream", args.stream,
            "--lease", str(args.lease), "--snapshot-interval", str(args.snapshot_interval),
            "--replicas", str(args.replicas),
            "--publish-timeout", str(args.publish_timeout),
            "--query-timeout", str(args.query_timeout),
            "--log-level", args.log_level]
    processes = [subprocess.Popen(argv, stdin=subprocess.DEVNULL)
                 for _ in range(args.workers)]
    log.info("started %d workers: pids %s", len(processes), [p.pid for p in processes])

    async def supervise() -> None:
        while True:
            await trio.sleep(0.5)
            for number, process in enumerate(processes):
                if process.poll() is not None:
                    log.warning("worker pid %d exited with %s; starting another",
                                process.pid, process.returncode)
                    processes[number] = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    try:
        yield supervise
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
