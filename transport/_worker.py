"""A scaled-out rillet worker: owns partitions, runs the config over them, answers queries.

Ownership is a lease per partition in the JetStream key-value bucket
(``p.<n>`` → worker id), created with ``create`` (fails if someone holds it)
and renewed every third of the lease with ``update`` at the revision the
worker last wrote (fails if someone else took it, and then the worker stops
consuming that partition at once). The bucket's TTL is the lease, so a dead
worker's leases vanish after at most ``lease`` seconds and the survivors,
which aim at ``ceil(partitions / live workers)`` each (workers heartbeat
``w.<id>`` in the same bucket), take them over.

Taking a partition: restore the index entries and the stream state of its
last snapshot (object ``p.<n>`` in the object store: the stream sequence it
covers, the index entries as a Riemann ``Msg``, and the partition's share of
the streams' state, see ``_handover``), recreate its durable consumer to start right
after that sequence, and consume in order, acknowledging each batch to
JetStream (ack-all) once the streams have processed it. Every
``snapshot_interval`` the worker writes each owned partition's snapshot, so
a new owner replays at most that many seconds of events through the
streams; that replay is the at-least-once duplication docs/scale-out.md
describes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable
from typing import Any

import trio

from streams import Config, Event, Runtime
from streams._config import source_files
from streams._event import outlived
from streams._pubsub import Subscription
from streams._ratelimit import LogLimiter

from . import _handover
from ._codec import decode_message, encode_request
from ._jetstream import ScaleOut, aio, asyncio_loop
from ._run import Running, serve
from ._server import SLICE

__all__ = ["Worker"]

log = logging.getLogger("rillet.worker")

_FETCH = 512
# The longest a worker waits for a snapshot to be read or written, or a consumer to
# be made. nats-py's object store reads through a consumer and waits for its chunks
# without a deadline, which never ends if a cluster loses that consumer's node.
_CALL_TIMEOUT = 15.0
# Index updates a worker holds for live subscribers between two publishes; beyond
# that the oldest are dropped (and counted) rather than let memory grow.
_LIVE_MAX = 100_000
# The largest share of a worker's CPU time periodic snapshots may take (1/20).
_SNAPSHOT_DUTY = 20
# Seconds a worker goes on publishing index updates after an edge last said it has
# live subscribers (edges say so every second).
_LIVE_LINGER = 3.0
_LIVE_INTERVAL = 0.05


class _Owned:
    def __init__(self, revision: int, scope: trio.CancelScope) -> None:
        self.revision = revision
        self.scope = scope
        self.stopped = trio.Event()
        self.sequence = 0  # the last stream sequence the streams processed
        # Restored and consuming: only then does a snapshot of it mean anything.
        self.ready = False


class _Turns:
    """The time a task spends in its own turns of the loop: from its start to its
    first wait, and from the end of each wait to the next (not while it waits)."""

    def __init__(self) -> None:
        self._spent = 0.0
        self._since = time.perf_counter()

    async def wait(self, awaitable: Awaitable[Any]) -> Any:
        self._spent += time.perf_counter() - self._since
        try:
            return await awaitable
        finally:
            self._since = time.perf_counter()

    def spent(self) -> float:
        return self._spent + time.perf_counter() - self._since


class Worker:
    """One worker process's share of the partitions (see the module doc)."""

    def __init__(self, settings: ScaleOut, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.owned: dict[int, _Owned] = {}
        self.processed = 0
        self.acquired = 0
        self.released = 0
        self.snapshots = 0
        self.replayed = 0
        self.carried_keys = 0
        self._held_before: set[int] = set()
        self._live_until = 0.0
        self._updates: list[Any] = []
        self._subscription: Subscription | None = None
        self.live_published = 0
        self.live_dropped = 0
        self._config_digest = b""
        self._limited = LogLimiter(log)
        # Whether an indexed event's partition follows from its index key alone.
        self._index_keyed = set(settings.key) <= {"host", "service"}

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, owned={sorted(self.owned)})"

    async def run(self, config: Config, runtime: Runtime, *,
                  task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve ``config``'s streams and non-listening services over the owned partitions."""
        # The edge owns the listeners; a worker runs the sinks, the index and its expiry.
        config.services = [s for s in config.services if not hasattr(s, "bound_port")]
        self.runtime = runtime
        self._config_digest = _digest(config)
        async with asyncio_loop():
            self.connection = await aio(self.settings.connect)(f"rillet-worker-{self.name}")
            try:
                js = self.connection.jetstream()
                await aio(self.settings.ensure)(js)
                self.js = js
                self.kv = await aio(js.key_value)(self.settings.leases)
                self.store = await aio(js.object_store)(self.settings.snapshots)
                # The config runs until the partitions are released, each with a
                # snapshot of its keys' stream state: stopping the config first would
                # close the streams and empty the snapshots. So it is shielded from
                # the worker's cancellation and stopped after.
                config_scope = trio.CancelScope(shield=True)

                async def run_config(task_status: trio.TaskStatus[Running]) -> None:
                    with config_scope:
                        await serve(config, runtime=runtime, task_status=task_status)

                async with trio.open_nursery() as services:
                    try:
                        running: Running = await services.start(run_config)
                        await self._work(running, task_status)
                    finally:
                        config_scope.cancel()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await aio(self.connection.close)()

    async def _work(self, running: Running, task_status: trio.TaskStatus[Running]) -> None:
        """Take partitions and answer queries until cancelled; then let every partition
        go (each with its snapshot)."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            subscription = await aio(self.connection.subscribe)(
                self.settings.query_subject, cb=self._answer_aio)
            interest = await aio(self.connection.subscribe)(
                self.settings.live_subject, cb=self._interest_aio)
            nursery.start_soon(self._live)
            nursery.start_soon(self._leases)
            nursery.start_soon(self._balancing)
            nursery.start_soon(self._snapshots)
            task_status.started(running)
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await aio(subscription.unsubscribe)()
                    await aio(interest.unsubscribe)()
                    await self._release_all()

    # Leases ----------------------------------------------------------------

    async def _leases(self) -> None:
        """Renew the heartbeat and every owned lease each third of the lease.

        Only cheap KV writes happen here: balancing (which reads the bucket and
        may restore snapshots) runs in its own task, so a slow JetStream API
        call there, as while a cluster elects a new leader, never lets a lease
        run out.
        """
        period = self.settings.lease / 3
        me = self.name.encode()
        while True:
            try:
                await aio(self.kv.put)(f"w.{self.name}", me)
                for partition, owned in list(self.owned.items()):
                    await self._renew(partition, owned, me)
            except Exception as error:
                log.warning("%s: renewing leases failed (%s); retrying", self.name, error)
            await trio.sleep(period)

    async def _renew(self, partition: int, owned: _Owned, me: bytes) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            owned.revision = await aio(self.kv.update)(f"p.{partition}", me,
                                                      last=owned.revision)
            return
        except KeyWrongLastSequenceError:
            pass
        # An update whose reply was lost (a timeout while a node failed) may have
        # been stored: the lease is still this worker's if the entry says so.
        entry = await self._lease_entry(partition)
        if entry is not None and entry.value == me:
            owned.revision = entry.revision
            return
        if self.owned.get(partition) is owned:
            log.warning("%s lost the lease on partition %d; stopping it", self.name, partition)
            self.owned.pop(partition, None)
            owned.scope.cancel()

    async def _lease_entry(self, partition: int) -> Any:
        from nats.js.errors import KeyDeletedError, KeyNotFoundError

        try:
            return await aio(self.kv.get)(f"p.{partition}")
        except (KeyNotFoundError, KeyDeletedError):
            return None

    async def _balancing(self) -> None:
        me = self.name.encode()
        while True:
            try:
                await self._balance(me)
            except Exception as error:
                log.warning("%s: balancing partitions failed (%r); retrying", self.name, error)
            await trio.sleep(self.settings.lease / 3)

    async def _present(self) -> dict[str, int]:
        """The bucket's keys that have an entry (possibly a deletion marker), read from
        the stream's state: one request to its leader, where listing keys would create
        a consumer (a JetStream API call that stalls while a cluster elects)."""
        prefix = f"$KV.{self.settings.leases}."
        info = await aio(self.js.stream_info)(f"KV_{self.settings.leases}",
                                              subjects_filter=f"{prefix}>")
        return {subject[len(prefix):]: count
                for subject, count in (info.state.subjects or {}).items()}

    async def _balance(self, me: bytes) -> None:
        from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

        present = await self._present()
        alive = 0
        for key in (k for k in present if k.startswith("w.")):
            try:
                await aio(self.kv.get)(key)  # a worker that stopped left a deletion marker
                alive += 1
            except (KeyNotFoundError, KeyDeletedError):
                pass
        target = math.ceil(self.settings.partitions / max(1, alive))
        while len(self.owned) > target:
            await self._release(max(self.owned))
        if len(self.owned) >= target:
            return
        # Workers start looking at different places, so they rarely race for one lease;
        # partitions without any entry first, then those whose entry may be a release.
        start = sum(me) % self.settings.partitions
        order = [(start + step) % self.settings.partitions
                 for step in range(self.settings.partitions)]
        order.sort(key=lambda p: f"p.{p}" in present)
        for partition in order:
            if partition in self.owned:
                continue
            try:
                revision = await aio(self.kv.create)(f"p.{partition}", me)
            except KeyWrongLastSequenceError:
                continue
            await self._acquire(partition, revision)
            if len(self.owned) >= target:
                return

    async def _acquire(self, partition: int, revision: int) -> None:
        # Owned (so renewed) from the start: restoring can take longer than the lease.
        scope = trio.CancelScope()
        owned = _Owned(revision, scope)
        self.owned[partition] = owned
        if partition in self._held_before:
            self._forget(partition)  # what this worker had is older than the snapshot
        self._held_before.add(partition)
        try:
            with trio.fail_after(_CALL_TIMEOUT):
                owned.sequence = await self._restore(partition)
                await self._recreate_consumer(partition, owned.sequence)
        except BaseException:
            # Let go (the lease too, so that any worker may take it at once).
            if self.owned.get(partition) is owned:
                del self.owned[partition]
            with trio.CancelScope(shield=True), trio.move_on_after(5), \
                    contextlib.suppress(Exception):
                await aio(self.kv.delete)(f"p.{partition}", last=owned.revision)
            raise
        owned.ready = True
        self.acquired += 1
        self.nursery.start_soon(self._consume, partition, owned)
        log.info("%s took partition %d from sequence %d", self.name, partition,
                 owned.sequence + 1)

    async def _release(self, partition: int) -> None:
        owned = self.owned.pop(partition)
        owned.scope.cancel()
        if owned.ready:  # else it never consumed: its last snapshot stands
            await owned.stopped.wait()
            await self._snapshot({partition: owned}, releasing=True)
        try:
            await aio(self.kv.delete)(f"p.{partition}", last=owned.revision)
        except Exception as error:
            log.warning("%s: releasing partition %d: %s", self.name, partition, error)
        self._forget(partition)
        self._drop_state({partition})
        self.released += 1
        log.info("%s released partition %d", self.name, partition)

    async def _release_all(self) -> None:
        for partition in list(self.owned):
            await self._release(partition)
        try:
            await aio(self.kv.delete)(f"w.{self.name}")
        except Exception as error:
            log.warning("%s: removing its heartbeat: %s", self.name, error)

    def _drop_state(self, partitions: set[int]) -> None:
        """Drop the partitions' per-key stream state too, so that taking one back later
        starts from its snapshot, not from what this worker knew when it let go."""
        config = self.runtime.config
        if config is not None:
            with self.runtime:
                _handover.drop(config.streams, self.settings, partitions)

    def _forget(self, partition: int) -> None:
        """Drop a partition's index entries: its new owner answers for them now."""
        index = self.runtime.index
        for event in [e for e in index if self.settings.partition(e) == partition]:
            index.delete_exactly(event)

    # Consuming -------------------------------------------------------------

    async def _recreate_consumer(self, partition: int, sequence: int) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        name = self.settings.consumer(partition)
        with contextlib.suppress(NotFoundError):
            await aio(self.js.delete_consumer)(self.settings.stream, name)
        config = ConsumerConfig(
            durable_name=name, filter_subject=self.settings.subject(partition),
            ack_policy=AckPolicy.ALL, ack_wait=max(60.0, 4 * self.settings.snapshot_interval),
            max_ack_pending=-1)
        if sequence:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = sequence + 1
        else:
            config.deliver_policy = DeliverPolicy.ALL
        await aio(self.js.add_consumer)(self.settings.stream, config)

    async def _consume(self, partition: int, owned: _Owned) -> None:
        import nats.errors

        try:
            with owned.scope:
                subscription = await aio(self.js.pull_subscribe_bind)(
                    self.settings.consumer(partition), stream=self.settings.stream)
                while True:
                    try:
                        messages = await aio(subscription.fetch)(_FETCH, timeout=1)
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                    except Exception as error:
                        log.warning("%s: fetching partition %d: %r", self.name, partition,
                                    error)
                        await trio.sleep(0.5)
                        continue
                    if not messages:
                        continue
                    self._process(owned, messages)
                    # Ack-all: one acknowledgement covers the batch, sent after processing.
                    await aio(messages[-1].ack)()
                    await trio.lowlevel.checkpoint()
        finally:
            owned.stopped.set()

    def _process(self, owned: _Owned, messages: list[Any]) -> None:
        runtime = self.runtime
        for message in messages:
            sequence = message.metadata.sequence.stream
            if sequence <= owned.sequence:
                continue  # redelivered after a reconnect: processed already
            events = decode_message(message.data, runtime.now()).events
            runtime.stream(events)
            self.processed += len(events)
            owned.sequence = sequence

    # Snapshots -------------------------------------------------------------

    async def _snapshots(self) -> None:
        pause = self.settings.snapshot_interval
        while True:
            await trio.sleep(pause)
            turns = _Turns()
            try:
                await self._snapshot({p: o for p, o in self.owned.items() if o.ready}, turns)
            except Exception as error:
                log.warning("%s: writing snapshots failed: %s", self.name, error)
            # Taking snapshots may cost at most a twentieth of the worker's time: a large
            # state is snapshotted less often than snapshot_interval, not all the time.
            # Only the round's own turns count, not what the loop ran while it waited.
            pause = max(self.settings.snapshot_interval, _SNAPSHOT_DUTY * turns.spent())

    async def _snapshot(self, owned: dict[int, _Owned], turns: _Turns | None = None, *,
                        releasing: bool = False) -> None:
        """Write each partition's snapshot: its index entries, its share of the streams'
        state and the stream sequence they cover, each taken whole in one turn of the
        loop (so they agree), one partition per turn (so the loop runs in between).
        A periodic round skips a partition let go meanwhile (its release wrote the last
        snapshot, then dropped the state); ``releasing`` is that release's own call.
        ``turns`` times the round's own turns."""
        turns = turns or _Turns()
        config = self.runtime.config
        # The partitions of the keys, worked out for this round beforehand, a slice
        # per turn (what a key's partition is never changes).
        index_partitions: dict[Any, int] = {}
        key_partitions: dict[Any, int] = {}
        for start, event in enumerate(list(self.runtime.index)):
            self._partition_of(event, index_partitions)
            if start % SLICE == SLICE - 1:
                await turns.wait(trio.lowlevel.checkpoint())
        if config is not None:
            for _ in _handover.remember_partitions(config.streams, self.settings,
                                                   key_partitions, SLICE):
                await turns.wait(trio.lowlevel.checkpoint())
        for partition, held in owned.items():
            if not releasing and self.owned.get(partition) is not held:
                continue
            events = [event for event in self.runtime.index
                      if self._partition_of(event, index_partitions) == partition]
            index = encode_request(events, framed=False)
            states = {} if config is None else _handover.export(
                config.streams, self.settings, {partition}, key_partitions)
            try:
                state = _handover.dumps((self._config_digest, states.get(partition)))
            except Exception as error:
                # A value a stream keeps that cannot be pickled (what a field function
                # returned) costs the partition its stream state, not its index.
                self._limited.warning(
                    ("unpicklable", partition), "%s: the stream state of partition %d cannot "
                    "be saved (%r); a new owner starts it fresh", self.name, partition, error)
                state = _handover.dumps((self._config_digest, None))
            data = b"".join((held.sequence.to_bytes(8, "big"),
                             len(index).to_bytes(8, "big"), index, state))
            with trio.fail_after(_CALL_TIMEOUT):
                await turns.wait(aio(self.store.put)(f"p.{partition}", data))
            self.snapshots += 1

    def _partition_of(self, event: Any, known: dict[Any, int]) -> int:
        """``event``'s partition; remembered in ``known`` by index key when the partition
        key is made of host and service only (the default), whose partition never changes."""
        if not self._index_keyed:
            return self.settings.partition(event)
        key = (event.host, event.service)
        partition = known.get(key)
        if partition is None:
            partition = known[key] = self.settings.partition(event)
        return partition

    async def _restore(self, partition: int) -> int:
        from nats.js.errors import NotFoundError, ObjectNotFoundError

        try:
            found = await aio(self.store.get)(f"p.{partition}")
        except (NotFoundError, ObjectNotFoundError):
            return 0
        data = found.data or b""
        sequence = int.from_bytes(data[:8], "big")
        length = int.from_bytes(data[8:16], "big")
        index = self.runtime.index
        now = self.runtime.now()
        restored = 0
        for event in decode_message(data[16:16 + length], now).events:
            if event.time is not None and outlived(event.time, event.ttl, now):
                continue
            if index.lookup(event.host, event.service) is None:
                index(Event(**event.as_dict()))
                restored += 1
        keys = self._restore_state(partition, data[16 + length:])
        log.info("%s restored %d index entries and %d keys of stream state of partition %d "
                 "(sequence %d)", self.name, restored, keys, partition, sequence)
        return sequence

    def _restore_state(self, partition: int, data: bytes) -> int:
        config = self.runtime.config
        if not data or config is None:
            return 0
        digest, state = _handover.loads(data)
        if digest != self._config_digest:
            log.warning("%s: partition %d's snapshot was written by another config; its "
                        "stream state starts fresh", self.name, partition)
            return 0
        if state is None:
            return 0
        self._drop_state({partition})
        with self.runtime:
            keys = _handover.restore(config.streams, state)
        self.carried_keys += keys
        return keys

    # Queries ---------------------------------------------------------------

    async def _answer_aio(self, message: Any) -> None:
        """Answer a fanned-out query for the partitions owned right now (asyncio callback)."""
        import asyncio

        from streams._query import QuerySyntaxError

        if (message.headers or {}).get("Live"):
            # A new subscriber's first answer: its updates follow from this search on.
            self._want_live()
        owned = {p for p, o in self.owned.items() if o.ready}
        headers = {"Partitions": ",".join(str(p) for p in sorted(owned))}
        parts = []
        try:
            # In slices, letting the loop run between them (consuming, renewing
            # leases), so a query over a large index never holds this worker.
            for found in self.runtime.index.search_slices(message.data.decode(), SLICE):
                mine = [e for e in found if self.settings.partition(e) in owned]
                if mine:
                    # Concatenated Msgs parse as one holding all their events.
                    parts.append(encode_request(mine, framed=False))
                await asyncio.sleep(0)
        except (QuerySyntaxError, UnicodeDecodeError, ValueError) as error:
            headers["Error"] = str(error)
            parts = []
        # An answer larger than NATS's max_payload goes in several messages, each
        # numbered (the edge counts the partitions answered once it has the last).
        limit = max(1, self.connection.max_payload - 4096)  # the headers' room
        bodies: list[bytes] = []
        for part in parts:
            if bodies and len(bodies[-1]) + len(part) <= limit:
                bodies[-1] += part
            else:
                bodies.append(part)
        bodies = bodies or [b""]
        headers["Worker"] = self.name
        for number, body in enumerate(bodies, 1):
            headers["Part"] = f"{number}/{len(bodies)}"
            await self.connection.publish(message.reply, body, headers=dict(headers))

    # Live subscriptions ----------------------------------------------------

    async def _interest_aio(self, message: Any) -> None:
        self._want_live()

    def _want_live(self) -> None:
        self._live_until = time.monotonic() + _LIVE_LINGER
        if self._subscription is None:
            # The index publishes its updates only while "index" is subscribed.
            self._subscription = self.runtime.pubsub.subscribe("index", self._update,
                                                               persistent=True)

    async def _live(self) -> None:
        """While an edge has live subscribers, publish the index updates of each owned
        partition to its subject, in batches."""
        pubsub = self.runtime.pubsub
        try:
            while True:
                await trio.sleep(_LIVE_INTERVAL)
                if time.monotonic() >= self._live_until and self._subscription is not None:
                    pubsub.unsubscribe(self._subscription)
                    self._subscription = None
                    self._updates = []
                if self._updates:
                    updates, self._updates = self._updates, []
                    try:
                        await self._publish_updates(updates)
                    except Exception as error:
                        self.live_dropped += len(updates)
                        log.warning("%s: publishing %d index updates failed: %s", self.name,
                                    len(updates), error)
        finally:
            if self._subscription is not None:
                pubsub.unsubscribe(self._subscription)
                self._subscription = None

    def _update(self, event: Any) -> None:
        updates = self._updates
        if len(updates) >= _LIVE_MAX:
            dropped = len(updates) // 2
            del updates[:dropped]
            self.live_dropped += dropped
        updates.append(event)

    async def _publish_updates(self, updates: list[Any]) -> None:
        by_partition: dict[int, list[Any]] = {}
        for event in updates:
            by_partition.setdefault(self.settings.partition(event), []).append(event)
        for partition, events in by_partition.items():
            if partition not in self.owned:
                continue  # indexed by a stream here, but another worker answers for it
            await aio(self.connection.publish)(self.settings.index_subject(partition),
                                               encode_request(events, framed=False))
            self.live_published += len(events)

    def statistics(self) -> dict[str, Any]:
        return {"owned": sorted(self.owned), "processed": self.processed,
                "acquired": self.acquired, "released": self.released,
                "snapshots": self.snapshots, "carried_keys": self.carried_keys,
                "live_published": self.live_published, "live_dropped": self.live_dropped}


def _digest(config: Config) -> bytes:
    """What two workers' configs must share for one's stream state to fit the other's."""
    digest = hashlib.sha256()
    try:
        for path in source_files(config):
            digest.update(str(path.name).encode() + b"\0" + path.read_bytes())
    except OSError:
        digest.update(config.source.encode())
    return digest.digest()
