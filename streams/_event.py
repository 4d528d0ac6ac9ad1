"""The event: an immutable, slotted record of one observation.

An event decoded from the wire (a :class:`LazyEvent`) leaves its slots empty
and fills each one on first read: reading a slot that was never set raises
AttributeError inside the slot descriptor, which lands in ``__getattr__``.
Streams cannot tell the difference. ``__getattr__`` lives only on the lazy
subclass because its mere presence slows every attribute read of a class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFAULT_TTL", "FIELDS", "Event", "LazyEvent"]

#: The ttl that expiry checks assume for an event that has none (Riemann's
#: ``index/default-ttl``).
DEFAULT_TTL = 60.0



def effective_ttl(ttl: float | None) -> float:
    """An event's ttl, or Riemann's default of 60 s when it has none.

    >>> effective_ttl(None), effective_ttl(5)
    (60.0, 5)
    """
    return DEFAULT_TTL if ttl is None else ttl


def outlived(time: float, ttl: float | None, now: float) -> bool:
    """Riemann's expiry rule: more than ``ttl`` seconds (60 when None) have passed since ``time``.

    The one home of the rule that :func:`streams.is_expired`, the index's
    sweep and the periodic streams' timers all apply.

    >>> outlived(0, 5, now=6), outlived(0, 5, now=5), outlived(0, None, now=61)
    (True, False, True)
    """
    return now - time > effective_ttl(ttl)


#: The base fields, in Riemann's order.
FIELDS = ("host", "service", "state", "description", "metric", "tags", "time", "ttl")

_SLOTS = (*FIELDS, "attributes")
_set = object.__setattr__
_EMPTY: Mapping[str, str] = {}


class Event:
    """One observation: host, service, state, metric and friends.

    >>> e = Event(host="web1", service="cpu", metric=0.93, time=10, region="eu")
    >>> e
    Event(host='web1', service='cpu', metric=0.93, time=10, region='eu')
    >>> e.metric, e.tags, e.get("region")
    (0.93, (), 'eu')
    >>> e.evolve(state="critical", region=None)
    Event(host='web1', service='cpu', state='critical', metric=0.93, time=10)

    Fields that are not base fields are *attributes*; ``evolve`` sets or, with
    None, removes them. Events compare and hash by value.
    """

    __slots__ = _SLOTS

    host: str | None
    service: str | None
    state: str | None
    description: str | None
    metric: int | float | None
    tags: tuple[str, ...]
    time: float | None
    ttl: float | None
    attributes: Mapping[str, Any]

    def __init__(
        self,
        *,
        host: str | None = None,
        service: str | None = None,
        state: str | None = None,
        description: str | None = None,
        metric: int | float | None = None,
        tags: Iterable[str] = (),
        time: float | None = None,
        ttl: float | None = None,
        attributes: Mapping[str, Any] | None = None,
        **more_attributes: Any,
    ) -> None:
        _set(self, "host", host)
        _set(self, "service", service)
        _set(self, "state", state)
        _set(self, "description", description)
        _set(self, "metric", metric)
        _set(self, "tags", tags if type(tags) is tuple else _as_tags(tags))
        _set(self, "time", time)
        _set(self, "ttl", ttl)
        if more_attributes:
            merged = dict(attributes or ())
            merged.update(more_attributes)
            attributes = {k: v for k, v in merged.items() if v is not None}
        _set(self, "attributes", attributes if attributes else _EMPTY)

    # Immutability ------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"events are immutable: instead of event.{name} = {value!r}, "
            f"write event.evolve({name}={value!r})"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"events are immutable: cannot delete event.{name}")

    # Reading -----------------------------------------------------------

    def get(self, name: str, default: Any = None) -> Any:
        """A base field or an attribute by name, ``default`` when absent or None.

        >>> Event(host="a", env="prod").get("env"), Event().get("env", "-")
        ('prod', '-')
        """
        if name in _FIELD_SET:
            value = getattr(self, name)
            if name == "tags":
                return value if value else default
        else:
            value = self.attributes.get(name)
        return default if value is None else value

    def as_dict(self) -> dict[str, Any]:
        """The event as a plain dict of its non-empty fields and attributes."""
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None and value != ():
                out[name] = value
        out.update(self.attributes)
        return out

    # Deriving ----------------------------------------------------------

    def evolve(self, **changes: Any) -> Event:
        """A copy with some fields or attributes changed; None removes an attribute.

        >>> Event(service="a", metric=1).evolve(metric=2, service="b")
        Event(service='b', metric=2)
        """
        new = object.__new__(Event)
        for name in FIELDS:
            _set(new, name, changes.pop(name) if name in changes else getattr(self, name))
        if type(new.tags) is not tuple:
            _set(new, "tags", _as_tags(new.tags))
        attributes = self.attributes
        if "attributes" in changes:
            attributes = changes.pop("attributes") or _EMPTY
        if changes:
            attributes = dict(attributes)
            for key, value in changes.items():
                if value is None:
                    attributes.pop(key, None)
                else:
                    attributes[key] = value
        _set(new, "attributes", attributes if attributes else _EMPTY)
        return new

    def with_attributes(self, attributes: dict[str, Any]) -> Event:
        """A copy with ``attributes`` (none of them None) added to its own.

        The fast path of ``evolve`` for streams that annotate every event (the
        anomaly detectors): no base field changes, so none is looked up by name.

        >>> Event(service="a", env="prod").with_attributes({"score": 0.5})
        Event(service='a', env='prod', score=0.5)
        """
        new = object.__new__(Event)
        _set(new, "host", self.host)
        _set(new, "service", self.service)
        _set(new, "state", self.state)
        _set(new, "description", self.description)
        _set(new, "metric", self.metric)
        _set(new, "tags", self.tags)
        _set(new, "time", self.time)
        _set(new, "ttl", self.ttl)
        own = self.attributes
        _set(new, "attributes", {**own, **attributes} if own else attributes)
        return new

    # Value semantics ---------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        return (
            self.host, self.service, self.state, self.description, self.metric,
            self.tags, self.time, self.ttl, tuple(sorted(self.attributes.items())),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = [f"{name}={value!r}" for name, value in self.as_dict().items()]
        return f"Event({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.as_dict(),))


_FIELD_SET = frozenset(FIELDS)


def _rebuild(fields: dict[str, Any]) -> Event:
    return Event(**fields)


def _as_tags(tags: Iterable[str] | str | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        raise TypeError(
            f"tags must be a sequence of strings, got the string {tags!r}; "
            f"write tags=({tags!r},)"
        )
    return tuple(tags)


class LazyEvent(Event):
    """An event whose fields are produced on first read by ``_load(name)``.

    Subclasses (the wire codec's decoded events) set only their own slots in
    ``__init__`` and implement ``_load``; every field is computed at most once.
    """

    __slots__ = ()

    def __init__(self) -> None:  # fields are loaded on demand
        pass

    def __getattr__(self, name: str) -> Any:
        if name in _SLOTS:
            value = self._load(name)
            _set(self, name, value)
            return value
        raise AttributeError(
            f"{type(self).__name__} has no field {name!r}; "
            f"custom fields are read with event.get({name!r})"
        )

    def _load(self, name: str) -> Any:
        raise NotImplementedError

    def materialize(self) -> Event:
        """An equal plain :class:`Event` that holds on to nothing it was decoded from.

        A decoded event can keep its whole source message alive; the index
        swaps long-lived events for their materialized copies.
        """
        return Event(host=self.host, service=self.service, state=self.state,
                     description=self.description, metric=self.metric, tags=self.tags,
                     time=self.time, ttl=self.ttl, attributes=dict(self.attributes))
