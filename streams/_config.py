"""Config scripts: a monitoring.py declares streams, the index and services.

Loading runs the script against a fresh, pending :class:`Config`; only a
script that ran to the end yields one, so a reload (or a test) never sees a
half-built config. A mistake fails at load with the file, the line and the
problem.
"""

from __future__ import annotations

import contextlib
import runpy
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._core import Child, Stream, entry_point, report_failure
from ._validate import StreamArgumentError, seconds

__all__ = [
    "Config", "ConfigError", "install_reinject", "load_config", "periodically_expire",
    "reinject", "service", "streams",
]


@dataclass
class Config:
    """What a config script declared: top-level streams, services, index expiry."""

    streams: list[Child] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)
    expire_interval: float | None = None
    keep_keys: tuple[str, ...] | str = ("host", "service")
    source: str = "<memory>"

    def dispatcher(self, index: Any = None) -> Callable[[Any], object]:
        """One callable that feeds an event to every top-level stream in order.

        Each top-level stream is isolated: when one fails the others still
        run, and the first failure is raised afterwards (so that a TCP client
        gets an error reply, as with Riemann); later ones are reported here.
        The caller reports the failure it catches. With ``index`` given, the
        config-level ``index`` stream is bound straight to it.
        """
        from ._index import index as index_stream

        calls = tuple(
            index.__call__ if index is not None and s is index_stream else entry_point(s)
            for s in self.streams
        )
        if len(calls) == 1:
            return calls[0]

        def dispatch(event: Any) -> None:
            failure: Exception | None = None
            for call in calls:
                try:
                    call(event)
                except Exception as error:
                    if failure is None:
                        failure = error
                    else:
                        report_failure(error, event)
            if failure is not None:
                raise failure

        return dispatch

    def close(self) -> None:
        """Stop the timers of every top-level stream."""
        for s in self.streams:
            if isinstance(s, Stream) and not s.shared:
                s.close()


class ConfigError(Exception):
    """A config script failed to load; the message names file, line and problem."""


_pending: list[Config] = [Config()]


def pending() -> Config:
    """The config being declared right now."""
    return _pending[-1]


@contextlib.contextmanager
def declaring(config: Config) -> Iterator[Config]:
    """Make ``config`` the target of ``streams(...)`` and friends inside the block."""
    _pending.append(config)
    try:
        yield config
    finally:
        _pending.pop()


def streams(*children: Child) -> None:
    """Declare top-level streams: every incoming event goes to each, in order.

    May be called several times; the order is kept.
    """
    for child in children:
        if not callable(child):
            raise StreamArgumentError(
                f"streams(*children): every top-level stream must be a stream, got {child!r}"
            )
    pending().streams.extend(children)


def periodically_expire(interval: float = 10, keep_keys: tuple[str, ...] | str = ("host", "service")
                        ) -> None:
    """Sweep the index every ``interval`` seconds and stream expired events.

    ``keep_keys`` are the fields kept on each expired event ("all" keeps all).
    """
    interval = seconds(interval, "periodically_expire(interval=10, keep_keys=...)",
                       "interval", "periodically_expire(10)")
    config = pending()
    config.expire_interval = interval
    config.keep_keys = keep_keys


def service(declared: Any) -> Any:
    """Add a service (a server, a sink's delivery task) to the config being loaded."""
    pending().services.append(declared)
    return declared


def load_config(path: str | Path) -> Config:
    """Run a config script and return what it declared.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    ...     _ = f.write("from streams import *\\nstreams(where(lambda e: True, print))\\n")
    >>> len(load_config(f.name).streams); os.unlink(f.name)
    1
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; give the path of a monitoring .py script")
    config = Config(source=str(path))
    with declaring(config):
        try:
            runpy.run_path(str(path), run_name="__rillet_config__")
        except SyntaxError as error:
            raise ConfigError(
                f"{error.filename}:{error.lineno}: syntax error: {error.msg}"
            ) from error
        except Exception as error:
            raise ConfigError(_locate(error, path)) from error
    if not config.streams:
        raise ConfigError(
            f"{path}: the config declares no streams; add for example "
            f"streams(index) so events reach the index"
        )
    return config


def _locate(error: Exception, path: Path) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    resolved = str(path.resolve())
    inside = [f for f in frames if Path(f.filename).resolve().as_posix() == resolved]
    where = inside[-1] if inside else (frames[-1] if frames else None)
    location = f"{where.filename}:{where.lineno}" if where else str(path)
    line = f"\n    {where.line}" if where and where.line else ""
    return f"{location}: {type(error).__name__}: {error}{line}"


def _nowhere(event: Any) -> None:
    raise RuntimeError(
        "reinject: no config is running; inside tests use streams.testing.inject(config, events)"
    )


_reinject_target: list[Callable[[Any], object]] = [_nowhere]


def install_reinject(dispatch: Callable[[Any], object]) -> Callable[[Any], object]:
    """Make ``reinject`` feed ``dispatch`` (the running config's top-level streams)."""
    previous = _reinject_target[0]
    _reinject_target[0] = dispatch
    return previous


class reinject(Stream):
    """Send events back through the running config's top-level streams (Riemann's ``reinject``).

    Careful: an event that reaches ``reinject`` again loops forever; change it
    first (for example ``with_({"service": "derived"}, reinject())``) and
    make sure the changed event does not come back.

    >>> seen = []
    >>> previous = install_reinject(seen.append)
    >>> reinject()("again"); seen
    ['again']
    >>> _ = install_reinject(previous)
    """

    __slots__ = ()
    shared = True

    def __init__(self) -> None:
        self._set_children(())

    def __call__(self, event: Any) -> None:
        _reinject_target[0](event)
