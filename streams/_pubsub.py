"""Publish/subscribe channels (spec §6.3): ``publish`` and ``subscribe`` in configs.

A channel is any hashable name; ``"index"`` carries every index update (the
server subscribes it to the index). Publishing calls each subscriber
synchronously, in the order they subscribed, so a subscriber must be quick:
the WebSocket and SSE servers only append to a bounded buffer here.

>>> hub, seen = PubSub(), []
>>> sub = hub.subscribe("alerts", seen.append)
>>> hub.publish("alerts", Event(service="disk", state="critical"))
>>> hub.publish("other", Event(service="ignored"))
>>> seen
[Event(service='disk', state='critical')]
>>> hub.unsubscribe(sub), hub.unsubscribe(sub)
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ._core import Stream, report_failure
from ._event import Event
from ._index import Index

__all__ = ["PubSub", "Subscription", "current_pubsub", "publish", "subscribe"]

Subscriber = Callable[[Event], object]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A handle from :meth:`PubSub.subscribe`; ids increase in subscription order."""

    id: int
    channel: Hashable
    function: Subscriber = field(repr=False, compare=False)
    persistent: bool = False


class PubSub:
    """Riemann's pubsub registry: channels of synchronous subscribers.

    ``sweep()`` removes every non-persistent subscription of every channel,
    which is what Riemann means to do on reload (its own sweep prunes only
    one channel, a bug: spec §6.3, §9.1.1).

    >>> hub = PubSub()
    >>> kept = hub.subscribe("a", print, persistent=True)
    >>> gone = hub.subscribe("a", print)
    >>> hub.sweep(); hub.statistics()
    {'channels': 1, 'subscriptions': 1, 'published': 0}
    """

    __slots__ = ("_channels", "_next_id", "_published", "_watchers")

    def __init__(self) -> None:
        # Per channel a tuple snapshot: publishing iterates it without copying,
        # and a subscriber may unsubscribe itself while being called.
        self._channels: dict[Hashable, tuple[Subscription, ...]] = {}
        self._next_id = 1
        self._published = 0
        self._watchers: dict[Hashable, list[Callable[[bool], object]]] = {}

    def subscribe(self, channel: Hashable, function: Subscriber, *,
                  persistent: bool = False) -> Subscription:
        """Call ``function(event)`` for each event published to ``channel``."""
        if not callable(function):
            raise TypeError(
                f"subscribe(channel, function): function must be callable with one event, "
                f"got {function!r}"
            )
        try:
            hash(channel)
        except TypeError:
            raise TypeError(
                f"subscribe(channel={channel!r}): a channel name must be hashable, "
                f"e.g. a string such as \"alerts\""
            ) from None
        sub = Subscription(self._next_id, channel, function, persistent)
        self._next_id += 1
        self._set(channel, (*self._channels.get(channel, ()), sub))
        return sub

    def unsubscribe(self, subscription: Subscription) -> bool:
        """Remove a subscription; False if it was not subscribed (safe to repeat)."""
        subs = self._channels.get(subscription.channel, ())
        kept = tuple(s for s in subs if s.id != subscription.id)
        if len(kept) == len(subs):
            return False
        self._set(subscription.channel, kept)
        return True

    def publish(self, channel: Hashable, event: Event) -> None:
        """Call every subscriber of ``channel`` with ``event``; a failing one is reported."""
        subs = self._channels.get(channel)
        if not subs:
            return
        self._published += 1
        for sub in subs:
            try:
                sub.function(event)
            except Exception as error:
                report_failure(error, event)

    def publisher(self, channel: Hashable) -> Callable[[Event], None]:
        """A one-argument function publishing to ``channel`` (e.g. an index subscriber)."""
        return lambda event: self.publish(channel, event)

    def subscribers(self, channel: Hashable) -> tuple[Subscription, ...]:
        """The subscriptions of ``channel`` now, in subscription order."""
        return self._channels.get(channel, ())

    @property
    def next_id(self) -> int:
        """The id the next subscription will get."""
        return self._next_id

    def sweep(self, *, before: int | None = None) -> None:
        """Remove every non-persistent subscription (done on reload), or only
        those with an id below ``before``."""
        for channel, subs in list(self._channels.items()):
            self._set(channel, tuple(s for s in subs if s.persistent
                                     or (before is not None and s.id >= before)))

    def close(self) -> None:
        """Drop every subscription."""
        for channel in list(self._channels):
            self._set(channel, ())

    def watch(self, channel: Hashable, function: Callable[[bool], object]) -> Callable[[], None]:
        """Call ``function(True)`` when ``channel`` gains its first subscriber and
        ``function(False)`` when it loses its last, starting with its state now.

        So a publisher can do no work at all while nobody listens (the server
        connects the index to ``"index"`` only then). Returns a function that
        stops watching.

        >>> hub, states = PubSub(), []
        >>> stop = hub.watch("index", states.append)
        >>> sub = hub.subscribe("index", print); _ = hub.unsubscribe(sub); stop()
        >>> states
        [False, True, False]
        """
        self._watchers.setdefault(channel, []).append(function)
        function(bool(self._channels.get(channel)))

        def stop() -> None:
            watchers = self._watchers.get(channel, [])
            if function in watchers:
                watchers.remove(function)

        return stop

    def _set(self, channel: Hashable, subs: tuple[Subscription, ...]) -> None:
        was = bool(self._channels.get(channel))
        if subs:
            self._channels[channel] = subs
        else:
            self._channels.pop(channel, None)
        if was != bool(subs):
            for watcher in list(self._watchers.get(channel, ())):
                watcher(bool(subs))

    def statistics(self) -> dict[str, int]:
        return {"channels": len(self._channels),
                "subscriptions": sum(len(s) for s in self._channels.values()),
                "published": self._published}

    def __repr__(self) -> str:
        return f"PubSub(channels={sorted(map(repr, self._channels))})"


