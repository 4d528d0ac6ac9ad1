"""A bounded queue drained by a trio task: rillet's answer to Riemann's
``async-queue!`` and ``execute-on``.

Streams never block. ``async_queue`` puts each event on a bounded queue and
returns at once; a task in the server's nursery feeds the queued events to the
children, in batches. When the queue is half full, TCP connections stop
reading requests until the drain task has caught up (backpressure); only
when it is full anyway (UDP, a single message larger than half the queue, a
stream calling it many times per event) is the event dropped, counted and
logged (Riemann raises "rejected" into the calling stream instead).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import trio

from streams import Stream
from streams._config import service
from streams._core import Child, report_failure
from streams._validate import StreamArgumentError

from ._watchdog import stop_deadline

__all__ = ["async_queue"]

log = logging.getLogger("rillet.queue")

# The most events one drain turn hands to the children, and the longest it
# runs, before it lets the loop run (see transport/_server.py's TURN_SECONDS).
_BATCH = 1024
_TURN_SECONDS = 0.005
# How long shutdown waits for a queue's children to take what is queued.
_SHUTDOWN_SECONDS = 5.0


class async_queue(Stream):
    """Hand events to ``children`` through a bounded queue drained by a trio task.

    Use it in front of anything slow, so a slow child never holds up ingest.
    ``size`` bounds the queue. Once it is half full, TCP connections stop
    reading until it drains below half (``statistics()["paused"]`` counts
    those waits); a full queue drops the event and counts it in
    ``statistics()["dropped"]``. Declared in a config, it is started with the
    servers; the children run in the order events were queued.

    >>> from streams._config import Config, declaring
    >>> with declaring(Config()) as config:
    ...     queue = async_queue("mail", print, size=2)
    >>> queue("a"); queue("b"); queue("c")
    >>> queue.statistics()
    {'name': 'mail', 'size': 2, 'queued': 2, 'accepted': 2, 'dropped': 1, 'completed': 0, \
'paused': 0}
    """

    __slots__ = ("_high_water", "_receive", "_room", "_send", "accepted", "completed", "dropped",
                 "name", "paused", "size")
    shared = True  # one queue and one drain task, whichever fork feeds it

    def __init__(self, name: str, *children: Child, size: int = 1000) -> None:
        if not isinstance(name, str) or not name:
            raise StreamArgumentError(
                f"async_queue(name, *children): name must be a non-empty string, "
                f"got {name!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise StreamArgumentError(
                f"async_queue({name!r}, ..., size={size!r}): size must be a "
                f"positive int, e.g. size=1000")
        self.name = name
        self.size = size
        self._set_children(children)
        self._send, self._receive = trio.open_memory_channel[Any](size)
        self.accepted = self.dropped = self.completed = self.paused = 0
        self._high_water = max(1, size // 2)
        self._room: trio.Event | None = None
        service(self)

    def __call__(self, event: Any) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or math.log2(self.dropped).is_integer():
                log.warning("async_queue %r is full (size %d): dropped %d events so far",
                            self.name, self.size, self.dropped)
        else:
            self.accepted += 1

    def crowded(self) -> bool:
        """Whether the queue is at least half full: producers that can wait should."""
        return self.accepted - self.completed >= self._high_water

    async def wait_for_room(self) -> None:
        """Return once the queue is less than half full (TCP connections call it)."""
        if self.crowded():
            self.paused += 1
            while self.crowded():
                if self._room is None:
                    self._room = trio.Event()
                await self._room.wait()

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Drain the queue into the children until cancelled, a batch per turn."""
        task_status.started(0)
        try:
            await self._drain_forever()
        finally:
            self._drain_what_is_left()

    async def _drain_forever(self) -> None:
        out, receive = self._out, self._receive
        while True:
            event = await receive.receive()
            turn_ends = time.perf_counter() + _TURN_SECONDS
            handled = 0
            while True:
                try:
                    out(event)
                except Exception as error:
                    report_failure(error, event)
                self.completed += 1
                handled += 1
                if handled >= _BATCH or time.perf_counter() >= turn_ends:
                    break
                try:
                    event = receive.receive_nowait()
                except trio.WouldBlock:
                    break
            if self._room is not None and not self.crowded():
                self._room.set()
                self._room = None
            await trio.lowlevel.checkpoint()

    def _drain_what_is_left(self) -> None:
        # Shutdown: the events already accepted still reach the children, for
        # at most _SHUTDOWN_SECONDS; what is left then is counted as dropped.
        # Never past a graceful stop's deadline (SIGTERM), which is on trio's clock.
        seconds = min(_SHUTDOWN_SECONDS, stop_deadline() - trio.current_time())
        deadline = time.monotonic() + seconds
        out = self._out
        while time.monotonic() < deadline:
            try:
                event = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            try:
                out(event)
            except Exception as error:
                report_failure(error, event)
            self.completed += 1
        left = self.accepted - self.completed
        if left:
            self.dropped += left
            log.warning("async_queue %r: %d events were still queued %.1f s after shutdown "
                        "began; dropped", self.name, left, seconds)

    def statistics(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size,
                "queued": self._receive.statistics().current_buffer_used,
                "accepted": self.accepted, "dropped": self.dropped,
                "completed": self.completed, "paused": self.paused}
