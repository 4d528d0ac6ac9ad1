"""Checkpoints: a replay's whole state at a block boundary, so explain starts near its question.

``rillet replay CONFIG --recording R --checkpoints FILE`` stores, every
``--checkpoint-every`` of recorded time (at the first block boundary after
it), everything the rest of the replay depends on:

- the state of every stream of the config (each one's private slots that are
  not its definition: window contents, throttle budgets, ``by``'s per-key
  streams, pending timers), keyed by the stream's position in the walk of
  the config's nodes (``streams._nodes``, parents before children);
- the index (its events and expiry bookkeeping) and the clock (its time and
  every pending timer, in order);
- where the replay stood: the recording file and block, the alerts and
  requests so far.

At the end it adds the alert log with each alert's lineage (the request that
triggered it), so ``rillet explain --alert N`` finds the alert without
replaying anything and replays from the nearest checkpoint before its input.

Definitions are not stored: the config is loaded afresh and the stored state
is put into its streams. Functions a state holds (timer callbacks, lambdas of
the streams ``by`` built per key) are stored by their code (``marshal``), their
closure's values and a reference to their module, so a checkpoint is only
read by the same rillet and Python version, for the same config and
recording bytes (all four are in its header and checked). A state that cannot
be stored (an expiry sweep half done holds a generator) postpones the
checkpoint to the next block.

File layout::

    file    = "RRLTCKP1" u32:len JSON{format, config_sha256, recording_sha256,
              rillet_version, python, every} record*
    record  = u8:kind (1 checkpoint, 2 alert log) u32:len JSON{meta} u32:len zstd(pickle)
"""

from __future__ import annotations

import functools
import io
import json
import logging
import marshal
import pickle
import struct
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from streams import Event
from streams._compiled import entry_types
from streams._core import WIRING
from streams._nodes import nodes

__all__ = ["Checkpoint", "CheckpointError", "CheckpointReader", "CheckpointWriter",
           "capture_state", "restore_state"]

log = logging.getLogger("rillet.checkpoint")

MAGIC = b"RRLTCKP1"
FORMAT = "rillet.checkpoints/1"
_CHECKPOINT, _ALERTS = 1, 2
_U32 = struct.Struct("<I")
_CONFIG_MODULE = "__rillet_config__"
# What every stream holds and is not state: its wiring (and the dict of a class
# without __slots__, whose entries are read one by one).
_WIRING = WIRING | {"__dict__"}
_DEFINITION = (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
               functools.partial, *entry_types())
_INDEX_STATE = ("_events", "_expired", "_inserts", "_lazy_ids", "_reaping")
_REAPER_STATE = ("task", "_continue", "_sweeping")


class CheckpointError(Exception):
    """A checkpoint file that does not belong to this config, recording or rillet."""


# The world: the objects a checkpoint refers to instead of storing ----------------

class _World:
    """The long-lived objects of a replay, each with a name that is the same in
    the replay that stores a checkpoint and the one that loads it."""

    def __init__(self, runtime: Any) -> None:
        # Stored by position in the node walk: its order is part of the file format.
        self.nodes = [node.stream for node in nodes(runtime.config.streams)]
        named: dict[Any, Any] = {("node", i): node for i, node in enumerate(self.nodes)}
        named[("runtime",)] = runtime
        named[("clock",)] = runtime.clock
        named[("index",)] = runtime.index
        named[("pubsub",)] = runtime.pubsub
        named[("dispatch",)] = runtime.dispatch
        named[("config",)] = runtime.config
        reaper = getattr(runtime.index, "_reaper", None)
        if reaper is not None:
            named[("reaper",)] = reaper
        self.reaper = reaper
        for namespace in _config_namespaces(self.nodes):
            named[("namespace", namespace.get("__file__"))] = namespace
        self.by_name = named
        self.by_id = {id(obj): name for name, obj in named.items()}