# The running config's registry -----------------------------------------------


def current_pubsub() -> PubSub:
    """The channels of the runtime in effect: what ``publish`` and ``subscribe`` use."""
    from ._clock import current_runtime

    return current_runtime().pubsub


def publish_index(pubsub: PubSub, index: Index) -> None:
    """Publish every update of ``index`` to the channel ``"index"`` (spec §5.1).

    The index is connected only while the channel has subscribers, so ingest
    pays nothing for it otherwise.
    """
    publisher = pubsub.publisher("index")
    handles: list[int] = []

    def connect(watched: bool) -> None:
        if watched and not handles:
            handles.append(index.subscribe(publisher))
        elif not watched and handles:
            index.unsubscribe(handles.pop())

    pubsub.watch("index", connect)


def _check_channel(channel: Any, caller: str) -> None:
    if not isinstance(channel, str) or not channel:
        raise ValueError(
            f"{caller}(channel={channel!r}): a channel is a non-empty string, e.g. "
            f"{caller}(\"alerts\"); WebSocket clients reach it at /pubsub/alerts"
        )


class publish(Stream):
    """Publish each event to a pubsub channel (Riemann's ``publish``).

    WebSocket clients watch a channel at ``/pubsub/<channel>?query=...``.

    >>> seen = []
    >>> _ = current_pubsub().subscribe("alerts", seen.append)
    >>> publish("alerts")(Event(service="disk")); seen
    [Event(service='disk')]
    """

    __slots__ = ("channel",)
    shared = True

    def __init__(self, channel: str) -> None:
        _check_channel(channel, "publish")
        self.channel = channel
        self._set_children(())

    def __call__(self, event: Event) -> None:
        current_pubsub().publish(self.channel, event)

    def __repr__(self) -> str:
        return f"publish({self.channel!r})"


class subscribe(Stream):
    """Call ``function`` with each event published to ``channel`` (Riemann's ``subscribe``).

    The subscription is made when the config loads and is not persistent: a
    reload sweeps it. As a stream it does nothing.

    >>> seen = []
    >>> _ = subscribe("alerts", seen.append)
    >>> publish("alerts")(Event(service="disk")); seen
    [Event(service='disk')]
    """

    __slots__ = ("channel", "function", "subscription")
    shared = True

    def __init__(self, channel: str, function: Subscriber) -> None:
        _check_channel(channel, "subscribe")
        if not callable(function):
            raise TypeError(
                f"subscribe({channel!r}, function={function!r}): function must be callable "
                f"with one event, e.g. subscribe({channel!r}, print)"
            )
        self.channel = channel
        self.function = function
        self.subscription = current_pubsub().subscribe(channel, function)
        self._set_children(())

    def __call__(self, event: Event) -> None:
        pass

    def __repr__(self) -> str:
        return f"subscribe({self.channel!r}, {self.function!r})"
