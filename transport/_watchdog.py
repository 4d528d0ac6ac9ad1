"""A thread that watches the event loop: it reports what held the loop, and makes SIGTERM end
the process within a deadline even when a stream blocks.

Everything in rillet shares one trio loop, so a user stream that blocks (a
``time.sleep``, a synchronous HTTP call, an endless loop) holds every client,
timer and signal with it. That cannot be sliced from outside, so it is
watched: a trio task touches a heartbeat every ``stall / 4`` seconds, and a
thread logs the loop's stack when the heartbeat is older than ``stall``
(once per stall, then once more when the loop runs again, with how long it
was held).

SIGTERM (or SIGINT, Ctrl-C) asks the loop to stop gracefully (see
``transport/_cli_run.py``: the servers answer what they read, the queues,
sinks and the snapshot flush, all before :func:`stop_deadline`); if the
process is still there ``stop_within`` seconds later, the thread logs what
holds the loop and exits with status 1. A second signal exits at once. A
blocking call that never returns to the interpreter (some C extensions) does
not even let the signal handler run; only SIGKILL stops those.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import trio

from ._limits import check_seconds

__all__ = ["DEFAULT_STALL", "DEFAULT_STOP_WITHIN", "Watchdog", "set_stop_deadline",
           "stop_deadline"]

log = logging.getLogger("rillet.watchdog")

#: Seconds the loop may be held before the watchdog logs what holds it.
DEFAULT_STALL = 1.0
#: Seconds SIGTERM leaves the server to stop before the process exits anyway.
DEFAULT_STOP_WITHIN = 10.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# When a graceful stop must be over, on trio's clock: what flushes at shutdown
# (sinks, async_queues, the last snapshot) stops there, and logs what it could
# not flush, rather than be killed by the watchdog with nothing said.
_STOP_DEADLINE = trio.lowlevel.RunVar[float]("rillet_stop_deadline", default=math.inf)


def stop_deadline() -> float:
    """The trio time by which a graceful stop must be done (infinity when none is under way)."""
    return _STOP_DEADLINE.get()


def set_stop_deadline(deadline: float) -> None:
    """Bound every flush at shutdown in this trio run by ``deadline`` (trio's clock)."""
    _STOP_DEADLINE.set(deadline)


class Watchdog:
    """Install in the main thread around ``trio.run``; start :meth:`heartbeat` in the nursery.

    >>> Watchdog(stall=0.5, stop_within=3)
    Watchdog(stall=0.5, stop_within=3)
    """

    def __init__(self, stall: float | None = None, stop_within: float | None = None) -> None:
        # None: the default (what `rillet run` passes when the flag is not given).
        stall = DEFAULT_STALL if stall is None else stall
        stop_within = DEFAULT_STOP_WITHIN if stop_within is None else stop_within
        check_seconds("Watchdog", "stall", stall, DEFAULT_STALL)
        check_seconds("Watchdog", "stop_within", stop_within, DEFAULT_STOP_WITHIN)
        self.stall = stall
        self.stop_within = stop_within
        self.stalls = 0
        self.longest_stall = 0.0
        self._beat = time.monotonic()
        self._main = threading.main_thread().ident
        self._stopping: float | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._stop: Callable[[], None] | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    # In the main thread ------------------------------------------------------

    def __enter__(self) -> Watchdog:
        # SIGINT too: trio leaves a handler it did not install alone, so Ctrl-C
        # stops as gracefully as SIGTERM instead of raising KeyboardInterrupt
        # wherever the loop happens to be.
        for signum in _SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_sigterm)
        self._thread = threading.Thread(target=self._watch, name="rillet-watchdog",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        if self._thread is not None:
            self._thread.join()

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes, even while a stream
        # blocks (a sleep is interrupted for it and resumed after).
        name = signal.Signals(signum).name
        if self._stopping is not None:
            log.warning("received %s again; exiting now", name)
            _exit(1)
        self._stopping = time.monotonic()
        log.info("received %s; stopping within %s s", name, self.stop_within)
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):  # the loop ended meanwhile
                self._token.run_sync_soon(self._stop)

    # In the trio loop --------------------------------------------------------

    async def heartbeat(self, stop: Callable[[], None], *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Touch the heartbeat until cancelled; ``stop()`` is what SIGTERM calls in the loop."""
        self._stop = stop
        self._token = trio.lowlevel.current_trio_token()
        task_status.started()
        if self._stopping is not None:  # SIGTERM before the loop was ready
            stop()
        while True:
            self._beat = time.monotonic()
            await trio.sleep(self.stall / 4)

    # In the watchdog thread --------------------------------------------------

    def _watch(self) -> None:
        reported: float | None = None
        while not self._done.wait(self.stall / 4):
            now = time.monotonic()
            held = now - self._beat
            if held > self.stall and reported is None:
                reported = self._beat
                self.stalls += 1
                log.warning("the event loop has been held for %.1f s (more than stall=%s s) "
                            "by:\n%s", held, self.stall, self._main_stack())
            elif reported is not None and self._beat != reported:
                length = self._beat - reported
                self.longest_stall = max(self.longest_stall, length)
                log.warning("the event loop runs again after being held for %.1f s", length)
                reported = None
            if self._stopping is not None and now - self._stopping > self.stop_within:
                log.error("still running %s s after SIGTERM (stop_within=%s); exiting now. "
                          "The event loop is held by:\n%s", self.stop_within, self.stop_within,
                          self._main_stack())
                _exit(1)

    def _main_stack(self) -> str:
        frame = sys._current_frames().get(self._main or 0)
        if frame is None:
            return "  (the main thread has no frame)"
        return "".join(traceback.format_stack(frame)).rstrip()

    def statistics(self) -> dict[str, Any]:
        return {"stalls": self.stalls, "longest_stall": self.longest_stall}

    def __repr__(self) -> str:
        return f"Watchdog(stall={self.stall!r}, stop_within={self.stop_within!r})"


def _exit(status: int) -> None:
    # Past the deadline the loop cannot be trusted to unwind: leave now. No
    # logging.shutdown(): the held main thread may own a handler's lock.
    sys.stderr.flush()
    os._exit(status)
