"""One clock and one scheduler for every stream (Riemann's ``riemann.time``).

Streams never read the wall clock: they ask :func:`scheduler` for the clock
of the runtime in effect (see ``streams.Runtime``), which is a
:class:`VirtualClock` in tests and a trio-driven scheduler in the server
(``transport``). Both share the task queue below, so tasks run in
``(due, creation)`` order with the semantics of Riemann's spec §3.0.4.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["Scheduler", "Task", "VirtualClock", "current_runtime", "next_tick", "now", "scheduler"]

log = logging.getLogger("rillet.scheduler")


class Task:
    """A scheduled call: ``cancel()`` it, or ``defer(dt)`` a periodic one."""

    __slots__ = ("_deferred", "_id", "_owner", "cancelled", "due", "function", "interval")

    def __init__(self, due: float, function: Callable[[], object], interval: float | None,
                 task_id: int) -> None:
        self.due = due
        self.function = function
        self.interval = interval
        self.cancelled = False
        self._deferred: float | None = None
        self._id = task_id
        # The scheduler that queued the task: defer reads its clock, which need
        # not be the installed one (a VirtualClock built directly in a test).
        self._owner: Scheduler | None = None

    def cancel(self) -> None:
        """Make the task a no-op; a periodic task stops rescheduling itself."""
        self.cancelled = True

    def defer(self, dt: float) -> None:
        """Skip the next run of a periodic task and continue from ``now + dt``."""
        self._deferred = (self._owner or scheduler()).now() + dt

    def __lt__(self, other: Task) -> bool:
        # The heap compares tasks about log2(n) times per push and pop (with a
        # timer per keyed throttle or stable, n is the number of keys): no tuples.
        due, other_due = self.due, other.due
        return due < other_due or (due == other_due and self._id < other._id)

    def __repr__(self) -> str:
        every = f", every={self.interval}" if self.interval is not None else ""
        state = ", cancelled" if self.cancelled else ""
        return f"Task(due={self.due}{every}{state})"


class Scheduler:
    """A queue of tasks ordered by ``(due, creation)``; subclasses supply ``now()``."""

    def __init__(self) -> None:
        self._queue: list[Task] = []
        self._ids = itertools.count()
        # The runtime this clock belongs to: its tasks run with it in effect,
        # whoever advances the clock (see run_due).
        self.runtime: Runtime | None = None

    def now(self) -> float:
        raise NotImplementedError

    def once(self, t: float, function: Callable[[], object]) -> Task:
        """Run ``function`` once at absolute time ``t``."""
        return self._push(Task(t, function, None, next(self._ids)))

    def after(self, dt: float, function: Callable[[], object]) -> Task:
        """Run ``function`` once, ``dt`` seconds from now."""
        return self.once(self.now() + dt, function)

    def every(self, interval: float, function: Callable[[], object], delay: float = 0) -> Task:
        """Run ``function`` at now+delay, then every ``interval`` seconds (fixed rate)."""
        if not interval > 0:
            raise ValueError(f"every(interval={interval!r}): the interval must be > 0 seconds")
        if delay < 0:
            raise ValueError(f"every(delay={delay!r}): the delay must be >= 0 seconds")
        return self._push(Task(self.now() + delay, function, interval, next(self._ids)))

    def clear(self) -> None:
        """Drop every pending task."""
        self._queue.clear()

    @property
    def next_due(self) -> float | None:
        """When the earliest pending task is due, or None."""
        while self._queue and self._queue[0].cancelled:
            heapq.heappop(self._queue)
        return self._queue[0].due if self._queue else None

    def __len__(self) -> int:
        return sum(1 for task in self._queue if not task.cancelled)

    def pending(self) -> set[Task]:
        """The tasks waiting to run (a snapshot)."""
        return {task for task in self._queue if not task.cancelled}

    def _push(self, task: Task) -> Task:
        task._owner = self
        heapq.heappush(self._queue, task)
        return task

    def run_due(self, until: float) -> int:
        """Run every task due at or before ``until``, including ones they schedule."""
        queue = self._queue
        if not queue or queue[0].due > until:
            return 0
        runtime = self.runtime
        if runtime is None or _runtime.get(None) is runtime:
            return self._run_due(until)
        token = _runtime.set(runtime)
        try:
            return self._run_due(until)
        finally:
            _runtime.reset(token)

    def _run_due(self, until: float) -> int:
        ran = 0
        queue = self._queue
        while queue and queue[0].due <= until:
            task = heapq.heappop(queue)
            if task.cancelled:
                continue
            self._before_run(task.due)
            if task._deferred is not None:
                # A deferred periodic task skips this run and resumes at the new time.
                task.due, task._deferred = task._deferred, None
                heapq.heappush(queue, task)
                continue
            try:
                task.function()
            except BaseException as error:
                # One task's failure, even a non-Exception escaping a user's
                # stream, must not end the loop that runs every timer (in the
                # server, the nursery holding every connection with it).
                if must_propagate(error):
                    raise
                log.error("scheduled task %r failed", task.function, exc_info=error)
            ran += 1
            if task.interval is not None and not task.cancelled:
                if task._deferred is not None:
                    task.due, task._deferred = task._deferred, None
                else:
                    task.due += task.interval
                task._id = next(self._ids)
                heapq.heappush(queue, task)
        return ran

    def _before_run(self, due: float) -> None:
        """Hook: the virtual clock moves to each task's due time before running it."""


