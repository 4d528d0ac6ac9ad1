"""The TCP server's limits: their defaults, their validation, and the accept loop that keeps
to them (see docs/operations.md, "Limits").

Each limit bounds what one client, or many, can make the server hold:

- ``max_connections``: connections open at once. At the limit the server
  stops accepting (new clients wait in the kernel's backlog) until one closes.
- ``idle_timeout``: seconds a connection may send nothing before it is closed.
- ``max_buffered``: bytes of partial frames held across all connections; the
  connection whose read would go past it is closed.
- ``max_events``: events in one message; a larger one gets an error reply and
  none of its events is streamed.

Out of file descriptors (EMFILE and friends), accept pauses for a tenth of a
second and says so once per 10 seconds, instead of a traceback per attempt.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from streams._ratelimit import LogLimiter
from streams._validate import StreamArgumentError

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_EVENTS",
    "accept_forever",
    "check_limits",
    "check_seconds",
]

DEFAULT_MAX_CONNECTIONS = 4096
#: One hour: only connections silent that long are closed (clients reconnect).
DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_MAX_BUFFERED = 256 * 1024 * 1024
DEFAULT_MAX_EVENTS = 100_000

# accept() errors that mean "out of descriptors or memory for now", not "broken".
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_EXHAUSTED_PAUSE = 0.1


def check_limits(caller: str, **limits: Any) -> None:
    """Raise a ValueError naming the first limit that is not a positive number (or None)."""
    for name, value in limits.items():
        whole = name in ("max_connections", "max_buffered", "max_events")
        kind = int if whole else (int, float)
        if value is None and not whole:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 or (
                not whole and math.isnan(value)):
            example = {"max_connections": DEFAULT_MAX_CONNECTIONS,
                       "idle_timeout": DEFAULT_IDLE_TIMEOUT,
                       "max_buffered": DEFAULT_MAX_BUFFERED,
                       "max_events": DEFAULT_MAX_EVENTS}[name]
            what = "a positive int" if whole else "a positive number of seconds, or None"
            raise StreamArgumentError(
                f"{caller}({name}={value!r}): {name} must be {what}, e.g. "
                f"{name}={example!r}")


def check_seconds(caller: str, name: str, value: Any, example: float) -> None:
    """Raise a ValueError unless ``value`` is a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise StreamArgumentError(
            f"{caller}({name}={value!r}): {name} must be a positive number of "
            f"seconds, e.g. {name}={example!r}")


class ConnectionSlots:
    """Counts open connections; :meth:`wait` returns once fewer than ``limit`` are open."""

    __slots__ = ("_room", "limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._room: trio.Event | None = None

    def full(self) -> bool:
        return self.open >= self.limit

    async def wait(self) -> None:
        while self.full():
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()

    def release(self) -> None:
        self.open -= 1
        if self._room is not None and not self.full():
            self._room.set()
            self._room = None


async def accept_forever(listener: trio.SocketListener, slots: ConnectionSlots,
                         handle: Callable[[trio.SocketStream], Awaitable[None]],
                         nursery: trio.Nursery, log: LogLimiter) -> None:
    """Accept connections into ``nursery`` while ``slots`` has room; ``handle`` each one.

    ``handle`` must call ``slots.release()`` when its connection ends.
    """
    async with listener:
        while True:
            if slots.full():
                log.warning("max_connections", "%d TCP connections are open "
                            "(max_connections=%d): not accepting more until one closes",
                            slots.open, slots.limit)
                await slots.wait()
            try:
                stream = await listener.accept()
            except OSError as error:
                if error.errno not in _EXHAUSTED:
                    raise
                log.warning("exhausted", "cannot accept a TCP connection (%s): pausing accept; "
                            "raise the open files limit (ulimit -n) or lower max_connections",
                            error.strerror or error)
                await trio.sleep(_EXHAUSTED_PAUSE)
                continue
            slots.open += 1
            nursery.start_soon(handle, stream)
