"""The edge of a scaled-out rillet: accept events, store them in JetStream, then acknowledge.

An edge runs a config's listeners (TCP, UDP, WebSocket, ...) but not its
streams: its only stream is an :class:`Edge`, which buffers each event under
its partition. A TCP connection calls :meth:`Edge.durable` before it writes
its replies, which publishes what is buffered (one message per partition)
and waits for JetStream's publish acknowledgements, so a client's ``ok``
means the events are stored. Inputs without replies (UDP, Graphite, HTTP)
are flushed every ``flush_interval``. While more than ``max_inflight``
events await acknowledgement the edge is ``crowded()`` and TCP connections
stop reading (the servers' backpressure), so a slow JetStream slows clients
down instead of growing memory.

Queries are fanned out to every worker (NATS request with many replies) and
merged: each worker answers for the partitions it owns, and the edge waits
until every partition has answered once. A WebSocket or SSE subscriber to
``"index"`` gets such an answer first (:meth:`Edge.search_index`), then the
workers' index updates.
"""

from __future__ import annotations

import logging
import math
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import trio

from streams import Event

from ._codec import Decoded, decode_message, encode_reply, encode_request
from ._jetstream import ScaleOut, aio, asyncio_loop

__all__ = ["Edge"]

log = logging.getLogger("rillet.edge")

# Events per published message: far below NATS's 1 MB max_payload for events
# of ordinary size.
_CHUNK = 2000


@dataclass(eq=False)
class _Flush:
    batch: dict[int, list[Any]]
    events: int
    generation: int
    done: trio.Event = field(default_factory=trio.Event)