def _config_namespaces(nodes: list[Any]) -> list[dict[str, Any]]:
    """The namespaces of the config scripts, reached through the functions its
    streams were built with."""
    found: dict[int, dict[str, Any]] = {}
    pending: list[Any] = [value for node in nodes for value in (*node._args,
                                                                *node._kwargs.values())]
    seen: set[int] = set()
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, types.FunctionType):
            scope = value.__globals__
            if scope.get("__name__") == _CONFIG_MODULE:
                found[id(scope)] = scope
            pending.extend(value.__defaults__ or ())
            pending.extend(_cell(c) for c in value.__closure__ or ())
        elif isinstance(value, functools.partial):
            pending.extend((value.func, *value.args))
        elif type(value) in (list, tuple):
            pending.extend(value)
        elif type(value) is dict:
            pending.extend(value.values())
    return list(found.values())


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return None


def _module_namespaces() -> dict[int, tuple[Any, ...]]:
    """Module namespaces, and rillet's module-level objects (sentinels such as
    changed_state's "no previous state", whose class pickle cannot find); each
    name is kept with its object, so no id is reused while the map lives."""
    found: dict[int, tuple[Any, ...]] = {}
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType):
            continue
        namespace = vars(module)
        found[id(namespace)] = (("module", name), namespace)
        if name.split(".")[0] in ("streams", "transport"):
            for member, value in list(namespace.items()):
                if not isinstance(value, (type, types.ModuleType, types.FunctionType, *_PLAIN)):
                    found.setdefault(id(value), (("global", name, member), value))
    return found


_PLAIN = (int, float, str, bytes, bool, type(None), tuple, frozenset)


# Storing ---------------------------------------------------------------------------

def _rebuild_event(fields: dict[str, Any]) -> Event:
    return Event(**fields)


def _rebuild_function(code: bytes, scope: tuple[Any, ...], name: str, qualname: str,
                      defaults: Any, kwdefaults: Any, cells: tuple[Any, ...]) -> Any:
    function = types.FunctionType(marshal.loads(code), _named(scope), name, defaults,
                                  tuple(types.CellType(v) for v in cells) or None)
    function.__qualname__ = qualname
    function.__kwdefaults__ = kwdefaults
    return function


def _importable(function: types.FunctionType) -> bool:
    module = sys.modules.get(function.__module__ or "")
    found: Any = module
    for part in function.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is function


class _Pickler(pickle.Pickler):
    def __init__(self, file: BinaryIO, world: _World) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.world = world
        modules = _module_namespaces()
        self.modules = modules  # keeps what it names alive: no id is reused meanwhile
        names = {key: name for key, (name, _value) in modules.items()}
        for name, namespace in world.by_name.items():
            if name[0] == "namespace":
                names.update((id(value), ("class", key)) for key, value in namespace.items()
                             if isinstance(value, type) and value.__module__ == _CONFIG_MODULE)
        names.update(world.by_id)
        self._names = names

    def reducer_override(self, obj: Any) -> Any:
        # Called for every object stored but numbers, strings and those stored
        # already (unlike persistent_id, called for every number too).
        name = self._names.get(id(obj))
        if name is not None:
            return _named, (name,)
        if isinstance(obj, Event):
            # Decoded wire events are lazy and do not pickle; their fields do.
            return _rebuild_event, (obj.as_dict(),)
        if type(obj) is types.FunctionType and not _importable(obj):
            # Namespaces are dicts, which reducer_override never sees: named here.
            scope = self._names.get(id(obj.__globals__))
            if scope is None:
                raise pickle.PicklingError(f"{obj.__qualname__}: its module is unknown")
            return _rebuild_function, (
                marshal.dumps(obj.__code__), scope, obj.__name__, obj.__qualname__,
                obj.__defaults__, obj.__kwdefaults__,
                tuple(_cell(c) for c in obj.__closure__ or ()))
        return NotImplemented


# The world of the state being loaded (a load runs on one thread, start to end).
_loading: list[_World] = []


def _named(pid: tuple[Any, ...]) -> Any:
    """The object a stored name stands for, in the world being loaded."""
    world = _loading[-1]
    if pid[0] == "module":
        return vars(sys.modules[pid[1]])
    if pid[0] == "global":
        return getattr(sys.modules[pid[1]], pid[2])
    if pid[0] == "class":
        for namespace in (v for k, v in world.by_name.items() if k[0] == "namespace"):
            found: Any = namespace
            for part in pid[1].split("."):
                found = found.get(part) if isinstance(found, dict) else getattr(found, part)
            if found is not None:
                return found
    try:
        return world.by_name[pid]
    except KeyError:
        raise pickle.UnpicklingError(f"the config has no {pid}: is it the one the "
                                     f"checkpoint was taken with?") from None


