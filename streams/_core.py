"""The stream contract: what every stream is, how it forwards, forks and fails.

A stream is a callable taking one event. Constructors take configuration
first, then ``*children``, then keyword-only options. Every stream class
records the arguments it was built with, which gives three things for free:

- ``repr`` reads like the config line that built it;
- ``fork()`` builds a fresh copy with empty state (``by`` forks its children
  per key), while shared sinks such as the index return themselves;
- the registry of public streams, checked against ``__all__`` and the docs.

Failures: when a stream has several children it calls each inside its own
``try`` and reports a failure (log, plus the exception stream in effect)
without stopping the siblings. With one child the call is direct, so a
failure travels up to the nearest stream that has siblings to protect (or to
the top-level dispatcher); that costs nothing on the hot path. What a timer
emits goes through ``_emit_from_timer``, which reports a failure with the
emitted event, since no caller above a timer holds it.
"""

from __future__ import annotations

import contextvars
import dis
import logging
import operator
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from . import _compiled
from ._clock import current_runtime, scheduler
from ._event import Event, outlived
from ._validate import StreamArgumentError

__all__ = [
    "REGISTRY",
    "Stream",
    "call_isolated",
    "exception_event",
    "expire_event",
    "exception_stream",
    "is_expired",
    "report_failure",
    "sdo",
]

log = logging.getLogger("rillet.streams")

#: Every public stream constructor by name: classes register themselves,
#: function-style constructors use :func:`register_stream`.
REGISTRY: dict[str, Callable[..., Any]] = {}

Child = Callable[[Any], object]

_error_stream: contextvars.ContextVar[Child | None] = contextvars.ContextVar(
    "rillet_exception_stream", default=None
)


def register_stream(function: Callable[..., Any]) -> Callable[..., Any]:
    """Record a function-style stream constructor in the registry."""
    REGISTRY[function.__name__] = function
    return function


def _describe(value: object) -> str:
    if isinstance(value, Stream):
        return repr(value)
    if callable(value) and hasattr(value, "__qualname__") and not isinstance(value, type):
        name = getattr(value, "__qualname__", "")
        if "<lambda>" in name:
            return "<lambda>"
        module = getattr(value, "__module__", None)
        return name if module in (None, "builtins", "__main__") else f"{module}.{name}"
    return repr(value)


def _replayable(value: Any) -> Any:
    # A generator or other one-shot iterator would be empty the second time a
    # fork rebuilds the stream from its recorded arguments.
    return tuple(value) if isinstance(value, Iterator) else value


