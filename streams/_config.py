"""Config scripts: a monitoring.py declares streams, the index and services.

Loading runs the script against a fresh, pending :class:`Config`; only a
script that ran to the end yields one, so a reload (or a test) never sees a
half-built config. A mistake fails at load with the file, the line and the
problem.
"""

from __future__ import annotations

import builtins
import contextlib
import difflib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _compiled
from ._clock import current_runtime
from ._core import Child, Stream, entry_point, refuse_idle_judge, report_failure
from ._validate import StreamArgumentError, seconds

__all__ = [
    "Config", "ConfigError", "load_config", "periodically_expire", "reinject", "service",
    "streams",
]


@dataclass
class Config:
    """What a config script declared: top-level streams, services, index expiry."""

    streams: list[Child] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)
    expire_interval: float | None = None
    keep_keys: tuple[str, ...] | str = ("host", "service")
    source: str = "<memory>"
    #: The runtime the config was loaded into or runs in (``Runtime.load``/``start``).
    runtime: Any = field(default=None, repr=False, compare=False)

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
        if _compiled.speedups is not None:
            return _compiled.speedups.Dispatch(calls, report_failure)  # type: ignore[no-any-return]

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


def pending() -> Config:
    """The config being declared right now (the runtime's; see :func:`declaring`)."""
    return current_runtime().declaring


@contextlib.contextmanager
def declaring(config: Config) -> Iterator[Config]:
    """Make ``config`` the target of ``streams(...)`` and friends inside the block."""
    runtime = current_runtime()
    previous, runtime.declaring = runtime.declaring, config
    try:
        yield config
    finally:
        runtime.declaring = previous


def streams(*children: Child) -> None:
    """Declare top-level streams: every incoming event goes to each, in order.

    May be called several times; the order is kept.
    """
    for child in children:
        refuse_idle_judge(child, "streams(...)")
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
    runtime = current_runtime()
    if runtime.service_hook is not None:
        runtime.service_hook(declared)
    runtime.declaring.services.append(declared)
    return declared


def load_config(path: str | Path) -> Config:
    """Run a config script and return what it declared.

    The script runs as a program would: its directory is importable, so it
    may import rule modules that sit next to it, and those modules are read
    again at every load (a reload picks up their changes).

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    ...     _ = f.write("from streams import *\\nstreams(where(lambda e: True, print))\\n")
    >>> len(load_config(f.name).streams); os.unlink(f.name)
    1
    """
    path = Path(path)
    source = _read(path)
    config = Config(source=str(path))
    directory = str(path.resolve().parent)
    _forget_modules_in(directory)
    # A config inside a package (rillet's built-in one) imports through the
    # package: its directory on the path would shadow modules by its files' names.
    if directory not in sys.path and not (path.resolve().parent / "__init__.py").exists():
        sys.path.insert(0, directory)
    with declaring(config):
        try:
            code = compile(source, str(path), "exec")
        except SyntaxError as error:
            raise ConfigError(_syntax_error(error)) from error
        try:
            # Run as a script, without runpy: its frames would show in tracebacks.
            exec(code, {"__name__": "__rillet_config__", "__file__": str(path),
                        "__builtins__": builtins})
        except SyntaxError as error:  # in a module the config imports
            raise ConfigError(_syntax_error(error)) from error
        except Exception as error:
            raise ConfigError(_locate(error, path)) from error
    if not config.streams:
        raise ConfigError(
            f"{path}: the config declares no streams; add for example "
            f"streams(index) so events reach the index"
        )
    return config