def _slots(obj: Any, names: Any = None) -> dict[str, Any]:
    """A stream's state: its private slots that hold values, not definitions."""
    out: dict[str, Any] = {}
    if names is None:
        names = [n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())]
        names += list(getattr(obj, "__dict__", {}))
    for name in names:
        if name in _WIRING or name in out:
            continue
        try:
            value = getattr(obj, name)
        except AttributeError:
            continue
        if isinstance(value, _DEFINITION):
            continue
        out[name] = value
    return out


def capture_state(runtime: Any, extra: dict[str, Any]) -> bytes:
    """The pickled state of ``runtime``'s config, index and clock (plus ``extra``);
    raises ``pickle.PicklingError`` (or TypeError) for a state that cannot be stored."""
    world = _World(runtime)
    clock = runtime.clock
    state = {
        "nodes": [None if node.shared else _slots(node) for node in world.nodes],
        "index": _slots(runtime.index, _INDEX_STATE),
        "reaper": None if world.reaper is None else _slots(world.reaper, _REAPER_STATE),
        "clock": {"_now": clock._now, "_queue": clock._queue, "_ids": clock._ids},
        "extra": extra,
    }
    buffer = io.BytesIO()
    _Pickler(buffer, world).dump(state)
    return buffer.getvalue()


def restore_state(runtime: Any, data: bytes) -> dict[str, Any]:
    """Put a stored state into ``runtime``, whose config was just loaded and started
    (the same config); returns the ``extra`` stored with it."""
    world = _World(runtime)
    _loading.append(world)
    try:
        state = pickle.loads(data)
    finally:
        _loading.pop()
    if len(state["nodes"]) != len(world.nodes):
        raise CheckpointError(f"the checkpoint holds {len(state['nodes'])} streams, the config "
                              f"{len(world.nodes)}: it was taken with another config")
    for node, slots in zip(world.nodes, state["nodes"], strict=True):
        for name, value in (slots or {}).items():
            setattr(node, name, value)
    for name, value in state["index"].items():
        setattr(runtime.index, name, value)
    if world.reaper is not None and state["reaper"] is not None:
        for name, value in state["reaper"].items():
            setattr(world.reaper, name, value)
    clock = runtime.clock
    # The fresh config's timers are replaced by the stored ones, which its
    # streams now hold.
    for name, value in state["clock"].items():
        setattr(clock, name, value)
    return state["extra"]  # type: ignore[no-any-return]


# The file --------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    """Where a stored state stands in the recording."""

    t: float
    file: int
    offset: int
    messages: int
    alerts: int
    position: int  # of the record in the checkpoint file


def _header(config_sha256: str, recording_sha256: str, version: str,
            every: float | None = None) -> dict[str, Any]:
    head: dict[str, Any] = {"format": FORMAT, "config_sha256": config_sha256,
                            "recording_sha256": recording_sha256, "rillet_version": version,
                            "python": sys.version.split()[0]}
    if every is not None:
        head["every"] = every
    return head


