"""Running a config: one nursery owns the scheduler, the index expiry and every service.

A reload loads the new config completely, swaps it in through the runtime
(unchanged streams and services carry over, see ``streams.Runtime.swap``),
then stops the services that left the config and starts the new ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio

from streams import Config, ConfigError, Index, Runtime
from streams._config import source_files

from ._scheduler import TrioScheduler

__all__ = ["Running", "listeners", "serve", "watch"]

log = logging.getLogger("rillet")


class Running:
    """A started rillet: its runtime, its services and the port each one bound."""

    def __init__(self, runtime: Runtime, nursery: trio.Nursery) -> None:
        self.runtime = runtime
        self.reloads = 0
        self._nursery = nursery
        self._scopes: dict[int, tuple[trio.CancelScope, trio.Event]] = {}
        self._ports: dict[int, int] = {}

    @property
    def index(self) -> Index:
        return self.runtime.index

    @property
    def scheduler(self) -> TrioScheduler:
        clock = self.runtime.clock
        assert isinstance(clock, TrioScheduler)
        return clock

    @property
    def services(self) -> list[Any]:
        return list(self.runtime.services)

    @property
    def ports(self) -> list[int]:
        """The port each running service bound (0 for those that bind none), in order."""
        return [self._ports.get(id(s), 0) for s in self.runtime.services]

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"index": self.index.statistics(),
                                 "scheduler": self.scheduler.statistics(),
                                 "events": self.runtime.events, "reloads": self.reloads}
        for service in self.runtime.services:
            stats[repr(service)] = service.statistics()
        return stats

    async def start_service(self, service: Any) -> None:
        """Start one service in the nursery; returns once it serves (or raises)."""
        self._ports[id(service)] = await self._nursery.start(self._serve_one, service)

    async def _serve_one(self, service: Any, *,
                         task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        done = trio.Event()
        with trio.CancelScope() as scope:
            self._scopes[id(service)] = (scope, done)
            try:
                await service.serve(self.runtime, task_status=task_status)
            finally:
                self._scopes.pop(id(service), None)
                self._ports.pop(id(service), None)
                done.set()

    async def stop_service(self, service: Any) -> None:
        """Cancel one service and wait until it has closed its sockets."""
        found = self._scopes.get(id(service))
        if found is not None:
            scope, done = found
            scope.cancel()
            await done.wait()

    async def reload(self, path: str | Path | None = None) -> bool:
        """Load the config again (or ``path``) and swap it in; False, with the error
        logged and the running config untouched, when the new one does not load."""
        config = self.runtime.config
        path = path if path is not None else (config.source if config is not None else None)
        if path is None:
            log.error("reload: the running config was not loaded from a file")
            return False
        try:
            new = self.runtime.load(path)
        except ConfigError as error:
            log.error("reload failed; still running the previous config: %s", error)
            return False
        try:
            carried = self.runtime.swap(new)
        except Exception:
            log.exception("reload failed while swapping in %s; still running the previous "
                          "config", path)
            return False
        # Stopped first: a changed listener often binds the address it leaves.
        for service in carried.stopped_services:
            await self.stop_service(service)
        for service in carried.started_services:
            try:
                await self.start_service(service)
            except OSError as error:
                log.error("reload: %r cannot start, the rest of the new config runs: %s",
                          service, error)
                self.runtime.services.remove(service)
        self.reloads += 1
        if self.runtime.recorder is not None:  # a replay over it runs one config throughout
            self.runtime.recorder.mark(self.runtime.now(), f"reload {path}")
            from ._livelog import note_config

            note_config(self.runtime, path)
        fresh = carried.fresh_nodes
        more = f" and {len(fresh) - 10} more" if len(fresh) > 10 else ""
        named = f" ({', '.join(fresh[:10])}{more})" if fresh else ""
        log.info("reloaded %s: %d streams kept their state, %d start fresh%s; services: "
                 "%d kept, %d started, %d stopped", path, len(carried.kept), len(carried.fresh),
                 named, len(carried.kept_services), len(carried.started_services),
                 len(carried.stopped_services))
        return True


async def watch(running: Running, interval: float = 1.0) -> None:
    """Reload whenever the config file or a module next to it that it imports changes.

    Polls modification times every ``interval`` seconds: no dependency, and a
    file saved twice in one interval costs one reload.
    """
    def stamps() -> dict[Path, int]:
        config = running.runtime.config
        if config is None:
            return {}
        found = {}
        for path in source_files(config):
            try:
                found[path] = path.stat().st_mtime_ns
            except OSError:
                found[path] = -1
        return found

    seen = stamps()
    while True:
        await trio.sleep(interval)
        current = stamps()
        if current != seen:
            changed = sorted(str(p) for p in current.keys() | seen.keys()
                             if current.get(p) != seen.get(p))
            log.info("changed: %s; reloading", ", ".join(changed))
            await running.reload()
            seen = stamps()


def listeners(config: Config) -> list[Any]:
    """The config's services that accept events (servers bind a port)."""
    return [s for s in config.services if hasattr(s, "bound_port")]


async def serve(config: Config, *, index: Index | None = None, runtime: Runtime | None = None,
                task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``config`` until cancelled: scheduler, index expiry and its services.

    ``runtime`` is the one the config was loaded into (``rillet run`` loads
    it into ``Runtime(TrioScheduler())``); without one, a fresh runtime on a
    :class:`TrioScheduler` with ``index`` (or a fresh index).
    ``task_status.started`` receives a :class:`Running` once every service
    runs, so tests can start rillet on port 0 and learn the real ports.
    """
    if runtime is None:
        runtime = Runtime(TrioScheduler(), index=index)
    elif index is not None:
        raise TypeError("serve(config, index=..., runtime=...): give the index to the runtime")
    if not isinstance(runtime.clock, TrioScheduler):
        raise TypeError(f"serve(config, runtime=...): the runtime must run on a TrioScheduler(), "
                        f"got {runtime.clock!r}")
    with runtime:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(runtime.clock.run)
                if runtime.recorder is not None:  # its timers start now, in a replay too
                    runtime.recorder.mark(runtime.now(), "start")
                runtime.start(config)
                running = Running(runtime, nursery)
                for service in config.services:
                    await running.start_service(service)
                task_status.started(running)
        finally:
            runtime.stop()