class _StreamType(type):
    """Makes one-shot iterator arguments replayable before a stream records them."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, Iterator) for a in args) or \
                any(isinstance(v, Iterator) for v in kwargs.values()):
            args = tuple(_replayable(a) for a in args)
            kwargs = {k: _replayable(v) for k, v in kwargs.items()}
        return super().__call__(*args, **kwargs)


class Stream(metaclass=_StreamType):
    """Base of every stream. Subclasses implement ``__call__(event)``.

    Attributes:
        children: the downstream streams, in order.
        shared: class flag; a shared stream (a sink) is the same object in
            every fork, a stateful one is copied fresh.
    """

    __slots__ = ("__weakref__", "_args", "_kwargs", "_out", "children")

    shared: ClassVar[bool] = False
    #: Whether a stream that is not a sink may be built without children. One
    #: that forwards would silently discard everything, so by default that is
    #: a config mistake; sinks (``shared``) are always childless.
    childless: ClassVar[bool] = False
    #: Whether a stream built without children is a judge that another stream
    #: asks (an anomaly detector inside ``combine``) rather than a stage events
    #: flow through: placed as a child or at the top level, such a stream would
    #: discard everything, so that is refused (see :func:`refuse_idle_judge`).
    judge_when_childless: ClassVar[bool] = False
    #: Whether the children are only templates that the stream forks per key
    #: (``by``) and never calls. A fork of such a stream shares the templates
    #: instead of copying them, which it would only do to copy them again per
    #: key: copying a nested ``by``'s subtree once per outer key was most of
    #: the cost of a new key.
    templates: ClassVar[bool] = False
    #: Whether a fork copies the template's configuration instead of building
    #: itself again from the forked arguments, which validates them again (a
    #: fork of valid streams is valid; that was most of a new ``by`` key's
    #: cost). The copy takes every slot, forking the streams among them and
    #: the children, and calls ``_init_state`` for what must be fresh; a class
    #: holding streams inside other values forks them in its own
    #: ``_init_fork``. Only the class that sets it is copied: a subclass may
    #: add state its parent's ``_init_state`` does not know.
    copy_forks: ClassVar[bool] = False
    #: Copies every slot but the wiring from a template to its fork, when ``copy_forks``.
    _copy_slots: ClassVar[Callable[[Any, Any, dict[int, Any]], None] | None] = None
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The vocabulary lives in the private family modules; the testing kit's
        # streams (tap, Sink) are documented with the testing kit instead.
        if not cls.__name__.startswith("_") and cls.__module__.startswith("streams._"):
            REGISTRY[cls.__name__] = cls
        cls._copy_slots = _slot_copier(cls) if cls.__dict__.get("copy_forks") else None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = object.__new__(cls)
        self._args = args
        self._kwargs = kwargs
        return self

    def __init__(self, *children: Child) -> None:
        self._set_children(children)

    def _set_children(self, children: Iterable[Child], *, required: bool = True) -> None:
        """Record the children; ``required=False`` when the stream has other outputs."""
        children = tuple(children)
        if not children and required and not self.shared and not self.childless:
            call = repr(self)[:-1] + (", " if self._args or self._kwargs else "")
            raise StreamArgumentError(
                f"{self!r} has no child stream, so everything it forwards would be "
                f"discarded; pass the streams to send to after its configuration, e.g. "
                f"{call}index), or {call}bit_bucket()) to discard on purpose"
            )
        for child in children:
            refuse_idle_judge(child, f"{type(self).__name__}(...)")
            if not callable(child):
                raise StreamArgumentError(
                    f"{type(self).__name__}(...): every child must be a stream (a callable "
                    f"taking one event), got {child!r}. Configuration comes first, then the "
                    f"children, then keyword options."
                )
        self.children = children
        self._out = fan_out(children)

    def __call__(self, event: Any) -> object:
        self._out(event)
        return None

    def _emit_from_timer(self, item: Any) -> None:
        """Forward what a timer produced, reporting a child's failure with ``item``.

        An event's failure travels up to a caller that reports it with the
        event; a timer has no such caller, and with one child (called
        directly) the failure would reach the scheduler without the event.
        """
        call_isolated(self._out, item)

    # Forking -----------------------------------------------------------

    def fork(self, memo: dict[int, Any] | None = None) -> Any:
        """A fresh copy with empty state; shared sinks return themselves."""
        if self.shared:
            return self
        if memo is None:
            memo = {}
        else:
            copy = memo.get(id(self))
            if copy is not None:
                return copy
        args, kwargs = self._args, self._kwargs
        if not self.templates:
            args = forked(args, memo)
            if kwargs:
                kwargs = {k: _fork_value(v, memo) for k, v in kwargs.items()}
        # ``by`` forks its children once per new key, so this runs per key.
        # Straight to __new__ and __init__, skipping the metaclass: its only
        # job is to make one-shot iterators replayable, and the recorded
        # arguments already are (a third of a fork's cost went there).
        cls = type(self)
        copy = cls.__new__(cls, *args, **kwargs)
        copy._init_fork(self, args, kwargs, memo)
        memo[id(self)] = copy
        return copy

    def _init_fork(self, template: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   memo: dict[int, Any]) -> None:
        """Make this new object a copy of ``template`` with empty state: by building
        it from the (forked) arguments, or with ``copy_forks`` by copying the
        template's configuration (``memo`` holds the forks of its streams)."""
        copy_slots = type(self)._copy_slots
        if copy_slots is None:
            self.__init__(*args, **kwargs)  # type: ignore[misc]
            return
        copy_slots(self, template, memo)
        if self.templates:
            self.children, self._out = template.children, template._out
        else:
            self.children = children = forked(template.children, memo)
            self._out = fan_out(children)
        self._init_state()

    def _init_state(self) -> None:
        """Set what a new stream and each fork of it begin with that is not its
        configuration: empty state, and callables wired to its own streams
        besides the children. ``__init__`` calls it too, after the configuration.
        A fork does not copy what it assigns, so it assigns each of those always."""

    def _entry_point(self) -> Child:
        """What a parent calls to send this stream an event: its bound ``__call__``.

        A class whose ``__call__`` has a compiled twin (``streams/_speedups.c``)
        returns that instead, built from the state ``__call__`` reads (fixed once
        built), unless ``__call__`` was replaced on the class (the per-stream
        counters wrap it).
        """
        return self.__call__

    def argument_streams(self) -> Iterator[Stream]:
        """The streams among this stream's arguments (configuration and children), in
        order, looking through lists and tuples: a node's place in the config tree."""
        return _streams_among((*self._args, *self._kwargs.values()))

    def close(self) -> None:
        """Stop this stream's timers and those of its own (unshared) children."""
        for child in self.children:
            if isinstance(child, Stream) and not child.shared:
                child.close()

    # Presentation ------------------------------------------------------

    def __repr__(self) -> str:
        parts = [_describe(a) for a in self._args]
        parts += [f"{k}={_describe(v)}" for k, v in self._kwargs.items()]
        return f"{type(self).__name__}({', '.join(parts)})"


