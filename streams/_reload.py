"""What survives a reload: a stream whose definition did not change keeps its state.

A freshly loaded config is made of new objects. Before it is swapped in,
every subtree of it whose *definition* equals that of a subtree of the
running config is replaced by the running object, state and timers included;
what changed starts fresh. Services (servers, sinks' delivery tasks) are
matched the same way, so an unchanged listener keeps its socket and an
unchanged sink its queue.

Two definitions are equal when (see :func:`definition`):

- streams: same class, and equal recorded constructor arguments (children
  included, so a stream is unchanged only if its whole subtree is);
- functions and lambdas: same code (bytecode, constants, names; line numbers
  do not count), equal default arguments, equal closure values, and equal
  values of the globals the code reads. Two lambdas that print alike but
  read different thresholds are different;
- numbers, strings, tuples, lists, dicts, sets, regexes: equal values of the
  same types (``1``, ``1.0`` and ``True`` differ);
- the config's own modules (read again at every load): equal contents; its
  classes: same name and equal methods. Functions, classes and modules of
  libraries (rillet, the standard library, installed packages) are never
  re-imported: they compare as themselves;
- dataclasses (servers): equal fields among those their repr shows;
- anything else: the same object, or equal by ``==`` when hashable.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._core import Stream
from ._nodes import nodes

log = logging.getLogger("rillet.reload")

__all__ = ["Carried", "carry_over", "definition"]

_PLAIN = (int, float, complex, str, bytes, bool, type(None), type(Ellipsis))


def definition(value: Any) -> Any:
    """A hashable value equal for two objects exactly when their definitions are.

    >>> config = {"__name__": "monitoring"}   # what a config script defines
    >>> exec("def above(limit):\\n"
    ...      "    return lambda e: e.metric > limit\\n"
    ...      "same = lambda e: e.metric > 5\\n"
    ...      "alike = lambda e: e.metric > 5\\n", config)
    >>> definition(config["same"]) == definition(config["alike"])
    True
    >>> from streams import index, where
    >>> five, six = where(config["above"](5), index), where(config["above"](6), index)
    >>> five, six                          # they print alike ...
    (where(<lambda>, index), where(<lambda>, index))
    >>> definition(five) == definition(six)   # ... but read different limits
    False
    """
    return _Definer().of(value)


class _Definer:
    """One walk; remembers objects on the way, so cycles (a recursive function,
    a function among the globals it reads) end."""

    def __init__(self) -> None:
        self.visiting: dict[int, int] = {}
        # Streams are defined once per walk (a parent's definition holds its
        # children's); the objects outlive the walk, so their ids are stable.
        self.streams: dict[int, Any] = {}

    def of(self, value: Any) -> Any:
        kind = type(value)
        if kind in _PLAIN:
            return (kind.__name__, value)
        key = id(value)
        if key in self.streams:
            return self.streams[key]
        if key in self.visiting:
            return ("cycle", self.visiting[key])
        self.visiting[key] = len(self.visiting)
        try:
            found = self._compound(value)
        finally:
            del self.visiting[key]
        if isinstance(value, Stream):
            self.streams[key] = found
        return found

    def _compound(self, value: Any) -> Any:
        if getattr(value, "compared_by_identity", False):
            return ("object", id(value))
        if isinstance(value, Stream):
            kind = type(value)
            # A stream class of the config's own is compared by its code too.
            own = kind.__module__.split(".")[0] not in ("streams", "transport")
            return ("stream", self.of(kind) if own else _name(kind), self.many(value._args),
                    tuple((k, self.of(v)) for k, v in value._kwargs.items()))
        if type(value) in (tuple, list):
            return (type(value).__name__, self.many(value))
        if type(value) in (set, frozenset):
            return (type(value).__name__, frozenset(self.many(value)))
        if type(value) is dict:
            return ("dict", tuple((self.of(k), self.of(v)) for k, v in value.items()))
        if isinstance(value, types.FunctionType):
            if _from_library(value.__module__):
                return ("object", id(value))  # libraries are never re-imported
            return self.function(value)
        if isinstance(value, types.MethodType):
            return ("method", self.of(value.__self__), self.of(value.__func__))
        if isinstance(value, functools.partial):
            return ("partial", self.of(value.func), self.many(value.args),
                    self.of(value.keywords))
        if isinstance(value, re.Pattern):
            return ("regex", value.pattern, value.flags)
        if isinstance(value, types.ModuleType):
            if _from_library(value.__name__):
                return ("module", value.__name__)
            # A module of the config's own is read again at every load: what
            # a rule reads through it (checks.LIMIT) is part of the rule.
            return ("module", value.__name__, tuple(
                (name, self.of(member)) for name, member in sorted(vars(value).items())
                if not name.startswith("__")))
        if isinstance(value, type):
            if _from_library(value.__module__):
                return ("class", _name(value))
            return ("class", _name(value), tuple(
                (name, self.of(member)) for name, member in vars(value).items()
                if isinstance(member, types.FunctionType)))
        if dataclasses.is_dataclass(value):
            return ("dataclass", _name(type(value)), tuple(
                (f.name, self.of(getattr(value, f.name)))
                for f in dataclasses.fields(value) if f.repr))
        try:
            hash(value)
        except TypeError:
            return ("object", id(value))
        if getattr(type(value), "__eq__", None) is object.__eq__:
            return ("object", id(value))
        return ("value", _name(type(value)), value)

    def many(self, values: Iterable[Any]) -> tuple[Any, ...]:
        return tuple(self.of(v) for v in values)

    def function(self, function: types.FunctionType) -> Any:
        code = function.__code__
        cells = function.__closure__ or ()
        scope = function.__globals__
        read = sorted(n for n in _global_names(code) if n in scope)
        return ("function", _name(function), self.code(code), self.of(function.__defaults__),
                self.of(function.__kwdefaults__),
                tuple(self.of(_cell(c)) for c in cells),
                tuple((n, self.of(scope[n])) for n in read))

    def code(self, code: types.CodeType) -> Any:
        consts = tuple(self.code(c) if isinstance(c, types.CodeType) else self.of(c)
                       for c in code.co_consts)
        return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars,
                code.co_cellvars, code.co_argcount, code.co_posonlyargcount,
                code.co_kwonlyargcount, code.co_flags)


_EMPTY = object()


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet
        return _EMPTY


def _from_library(module_name: str) -> bool:
    """Whether a module is rillet's, the standard library's or an installed one,
    none of which a reload imports again (unlike the config and its own modules)."""
    if module_name.split(".")[0] in ("streams", "transport", "builtins"):
        return True
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module is None:
        return False  # the config script itself runs under a name of its own
    if file is None:
        return True  # built into the interpreter
    return file.startswith(_LIBRARY_PREFIXES) or "site-packages" in file \
        or "dist-packages" in file


_LIBRARY_PREFIXES = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _name(kind: Any) -> str:
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', '?')}"


@dataclass
class Carried:
    """The outcome of :func:`carry_over`.

    Attributes:
        streams: the new config's top-level streams, unchanged subtrees being
            the running objects.
        kept: running stateful streams reused as they were (their state survives).
        fresh: new stateful streams that start with empty state.
        fresh_nodes: their node ids in the new config (see ``streams._nodes``), what
            the reload log names.
        kept_services / started_services / stopped_services: services reused,
            to start, and to stop.
    """

    streams: list[Any] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)
    kept: list[Any] = field(default_factory=list)
    fresh: list[Any] = field(default_factory=list)
    fresh_nodes: list[str] = field(default_factory=list)
    kept_services: list[Any] = field(default_factory=list)
    started_services: list[Any] = field(default_factory=list)
    stopped_services: list[Any] = field(default_factory=list)
    _retired: list[Any] = field(default_factory=list, repr=False)

    def retire(self) -> None:
        """Stop the timers of the running streams that the new config does not reuse,
        and of the freshly built streams that were replaced; call it after the swap."""
        live = _reachable(self.streams)
        for stream in self._retired:
            try:
                _close_own(stream, live)
            except Exception:
                # The new config runs already; a stream that fails to close
                # must not undo that, nor spare the others their closing.
                log.exception("reload: closing %r failed", stream)


def carry_over(old_streams: list[Any], old_services: list[Any],
               new_streams: list[Any], new_services: list[Any]) -> Carried:
    """Rewrite a newly loaded config so that its unchanged parts are the running ones.

    >>> from streams import rate
    >>> from streams.testing import Sink
    >>> sink = Sink()
    >>> running = rate(5, sink)
    >>> carried = carry_over([running], [], [rate(5, sink)], [])
    >>> carried.streams[0] is running
    True
    >>> changed = carry_over([running], [], [rate(10, sink)], [])
    >>> changed.streams[0] is running, changed.fresh_nodes
    (False, ['streams[0]/rate'])
    """
    definer = _Definer()
    available: dict[Any, list[Any]] = {}
    for stream in _walk(old_streams):
        available.setdefault(definer.of(stream), []).append(stream)
    carried = Carried()
    memo: dict[int, Any] = {}
    built_new: list[Any] = list(_walk(new_streams))

    def carry(value: Any) -> Any:
        if isinstance(value, Stream):
            return carry_stream(value)
        if type(value) in (list, tuple):
            items = [carry(v) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return type(value)(items)
        return value

    # An old stream serves one place: once it (or a stream around it) is taken,
    # neither it nor anything inside it is offered again.
    taken: set[int] = set()

    def free(candidate: Any) -> bool:
        return candidate.shared or all(id(s) not in taken for s in _walk([candidate]))

    def take(candidate: Any) -> None:
        taken.update(id(s) for s in _walk([candidate]) if not s.shared)

    def carry_stream(stream: Stream) -> Any:
        if id(stream) in memo:
            return memo[id(stream)]
        candidates = [c for c in available.get(definer.of(stream), ()) if free(c)]
        if candidates:
            # The very object when it runs already (a sink built outside the
            # config), else the first running one of the same definition.
            result = next((c for c in candidates if c is stream), candidates[0])
            if not stream.shared:
                take(result)
                carried.kept.append(result)
        else:
            args = tuple(carry(a) for a in stream._args)
            kwargs = {k: carry(v) for k, v in stream._kwargs.items()}
            same = all(a is b for a, b in zip(args, stream._args, strict=True)) and all(
                kwargs[k] is v for k, v in stream._kwargs.items())
            # A changed stream around reused children is built again around them.
            result = stream if same else type(stream)(*args, **kwargs)
            if not stream.shared:
                carried.fresh.append(result)
        memo[id(stream)] = result
        return result

    carried.streams = [carry(s) for s in new_streams]
    fresh = {id(s) for s in carried.fresh}
    carried.fresh_nodes = [node.id for node in nodes(carried.streams) if id(node.stream) in fresh]
    old_by_definition: dict[Any, list[Any]] = {}
    for service in old_services:
        old_by_definition.setdefault(definer.of(service), []).append(service)
    for service in new_services:
        service = memo.get(id(service), service)
        if any(service is s for s in carried.services):
            continue
        if any(service is s for s in old_services):
            carried.kept_services.append(service)
        else:
            same_definition = old_by_definition.get(definer.of(service))
            if same_definition:
                service = same_definition.pop(0)
                carried.kept_services.append(service)
            else:
                carried.started_services.append(service)
        carried.services.append(service)
    carried.stopped_services = [s for s in old_services
                                if not any(s is k for k in carried.kept_services)]
    carried._retired = [*old_streams, *built_new]
    return carried


def _walk(streams: Iterable[Any]) -> Iterable[Any]:
    """Every stream of the trees, parents before children, each once (the node walk)."""
    return (node.stream for node in nodes(streams))


def _reachable(streams: Iterable[Any]) -> set[int]:
    return {id(s) for s in _walk(streams)}


def _close_own(stream: Any, live: set[int]) -> None:
    """Close a stream that left the config, sparing what the new config still runs."""
    if not isinstance(stream, Stream) or stream.shared or id(stream) in live:
        return
    children = stream.children
    spared = tuple(c for c in children if id(c) in live or _reaches(c, live))
    if not spared:
        stream.close()
        return
    for child in children:
        if all(child is not s for s in spared):
            _close_own(child, live)
    for child in spared:
        _close_own(child, live)
    # Close the stream's own timers only: hide the children it still shares.
    stream.children = tuple(c for c in children if all(c is not s for s in spared))
    try:
        stream.close()
    finally:
        stream.children = children


def _reaches(stream: Any, live: set[int]) -> bool:
    return any(id(s) in live for s in _walk([stream]))
