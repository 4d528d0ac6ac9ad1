"""The production scheduler: wall-clock time, tasks run by one trio task."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from streams import Scheduler, Task

__all__ = ["TrioScheduler"]


class TrioScheduler(Scheduler):
    """Streams' timers on the wall clock, run inside the server's nursery.

    ``now()`` is Unix time in seconds, the time base of events on the wire.
    ``run()`` sleeps until the earliest task is due, or until a task is added
    that is due sooner, then runs everything due.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        # Streams ask for the time on every event: bind the clock itself, a C
        # function for time.time, instead of going through a Python method.
        self.now = clock  # type: ignore[method-assign]
        self._wakeup: trio.Event | None = None
        self._sleeping_until = float("inf")
        self.runs = 0

    def now(self) -> float:
        return self._clock()

    def _push(self, task: Task) -> Task:
        super()._push(task)
        if task.due < self._sleeping_until and self._wakeup is not None:
            self._wakeup.set()
        return task

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run due tasks forever; start it in the server's nursery."""
        task_status.started()
        while True:
            due = self.next_due
            self._wakeup = trio.Event()
            self._sleeping_until = float("inf") if due is None else due
            if due is None:
                await self._wakeup.wait()
            else:
                delay = due - self.now()
                if delay > 0:
                    with trio.move_on_after(delay):
                        await self._wakeup.wait()
            self._wakeup = None
            self._sleeping_until = float("-inf")
            now = self.now()
            recorder = self.runtime.recorder if self.runtime is not None else None
            if recorder is not None and (due := self.next_due) is not None and due <= now:
                recorder.tick(now)  # a replay runs the timers at this very time
            self.runs += self.run_due(now)
            await trio.lowlevel.checkpoint()

    def statistics(self) -> dict[str, float]:
        return {"pending": len(self), "runs": self.runs}