class CheckpointWriter:
    """Stores a replay's state every ``every`` seconds of recorded time."""

    def __init__(self, path: str | Path, every: float = 600.0) -> None:
        if not every > 0:
            raise ValueError(f"--checkpoint-every {every!r}: give a positive duration, "
                             f"e.g. 10m")
        self.path = Path(path)
        self.every = every
        self.next_t: float | None = None
        self.taken = 0
        self.failed = 0
        self._file: BinaryIO | None = None

    def open(self, config_sha256: str, recording_sha256: str, version: str) -> None:
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        head = json.dumps(_header(config_sha256, recording_sha256, version, self.every),
                          sort_keys=True).encode()
        self._file.write(MAGIC + _U32.pack(len(head)) + head)

    def due(self, t: float) -> bool:
        if self.next_t is None:
            self.next_t = t + self.every
            return False
        return t >= self.next_t

    def take(self, runtime: Any, t: float, file: int, offset: int,
             extra: dict[str, Any]) -> bool:
        """Store the state now (at the start of the block at ``offset``); False
        when it cannot be stored, to be tried again at the next block."""
        try:
            data = capture_state(runtime, extra)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError) as error:
            self.failed += 1
            if self.failed in (1, 100):
                log.warning("checkpoint at %.3f postponed: %s", t, error)
            return False
        meta = {"t": t, "file": file, "offset": offset, "messages": extra["messages"],
                "alerts": extra["alerts"]}
        self._record(_CHECKPOINT, meta, data)
        self.taken += 1
        self.next_t = t + self.every
        return True

    def alerts(self, alerts: list[Any]) -> None:
        """The alert log with lineage, for ``explain --alert``."""
        self._record(_ALERTS, {"count": len(alerts)}, pickle.dumps(
            [(a.seq, a.t, a.sink, a.input, a.event.as_dict()
              if hasattr(a.event, "as_dict") else {"value": repr(a.event)}) for a in alerts],
            protocol=pickle.HIGHEST_PROTOCOL))

    def _record(self, kind: int, meta: dict[str, Any], data: bytes) -> None:
        import zstandard

        assert self._file is not None
        text = json.dumps(meta, sort_keys=True).encode()
        blob = zstandard.ZstdCompressor(level=3).compress(data)
        self._file.write(bytes([kind]) + _U32.pack(len(text)) + text + _U32.pack(len(blob)) +
                         blob)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class CheckpointReader:
    """The checkpoints of a file, checked against the config and recording they serve."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoints: list[Checkpoint] = []
        self._alerts_at: int | None = None
        try:
            with open(self.path, "rb") as stream:
                head = stream.read(12)
                if head[:8] != MAGIC:
                    raise CheckpointError(f"{self.path}: not a rillet checkpoint file; write "
                                          f"one with 'rillet replay CONFIG --recording R "
                                          f"--checkpoints FILE'")
                self.header = json.loads(stream.read(_U32.unpack(head[8:])[0]))
                while kind := stream.read(1):
                    position = stream.tell() - 1
                    meta = json.loads(stream.read(_U32.unpack(stream.read(4))[0]))
                    (length,) = _U32.unpack(stream.read(4))
                    stream.seek(length, io.SEEK_CUR)
                    if kind[0] == _CHECKPOINT:
                        self.checkpoints.append(Checkpoint(
                            meta["t"], meta["file"], meta["offset"], meta["messages"],
                            meta["alerts"], position))
                    elif kind[0] == _ALERTS:
                        self._alerts_at = position
        except (OSError, ValueError, struct.error) as error:
            raise CheckpointError(f"{self.path}: cannot read the checkpoints: {error}") from error

    def check(self, config_sha256: str, recording_sha256: str, version: str) -> None:
        """Raise :class:`CheckpointError` unless the file serves this config and recording."""
        wanted = _header(config_sha256, recording_sha256, version)
        for key, value in wanted.items():
            if self.header.get(key) != value:
                raise CheckpointError(
                    f"{self.path} was written for another {key.replace('_', ' ')} "
                    f"({self.header.get(key)!r}, this is {value!r}); write it again with "
                    f"'rillet replay CONFIG --recording R --checkpoints {self.path}'")

    def _blob(self, position: int) -> bytes:
        import zstandard

        with open(self.path, "rb") as stream:
            stream.seek(position + 1)
            stream.seek(_U32.unpack(stream.read(4))[0], io.SEEK_CUR)
            (length,) = _U32.unpack(stream.read(4))
            return zstandard.ZstdDecompressor().decompress(stream.read(length))

    def state(self, checkpoint: Checkpoint) -> bytes:
        return self._blob(checkpoint.position)

    def before(self, t: float | None = None, messages: int | None = None) -> Checkpoint | None:
        """The latest checkpoint at or before time ``t`` (or before request ``messages``)."""
        found = None
        for checkpoint in self.checkpoints:
            if (t is None or checkpoint.t <= t) and \
                    (messages is None or checkpoint.messages <= messages):
                found = checkpoint
        return found

    def alerts(self) -> list[tuple[int, float, str, int | None, dict[str, Any]]]:
        """(seq, t, sink, input request, event fields) of every alert of the replay."""
        if self._alerts_at is None:
            raise CheckpointError(f"{self.path} has no alert log: the replay that wrote it "
                                  f"did not finish")
        return pickle.loads(self._blob(self._alerts_at))  # type: ignore[no-any-return]