class VirtualClock(Scheduler):
    """Controlled time for tests: nothing happens until you ``advance``.

    >>> clock = VirtualClock()
    >>> ran = []
    >>> task = clock.every(1, lambda: ran.append(clock.now()), delay=2)
    >>> clock.advance(4.5)
    >>> ran
    [2, 3, 4]
    """

    def __init__(self, start: float = 0) -> None:
        super().__init__()
        self._now = start

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        """Set the clock without running anything."""
        self._now = t

    def advance(self, t: float) -> None:
        """Move the clock to ``t``, running every task due on the way in order."""
        if t <= self._now:
            return
        self.run_due(t)
        self._now = t

    def _before_run(self, due: float) -> None:
        if due > self._now:
            self._now = due

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now}, tasks={len(self)})"


def must_propagate(error: BaseException) -> bool:
    """Shutdown and cancellation, which no task failure handler may swallow."""
    if isinstance(error, KeyboardInterrupt | SystemExit | GeneratorExit):
        return True
    # Looked up, not imported: streams run without trio in tests and tools.
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(error, trio.Cancelled)


# The one module-level handle: which runtime is in effect in this context (a
# thread, a trio task). The runtime holds the state; ``with runtime:`` sets it.
_runtime: ContextVar[Runtime] = ContextVar("rillet_runtime")


def current_runtime() -> Runtime:
    """The runtime in effect; outside any ``with runtime:`` block, one made for
    this context on first use (as :func:`decimal.getcontext` does)."""
    try:
        return _runtime.get()
    except LookupError:
        from ._runtime import Runtime

        ambient = Runtime()
        _runtime.set(ambient)
        return ambient


def scheduler() -> Scheduler:
    """The clock and scheduler of the runtime in effect."""
    try:
        return _runtime.get().clock
    except LookupError:
        return current_runtime().clock


def now() -> float:
    """The current time of the runtime in effect, in seconds."""
    try:
        return _runtime.get().clock.now()
    except LookupError:
        return current_runtime().clock.now()


def next_tick(anchor: float, dt: float, t: float) -> float:
    """The next window boundary ``anchor + k*dt`` strictly after ``t``.

    >>> next_tick(0, 2, 2), next_tick(1, 2, 1), next_tick(4, 2, 2)
    (4, 3, 4)
    """
    # Counting whole windows from the anchor keeps every boundary at anchor + k*dt
    # exactly; stepping from t (t + dt - (t - anchor) % dt) drifts by a rounding
    # error, which put the boundary after 22.078 at 30.000000000000004, so an
    # event at 30.0 was still counted in the previous window.
    windows = math.floor((t - anchor) / dt) + 1
    tick = anchor + windows * dt
    return tick if tick > t else anchor + (windows + 1) * dt
