"""Running a config: one nursery owns the scheduler, the reaper and every server."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import trio

from streams._clock import install
from streams._config import Config, install_reinject
from streams._index import Index, current_index, install_index
from streams._pubsub import current_pubsub

from ._scheduler import TrioScheduler
from ._server import Core, Runtime

__all__ = ["Running", "serve"]

log = logging.getLogger("rillet")


@dataclass
class Running:
    """A started rillet: its runtime, scheduler, and the port each service bound."""

    runtime: Runtime
    scheduler: TrioScheduler
    ports: list[int] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)

    @property
    def index(self) -> Index:
        return self.runtime.core.index

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"index": self.index.statistics(),
                                 "scheduler": self.scheduler.statistics(),
                                 "events": self.runtime.core.events}
        for service in self.services:
            stats[repr(service)] = service.statistics()
        return stats


async def serve(config: Config, *, index: Index | None = None,
                task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``config`` until cancelled: scheduler, index expiry and its servers.

    ``task_status.started`` receives a :class:`Running` once every server is
    listening, so tests can start rillet on port 0 and learn the real ports.
    """
    scheduler = TrioScheduler()
    previous = install(scheduler)
    index = index if index is not None else current_index()
    previous_index = install_index(index)
    core = Core(config, index)
    runtime = Runtime(core)
    running = Running(runtime, scheduler, services=list(config.services))
    previous_reinject = install_reinject(core.dispatch)
    # The index publishes every update to the "index" channel (spec §5.1),
    # connected only while the channel has subscribers: ingest pays nothing else.
    pubsub = current_pubsub()
    publisher = pubsub.publisher("index")
    handles: list[int] = []

    def connect_index(watched: bool) -> None:
        if watched and not handles:
            handles.append(index.subscribe(publisher))
        elif not watched and handles:
            index.unsubscribe(handles.pop())

    unwatch = pubsub.watch("index", connect_index)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            if config.expire_interval is not None:
                index.start_reaper(config.expire_interval, core.dispatch,
                                   keep_keys=config.keep_keys)
            for service in config.services:
                running.ports.append(await nursery.start(service.serve, runtime))
            task_status.started(running)
    finally:
        unwatch()
        connect_index(False)
        index.close()
        config.close()
        install(previous)
        install_index(previous_index)
        install_reinject(previous_reinject)