def refuse_idle_judge(child: object, place: str) -> None:
    """Refuse a judge (a detector) built without children where events flow."""
    if isinstance(child, Stream) and child.judge_when_childless and not child.children:
        call = repr(child)[:-1] + (", " if child._args or child._kwargs else "")
        raise StreamArgumentError(
            f"{child!r} is given to {place} without a child stream, so it would judge every "
            f"event and discard it; pass the streams to send to, e.g. {call}index), or put it "
            f"in combine([...], children) as one of the detectors it asks")


def _streams_among(values: Iterable[Any]) -> Iterator[Stream]:
    for value in values:
        if isinstance(value, Stream):
            yield value
        elif type(value) is list or type(value) is tuple:
            yield from _streams_among(value)


#: What every stream holds besides its configuration and state (a fork sets these
#: itself; checkpoints and explain leave them out of a stream's state).
WIRING = frozenset(("__weakref__", "_args", "_kwargs", "_out", "children"))


#: Types of slot values that are no stream, tested before the slower isinstance.
_NOT_STREAMS = frozenset((type(None), bool, int, float, str, bytes, tuple, list, dict,
                          frozenset, types.FunctionType, types.MethodType,
                          types.BuiltinFunctionType, operator.attrgetter))


def _slot_copier(cls: type) -> Callable[[Any, Any, dict[int, Any]], None]:
    """A function copying every slot of ``cls`` but the wiring from a template to
    its fork, a stream in a slot forked (within ``memo``: usually one of the
    arguments, forked already). Generated, as dataclasses generate their
    methods: a loop of getattr and setattr over the names cost six times as
    much, once per new key. Streams inside other values (a tuple of else
    streams) are the class's to fork."""
    lines = ["def copy_slots(self, template, memo):", "    pass"]
    # What _init_state sets, it sets afresh: copying it first would be wasted.
    fresh = {i.argval for i in dis.get_instructions(cls._init_state)  # type: ignore[attr-defined]
             if i.opname == "STORE_ATTR"}
    for base in reversed(cls.__mro__[:-1]):  # object holds nothing
        if "__slots__" not in base.__dict__:
            raise TypeError(f"{cls.__name__}.copy_forks: {base.__name__} has no __slots__, "
                            f"so a fork could not know what to copy")
        declared = base.__dict__["__slots__"]
        for name in (declared,) if isinstance(declared, str) else declared:
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{base.__name__.lstrip('_')}{name}"  # as Python mangles it
            if name not in WIRING and name not in fresh:
                # A slot the template never set stays unset in the fork.
                lines += ["    try:", f"        value = template.{name}",
                          "    except AttributeError:", "        pass", "    else:",
                          f"        self.{name} = value if type(value) in NOT_STREAMS or not "
                          f"isinstance(value, Stream) else value.fork(memo)"]
    namespace: dict[str, Any] = {"NOT_STREAMS": _NOT_STREAMS, "Stream": Stream}
    exec("\n".join(lines), namespace)
    copy_slots: Callable[[Any, Any, dict[int, Any]], None] = namespace["copy_slots"]
    copy_slots.__qualname__ = f"{cls.__qualname__}._copy_slots"
    return copy_slots


