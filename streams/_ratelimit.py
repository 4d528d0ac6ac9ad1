"""Log repeated messages once per interval with a count, so a failure that repeats on every
event costs a counter increment, not a traceback per event.

>>> import logging
>>> seen = []
>>> class Collect(logging.Handler):
...     def emit(self, record): seen.append(record.getMessage())
>>> logger = logging.getLogger("rillet.doctest.ratelimit")
>>> logger.addHandler(Collect()); logger.propagate = False
>>> now = [0.0]
>>> limited = LogLimiter(logger, interval=10, clock=lambda: now[0])
>>> for _ in range(5):
...     _ = limited.warning("k", "disk %s is full", "sda")
>>> now[0] = 11.0
>>> limited.warning("k", "disk %s is full", "sda")
True
>>> seen
['disk sda is full', 'disk sda is full (and 4 more like it in the last 11 s)']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["DEFAULT_LOG_INTERVAL", "LogLimiter"]

#: Seconds between two log lines about the same repeated thing.
DEFAULT_LOG_INTERVAL = 10.0


class LogLimiter:
    """Pass the first message per key, then at most one per ``interval`` seconds with the
    number held back since the last one.

    Keys name what repeats (an exception type and where it was raised, a peer's
    failure kind). At most ``max_keys`` are remembered; the oldest is forgotten
    first, which at worst logs it once more.
    """

    __slots__ = ("_clock", "_keys", "interval", "logger", "max_keys", "suppressed")

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_LOG_INTERVAL, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 1024) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        # key -> [time of the last line logged, messages held back since]
        self._keys: dict[Hashable, list[float]] = {}
        self.suppressed = 0

    def log(self, level: int, key: Hashable, message: str, *args: Any,
            exc_info: BaseException | None = None) -> bool:
        """Log unless ``key`` was logged less than ``interval`` ago; True if logged."""
        now = self._clock()
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            self.suppressed += 1
            return False
        if entry is not None and entry[1]:
            message = f"{message} (and %d more like it in the last %.0f s)"
            args = (*args, int(entry[1]), now - entry[0])
        if entry is None and len(self._keys) >= self.max_keys:
            del self._keys[next(iter(self._keys))]
        self._keys[key] = [now, 0]
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, key: Hashable, message: str, *args: Any,
                exc_info: BaseException | None = None) -> bool:
        return self.log(logging.WARNING, key, message, *args, exc_info=exc_info)

    def error(self, key: Hashable, message: str, *args: Any,
              exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, key, message, *args, exc_info=exc_info)

    def __repr__(self) -> str:
        return f"LogLimiter({self.logger.name!r}, interval={self.interval!r})"
