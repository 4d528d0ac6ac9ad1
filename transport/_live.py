"""Live feeds: what WebSocket and SSE subscribers read, fed by pubsub without slowing ingest.

Subscribers with the same channel and query share one :class:`Feed`: the
pubsub callback tests the query once per event and appends to a ring of at
most ``max_behind`` events, whatever the number of subscribers, so ingest
pays per distinct query, not per subscriber. Each :class:`Follower` keeps a
cursor into the ring and is woken once per batch; each event is turned into
JSON and into its WebSocket and SSE frames once, then shared (server frames
are unmasked and uncompressed, so they are the same bytes on every
connection). A follower more than ``max_behind`` events behind is dropped:
its connection is cancelled, counted and logged, and the ring never grows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

import trio
from wsproto.frame_protocol import FrameProtocol

from streams import Event, compile_query
from streams._pubsub import PubSub, Subscription

from ._json import event_json

__all__ = ["DEFAULT_MAX_BEHIND", "Feed", "Follower", "LiveHub", "TooFarBehind"]

log = logging.getLogger("rillet.live")

#: Events a subscriber may lag before it is disconnected.
DEFAULT_MAX_BEHIND = 10_000
# Followers are checked for lag every this many appends: rare enough to cost
# nothing per event, often enough that a stuck one is dropped quickly.
_CHECK_EVERY = 256
# Frames written per send, so that one write stays a bounded amount of work.
_MAX_BATCH = 1_000
# Joined chunks a feed keeps for followers reading the same range.
_CHUNKS_KEPT = 8

_FRAMER = FrameProtocol(client=False, extensions=[])


class Entry:
    """One published event and, made on first use, its JSON and frames."""

    __slots__ = ("_json", "_sse", "_ws", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._json: str | None = None
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    def json(self) -> str:
        if self._json is None:
            self._json = event_json(self.event)
        return self._json

    def ws_frame(self) -> bytes:
        if self._ws is None:
            self._ws = bytes(_FRAMER.send_data(self.json(), fin=True))
        return self._ws

    def sse_frame(self) -> bytes:
        if self._sse is None:
            self._sse = b"data: " + self.json().encode() + b"\n\n"
        return self._sse


class TooFarBehind(Exception):
    """A follower fell more than ``max_behind`` events behind its feed."""


class Feed:
    """The events of one channel matching one query, in a bounded ring."""

    __slots__ = ("_chunks", "_ring", "_wake", "capacity", "end", "followers", "mark",
                 "predicate", "query", "subscription")

    def __init__(self, query: str, capacity: int) -> None:
        self.query = query
        self.predicate = compile_query(query).predicate
        self.capacity = capacity
        self._ring: list[Entry | None] = [None] * capacity
        self.end = 0  # sequence number of the next event
        # Followers read up to the mark, which the first of them to reach it
        # moves to the end: followers in step read the same ranges, so one
        # joined chunk of frames serves them all.
        self.mark = 0
        self._chunks: dict[tuple[int, int, Callable[[Entry], bytes]], bytes] = {}
        self._wake: trio.Event | None = None
        self.followers: set[Follower] = set()
        self.subscription: Subscription | None = None

    def offer(self, event: Event) -> None:
        """The pubsub callback: keep ``event`` if it matches; never blocks."""
        if not self.predicate(event):
            return
        end = self.end
        self._ring[end % self.capacity] = Entry(event)
        self.end = end + 1
        if self.end % _CHECK_EVERY == 0:
            self._drop_laggards()
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def _drop_laggards(self) -> None:
        oldest = self.end - self.capacity
        for follower in list(self.followers):
            if follower.cursor < oldest:
                follower.drop(self.end - follower.cursor)

    async def changed(self) -> None:
        if self._wake is None:
            self._wake = trio.Event()
        await self._wake.wait()

    def chunk(self, start: int, stop: int, frame: Callable[[Entry], bytes]) -> bytes:
        """The frames of entries ``start`` to ``stop``, joined once for every follower."""
        key = (start, stop, frame)
        found = self._chunks.get(key)
        if found is None:
            ring, capacity = self._ring, self.capacity
            found = b"".join([frame(ring[seq % capacity])  # type: ignore[arg-type]
                              for seq in range(start, stop)])
            if len(self._chunks) >= _CHUNKS_KEPT:
                self._chunks.clear()
            self._chunks[key] = found
        return found


class Follower:
    """One subscriber's cursor into a feed; read it with :meth:`next_chunk`."""

    __slots__ = ("behind", "cursor", "feed", "on_drop", "scope")

    def __init__(self, feed: Feed, scope: trio.CancelScope,
                 on_drop: Callable[[Follower, int], None]) -> None:
        self.feed = feed
        self.cursor = feed.end
        self.scope = scope
        self.behind = 0
        self.on_drop = on_drop

    def drop(self, behind: int) -> None:
        """Disconnect this follower: it is ``behind`` events behind."""
        if self.behind:
            return
        self.behind = behind
        self.feed.followers.discard(self)
        self.scope.cancel()
        self.on_drop(self, behind)

    async def next_chunk(self, frame: Callable[[Entry], bytes]) -> bytes:
        """The frames of the next entries, waiting for some; TooFarBehind once dropped."""
        feed = self.feed
        if self.cursor >= feed.mark:
            if self.cursor == feed.end:
                await feed.changed()
            feed.mark = feed.end
        if self.behind or self.cursor < feed.end - feed.capacity:
            self.drop(feed.end - self.cursor)
            raise TooFarBehind(self.behind)
        stop = min(feed.mark, self.cursor + _MAX_BATCH)
        data = feed.chunk(self.cursor, stop, frame)
        self.cursor = stop
        return data


class LiveHub:
    """Feeds by (channel, query) over a :class:`PubSub`; a feed lives while followed."""

    def __init__(self, pubsub: PubSub, max_behind: int = DEFAULT_MAX_BEHIND) -> None:
        self.pubsub = pubsub
        self.max_behind = max_behind
        self.feeds: dict[tuple[Hashable, str], Feed] = {}
        self.dropped = 0

    def follow(self, channel: Hashable, query: str, scope: trio.CancelScope,
               describe: str) -> Follower:
        """A follower of ``channel`` filtered by ``query``; cancels ``scope`` if it lags."""
        key = (channel, query)
        feed = self.feeds.get(key)
        if feed is None:
            feed = Feed(query, self.max_behind)
            feed.subscription = self.pubsub.subscribe(channel, feed.offer, persistent=True)
            self.feeds[key] = feed

        def on_drop(follower: Follower, behind: int) -> None:
            self.dropped += 1
            log.warning("disconnected %s: %d events behind on channel %r (max_behind=%d); "
                        "it reads too slowly or its query matches too much",
                        describe, behind, channel, self.max_behind)

        follower = Follower(feed, scope, on_drop)
        feed.followers.add(follower)
        return follower

    def leave(self, follower: Follower) -> None:
        """Forget ``follower``; the last one to leave a feed unsubscribes it."""
        feed = follower.feed
        feed.followers.discard(follower)
        if not feed.followers and feed.subscription is not None:
            self.pubsub.unsubscribe(feed.subscription)
            del self.feeds[(feed.subscription.channel, feed.query)]
            feed.subscription = None

    def statistics(self) -> dict[str, Any]:
        return {"feeds": len(self.feeds),
                "subscribers": sum(len(f.followers) for f in self.feeds.values()),
                "dropped_subscribers": self.dropped}