def _read(path: Path) -> str:
    """The script's text, or a plain ConfigError saying why it cannot be had."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give the path of a monitoring .py script, "
                          f"e.g. {path / 'monitoring.py'}")
    if not path.exists():
        raise ConfigError(f"{path}: no such config file; give the path of a monitoring .py script")
    try:
        source = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: is not UTF-8 text ({error.reason} at byte {error.start}); "
                          f"a config is a Python script") from None
    if path.suffix == ".config" or _looks_like_clojure(source):
        raise ConfigError(
            f"{path}: this looks like a Riemann (Clojure) config; rillet's config is a Python "
            f"script (monitoring.py). docs/coming-from-riemann.md shows each Riemann form "
            f"in Python, e.g. (tcp-server) is tcp_server() and (streams (where ...)) is "
            f"streams(where(...))"
        )
    return source


def _looks_like_clojure(source: str) -> bool:
    for line in source.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(";"):
            return stripped.startswith("(")
    return False


def _forget_modules_in(directory: str) -> None:
    """Drop the modules imported from the config's directory, so they are read afresh."""
    for name, _ in _modules_from(directory):
        del sys.modules[name]


def _modules_from(directory: str) -> list[tuple[str, str]]:
    """The config's own modules: (name, file) of those imported from its directory.

    rillet's own packages, installed ones and pytest's test files are left
    out, even when the config sits at the root of a checkout that holds them.
    """
    prefix = directory.rstrip(os.sep) + os.sep
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or not file.startswith(prefix) or not _forgettable(name):
            continue
        if "site-packages" in file or "dist-packages" in file:
            continue
        found.append((name, file))
    return found


def source_files(config: Config) -> list[Path]:
    """The files a config was read from: its script and the modules next to it
    that it imports (what a reload reads again)."""
    script = Path(config.source)
    return [script, *sorted(Path(f) for _, f in _modules_from(str(script.resolve().parent)))]


_NEVER_FORGOTTEN = frozenset({"streams", "transport", "__main__", "conftest"})


def _forgettable(name: str) -> bool:
    # pytest imports the test files that sit beside a config; they stay.
    top = name.split(".")[0]
    return top not in _NEVER_FORGOTTEN and not top.startswith("test_")


def _syntax_error(error: SyntaxError) -> str:
    where = f"{error.filename}:{error.lineno}"
    message = f"{where}: syntax error: {error.msg}"
    if error.text:
        text = error.text.rstrip("\n")
        stripped = text.lstrip()
        message += f"\n    {stripped}"
        if error.offset:
            caret = max(error.offset - 1 - (len(text) - len(stripped)), 0)
            message += f"\n    {' ' * caret}^"
    return message


def _locate(error: Exception, path: Path) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    resolved = str(path.resolve())
    inside = [f for f in frames if Path(f.filename).resolve().as_posix() == resolved]
    where = inside[-1] if inside else (frames[-1] if frames else None)
    location = f"{where.filename}:{where.lineno}" if where else str(path)
    line = f"\n    {where.line}" if where and where.line else ""
    return f"{location}: {type(error).__name__}: {error}{_suggestion(error)}{line}"


def _suggestion(error: Exception) -> str:
    """Python's "Did you mean ...?" for a misspelled name, which only its own
    traceback printer adds (Python 3.11)."""
    name = getattr(error, "name", None)
    if not isinstance(error, NameError) or not isinstance(name, str):
        return ""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    frame = tb.tb_frame
    known = [*frame.f_locals, *frame.f_globals, *frame.f_builtins]
    close = difflib.get_close_matches(name, known, n=1)
    return f". Did you mean: {close[0]!r}?" if close else ""


class reinject(Stream):
    """Send events back through the running config's top-level streams (Riemann's ``reinject``).

    Careful: an event that reaches ``reinject`` again loops forever; change it
    first (for example ``with_({"service": "derived"}, reinject())``) and
    make sure the changed event does not come back.

    >>> from streams import Runtime
    >>> seen = []
    >>> with Runtime() as runtime:
    ...     runtime.start(Config(streams=[seen.append]))
    ...     reinject()("again")
    >>> seen
    ['again']
    """

    __slots__ = ()
    shared = True

    def __init__(self) -> None:
        self._set_children(())

    def __call__(self, event: Any) -> None:
        current_runtime().dispatch(event)