class Edge:
    """A stream and a service: events in, JetStream messages out (see the module doc).

    Durability is tracked by generation: events are buffered in generation
    ``g`` until a flush publishes them and the next generation begins. Each
    task (a TCP connection) remembers the generation of its first event since
    it last called :meth:`durable`, which waits for every generation from
    there to the current one and fails if any of them failed, whoever
    flushed it (another connection, the timer). At most ``concurrent_flushes``
    publish at once; meanwhile the buffer collects every connection's events
    for the next one (group commit: fewer, larger messages under load).
    """

    def __init__(self, settings: ScaleOut, *, max_inflight: int = 50_000,
                 flush_interval: float = 0.05, concurrent_flushes: int = 2) -> None:
        self.settings = settings
        # Names this edge's messages for JetStream's deduplication of retried publishes.
        self._id = uuid.uuid4().hex
        self.max_inflight = max_inflight
        self.flush_interval = flush_interval
        self.concurrent_flushes = concurrent_flushes
        self._buffers: dict[int, list[Any]] = {}
        self._buffered = 0
        self._generation = 0
        self._inflight: set[_Flush] = set()
        self._inflight_events = 0
        self._failed: dict[int, BaseException] = {}
        self._since: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._settled = trio.Event()
        self._send: trio.MemorySendChannel[Any] | None = None
        # Set while the edge receives the workers' index updates (see _follow_workers),
        # which it does while "index" has subscribers (watched).
        self._following = trio.Event()
        self._watched = False
        self.stored = 0
        self.live_received = 0
        self.retries = 0
        self.failures = 0
        self.queries = 0
        self.flushes = 0

    def __repr__(self) -> str:
        return (f"Edge(url={self.settings.url!r}, partitions={self.settings.partitions}, "
                f"key={self.settings.key!r})")

    # The stream ------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        self._buffers.setdefault(self.settings.partition(event), []).append(event)
        self._since.setdefault(trio.lowlevel.current_task(), self._generation)
        self._buffered += 1

    # Backpressure (the servers' protocol for async queues) -----------------

    def crowded(self) -> bool:
        return self._inflight_events + self._buffered > self.max_inflight

    async def wait_for_room(self) -> None:
        while self.crowded():
            if self._inflight:
                await self._settled.wait()
            else:
                self._flush()

    # Durability ------------------------------------------------------------

    async def durable(self) -> None:
        """Return once every event this task streamed since its last call is stored in
        JetStream; raise if any could not be (the caller must not acknowledge them)."""
        since = self._since.pop(trio.lowlevel.current_task(), None)
        if since is None:
            return
        target = self._generation
        while self._generation == target:
            if not self._buffered:
                break  # what was ours went out in earlier generations
            if len(self._inflight) < self.concurrent_flushes:
                self._flush()
            else:
                await self._settled.wait()
        while any(flush.generation <= target for flush in self._inflight):
            await self._settled.wait()
        for generation in range(since, target + 1):
            error = self._failed.get(generation)
            if error is not None:
                raise ConnectionError(f"JetStream did not store the events: {error}")

    def _flush(self) -> None:
        if self._send is None:
            raise ConnectionError("the edge is not connected to NATS yet")
        flush = _Flush(self._buffers, self._buffered, self._generation)
        self._buffers, self._buffered = {}, 0
        self._generation += 1
        self._inflight.add(flush)
        self._inflight_events += flush.events
        self.flushes += 1
        self._send.send_nowait(flush)

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[Any](math.inf)
        async with asyncio_loop():
            connection = await aio(self.settings.connect)("rillet-edge")
            try:
                await aio(self.settings.ensure)(connection.jetstream())
                self._connection = connection
                self._js = connection.jetstream()
                self._send = send
                task_status.started(0)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._tick)
                    nursery.start_soon(self._live, runtime)
                    async for job in receive:
                        if isinstance(job, _Flush):
                            nursery.start_soon(self._publish, job)
                        else:
                            nursery.start_soon(job)
            finally:
                self._send = None
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await aio(connection.close)()

    async def _tick(self) -> None:
        while True:
            await trio.sleep(self.flush_interval)
            if self._buffered:
                self._flush()

    async def _publish(self, flush: _Flush) -> None:
        try:
            await aio(self._publish_aio)(flush.batch, flush.generation)
            self.stored += flush.events
        except Exception as error:
            self.failures += 1
            self._failed[flush.generation] = error
            while len(self._failed) > 10_000:  # a connection waits far less than that many
                del self._failed[min(self._failed)]
            log.warning("publishing %d events to JetStream failed: %s", flush.events, error)
        finally:
            self._inflight.discard(flush)
            self._inflight_events -= flush.events
            flush.done.set()
            self._settled.set()
            self._settled = trio.Event()

    async def _publish_aio(self, batch: dict[int, list[Any]], generation: int) -> None:
        import asyncio

        publishes = []
        for partition, events in batch.items():
            subject = self.settings.subject(partition)
            for start in range(0, len(events), _CHUNK):
                payload = encode_request(events[start:start + _CHUNK], framed=False)
                message_id = f"{self._id}.{generation}.{partition}.{start}"
                publishes.append(self._publish_one(subject, payload, message_id))
        await asyncio.gather(*publishes)

    async def _publish_one(self, subject: str, payload: bytes, message_id: str) -> None:
        """Publish one message until JetStream acknowledges it or ``publish_timeout`` passes
        (asyncio).

        While a cluster elects a new stream leader (seconds after a node dies)
        publishes get no responder or time out; they are sent again, with the
        same message id, so JetStream stores once a message whose first
        acknowledgement was lost (its duplicate window is 120 s).
        """
        import asyncio

        import nats.errors
        import nats.js.errors

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.publish_timeout
        pause = 0.05
        while True:
            left = deadline - loop.time()
            try:
                await self._js.publish(subject, payload, timeout=max(0.5, min(5.0, left)),
                                       headers={"Nats-Msg-Id": message_id})
                return
            except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError,
                    nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError,
                    TimeoutError, nats.errors.ConnectionClosedError,
                    nats.errors.ConnectionReconnectingError) as error:
                if loop.time() + pause >= deadline:
                    raise
                self.retries += 1
                log.info("publishing to %s: %r; again in %.2f s", subject, error, pause)
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    # Live subscriptions ----------------------------------------------------

    async def _live(self, runtime: Any) -> None:
        """While the edge's WebSocket and SSE servers have subscribers (to the channel
        "index"), ask the workers for their index updates and publish them to that
        channel, where each subscriber's query filters them as in a plain rillet."""
        wanted = trio.Event()
        watching = {"on": False}

        def watch(on: bool) -> None:
            watching["on"] = self._watched = on
            if on:
                wanted.set()

        stop = runtime.pubsub.watch("index", watch)
        try:
            while True:
                await wanted.wait()
                wanted = trio.Event()
                if watching["on"]:
                    await self._follow_workers(runtime, watching)
        finally:
            stop()

    async def _follow_workers(self, runtime: Any, watching: dict[str, bool]) -> None:
        import nats.errors

        connection = self._connection
        subscription = await aio(connection.subscribe)(self.settings.index_subject("*"))
        self._following.set()
        try:
            next_interest = 0.0
            while watching["on"]:
                now = trio.current_time()
                if now >= next_interest:
                    await aio(connection.publish)(self.settings.live_subject, b"")
                    next_interest = now + 1.0
                try:
                    message = await aio(subscription.next_msg)(timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue  # nothing new
                except Exception as error:
                    log.warning("live index updates from the workers: %r", error)
                    await trio.sleep(0.5)
                    continue
                events = decode_message(message.data, runtime.now()).events
                with runtime:
                    for event in events:
                        runtime.pubsub.publish("index", Event(**event.as_dict()))
                self.live_received += len(events)
        finally:
            self._following = trio.Event()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await aio(subscription.unsubscribe)()

    # Queries ---------------------------------------------------------------

    async def answer(self, runtime: Any, request: Decoded) -> bytes:
        """The reply to a request carrying a query: its events stored, then the query
        answered by the workers."""
        if request.events:
            runtime.stream(request.events)
            await self.durable()
        assert request.query is not None
        try:
            found = await self.query(request.query)
        except (LookupError, ValueError) as error:
            return encode_reply(ok=False, error=str(error))
        return encode_reply(ok=True, events=found)

    async def search_index(self, text: str) -> list[Event]:
        """What a new WebSocket or SSE subscriber to ``"index"`` gets first (the HTTP
        servers' hook): the workers' indexed events matching ``text``.

        The subscriber's follower is registered before this is called, so the
        edge is (or is about to start) following the workers' updates. It asks
        once it does: its NATS subscription to the updates then precedes the
        query on its connection, and the query tells each worker to publish its
        updates from before it searches, so no update falls between this answer
        and the live ones (one that arrives meanwhile may come after it as well).
        """
        if not self._watched:  # /index without subscribe=true: its answer alone
            return await self.query(text)
        with trio.move_on_after(self.settings.query_timeout):
            await self._following.wait()
        return await self.query(text, live=True)

    async def query(self, text: str, timeout: float | None = None, *,
                    live: bool = False) -> list[Event]:
        """The events matching ``text`` in the workers' indexes, merged; raise
        LookupError when some partition did not answer within ``timeout``.
        ``live`` makes the workers publish their index updates from now."""
        if self._send is None:
            raise LookupError("the edge is not connected to NATS yet")
        self.queries += 1
        if timeout is None:
            timeout = self.settings.query_timeout
        result: list[Any] = []

        async def ask() -> None:
            result.append(await aio(self._query_aio)(text, timeout, live))

        done = trio.Event()

        async def job() -> None:
            try:
                await ask()
            except BaseException as error:
                result.append(error)
                if not isinstance(error, Exception):
                    raise
            finally:
                done.set()

        self._send.send_nowait(job)
        await done.wait()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]  # type: ignore[no-any-return]

    async def _query_aio(self, text: str, timeout: float, live: bool) -> list[Event]:
        import asyncio

        connection = self._connection
        inbox = connection.new_inbox()
        subscription = await connection.subscribe(inbox)
        answered: set[int] = set()
        claimed: dict[str, set[int]] = {}
        found: list[Event] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await connection.publish(self.settings.query_subject, text.encode(), reply=inbox,
                                     headers={"Live": "1"} if live else None)
            while len(answered) < self.settings.partitions:
                left = deadline - loop.time()
                if left <= 0:
                    missing = sorted(set(range(self.settings.partitions)) - answered)
                    raise LookupError(f"query {text!r}: partitions {missing} did not answer "
                                      f"within {timeout} s (is a worker running for them?)")
                try:
                    message = await subscription.next_msg(timeout=left)
                except TimeoutError:
                    continue
                headers = message.headers or {}
                if "Error" in headers:
                    raise ValueError(headers["Error"])
                # A large answer comes in parts ("Part: i/n", in order): the partitions
                # a worker's first part claims count as answered once its last is here.
                worker = headers.get("Worker", "")
                number, _, count = headers.get("Part", "1/1").partition("/")
                if number == "1":
                    owned = {int(p) for p in headers.get("Partitions", "").split(",") if p}
                    claimed[worker] = owned - answered - set().union(*claimed.values())
                fresh = claimed.get(worker, set())
                for event in decode_message(message.data, 0.0).events:
                    if self.settings.partition(event) in fresh:
                        found.append(Event(**event.as_dict()))
                if number == count:
                    answered |= claimed.pop(worker, set())
        finally:
            await subscription.unsubscribe()
        return found

    def statistics(self) -> dict[str, Any]:
        return {"stored": self.stored, "failures": self.failures, "flushes": self.flushes,
                "retries": self.retries, "live_received": self.live_received,
                "buffered": self._buffered,
                "inflight": self._inflight_events, "queries": self.queries}