def forked(values: Iterable[Any], memo: dict[int, Any]) -> tuple[Any, ...]:
    """``values`` with the streams among them forked, within one fork of a tree
    (``memo``): shared streams, plain functions and other values are themselves."""
    # A loop, not a comprehension or generator (a third slower on Python 3.11):
    # this runs for every stream of every new key of a by. A stream's children
    # are among its arguments, so the second time round they are in memo.
    out = []
    get = memo.get
    for value in values:
        if isinstance(value, Stream):
            if not value.shared:
                copy = get(id(value))
                value = value.fork(memo) if copy is None else copy
        elif type(value) is list or type(value) is tuple:
            value = _fork_value(value, memo)
        out.append(value)
    return tuple(out)


def _fork_value(value: Any, memo: dict[int, Any]) -> Any:
    if isinstance(value, Stream):
        return value.fork(memo)
    if type(value) is list:
        return list(forked(value, memo))
    if type(value) is tuple:
        return forked(value, memo)
    return value


def _discard(event: Any) -> None:
    return None


def entry_point(stream: Child) -> Child:
    """The fastest way to call ``stream``: a stream's bound ``__call__``, or
    what its class compiled it to (see :meth:`Stream._entry_point`).

    Calling an instance goes through ``type.__call__`` lookup and costs about
    100 ns more than calling its bound method, on every hop of every event.
    """
    if isinstance(stream, Stream):
        return stream._entry_point()
    return stream


def _broadcast(children: tuple[Child, ...]) -> Child:
    calls = tuple(entry_point(child) for child in children)
    if _compiled.speedups is not None:
        return _compiled.speedups.Broadcast(calls, report_failure)  # type: ignore[no-any-return]

    def broadcast(event: Any) -> None:
        # Each child is isolated: one failing never stops its siblings.
        for call in calls:
            try:
                call(event)
            except Exception as error:
                report_failure(error, event)

    return broadcast


def fan_out(children: tuple[Child, ...]) -> Child:
    """One callable forwarding to every child: the child's own entry when there is one."""
    if not children:
        return _discard
    if len(children) == 1:
        return entry_point(children[0])
    return _broadcast(children)


def report_failure(error: BaseException, event: Any) -> None:
    """Send a child's failure to the exception stream in effect (the innermost
    ``exception_stream``, else the runtime's), or log it.

    The log gets one line per kind of failure (exception class and the line
    that raised it) per 10 seconds, with the number held back since: a
    stream that raises on every event would otherwise write a traceback per
    event. The exception stream gets every failure.
    """
    target = _error_stream.get()
    if target is None:
        target = current_runtime().exception_stream
    if target is None:
        current_runtime().limited_log(log).error(_failure_kind(error), "stream failed on %r",
                                                 event, exc_info=error)
        return
    try:
        target(exception_event(error, event))
    except Exception:
        log.exception("the exception stream itself failed on %r", event)


def _failure_kind(error: BaseException) -> tuple[type, str, int]:
    traceback = error.__traceback__
    if traceback is None:
        return type(error), "", 0
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return type(error), traceback.tb_frame.f_code.co_filename, traceback.tb_lineno


def rescued(function: Callable[[], object]) -> Callable[[], None]:
    """Wrap a scheduled callback so its failures go where the caller's would."""
    target = _error_stream.get()

    def run() -> None:
        token = _error_stream.set(target)
        try:
            function()
        except Exception as error:
            report_failure(error, None)
        finally:
            _error_stream.reset(token)

    return run


def exception_event(error: BaseException, event: Any) -> Event:
    """The event Riemann builds for a failure (spec §2), with rillet's class names."""
    name = type(error).__qualname__
    module = type(error).__module__
    qualified = name if module == "builtins" else f"{module}.{name}"
    trace = "".join(traceback.format_exception(error)).rstrip()
    return Event(
        time=scheduler().now(),
        service="rillet exception",
        state="error",
        tags=("exception", qualified),
        description=f"{qualified}: {error}\n\n{trace}",
        event=event,
        exception=error,
    )


def is_expired(event: Any, now: float | None = None) -> bool:
    """Riemann's ``expired?``: state "expired", or older than its ttl (60 s default).

    >>> is_expired(Event(time=1, ttl=5), now=10), is_expired(Event(time=10, ttl=2), now=10)
    (True, False)
    """
    if event.state == "expired":
        return True
    time = event.time
    if time is None:
        return False
    if now is None:
        now = scheduler().now()
    return bool(outlived(time, event.ttl, now))


def expire_event(event: Any) -> Event:
    """Riemann's ``expire``: keep host and service, set ``time`` = now and state "expired".

    >>> from streams import smap
    >>> from streams.testing import run
    >>> run(lambda sink: smap(expire_event, sink),
    ...     [Event(host="a", service="cpu", metric=3, ttl=10, time=30)])
    [Event(host='a', service='cpu', state='expired', time=30)]
    """
    return Event(host=event.host, service=event.service, state="expired",
                 time=scheduler().now())


def call_isolated(stream: Child, event: Any) -> None:
    """Call one of several streams so that its failure is reported, not raised."""
    try:
        stream(event)
    except Exception as error:
        report_failure(error, event)


class sdo(Stream):
    """Forward every event to all children (Riemann's ``sdo``).

    >>> seen = []
    >>> s = sdo(seen.append, lambda e: seen.append(e * 10))
    >>> s(1); seen
    [1, 10]
    """

    __slots__ = ()

    def __call__(self, event: Any) -> None:
        self._out(event)


class exception_stream(Stream):
    """Send failures of the children (and their timers) to ``handler`` as events.

    >>> from streams import Event
    >>> errors = []
    >>> def broken(event): raise RuntimeError("boom")
    >>> exception_stream(errors.append, broken)(Event(service="x"))
    >>> errors[0].service, errors[0].state, errors[0].tags
    ('rillet exception', 'error', ('exception', 'RuntimeError'))
    """

    __slots__ = ("handler",)

    def __init__(self, handler: Child, *children: Child) -> None:
        if not callable(handler):
            raise StreamArgumentError(
                f"exception_stream(handler, *children): handler must be a stream, got {handler!r}"
            )
        self.handler = handler
        self._set_children(children)

    def __call__(self, event: Any) -> None:
        token = _error_stream.set(self.handler)
        try:
            self._out(event)
        except Exception as error:
            report_failure(error, event)
        finally:
            _error_stream.reset(token)

    def close(self) -> None:
        # The handler is not a child, but it may own timers (a throttled mailer).
        handler = self.handler
        if isinstance(handler, Stream) and not handler.shared:
            handler.close()
        super().close()
