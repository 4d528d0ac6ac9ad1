"""What the edge and the workers share about NATS JetStream: names, partitions, setup.

Events travel as Riemann ``Msg`` payloads (the wire encoding, unframed) on
the subject ``<stream>.p.<n>`` of partition ``n``; the partition of an event
is the CRC-32 of its partition key fields, modulo a fixed partition count,
so every process computes the same one. Leases and worker heartbeats live in
a key-value bucket, index snapshots in an object store, all named after the
stream. nats-py is asyncio; rillet is trio, so every call goes through
trio-asyncio (``trio_asyncio.aio_as_trio``) inside one ``open_loop()``.

>>> from streams import Event
>>> settings = ScaleOut(partitions=4)
>>> settings.partition(Event(host="web-1", service="cpu"))
0
>>> settings.subject(3)
'RILLET.p.3'
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from streams._ratelimit import LogLimiter

__all__ = ["ScaleOut", "aio"]

T = TypeVar("T")
log = logging.getLogger("rillet.jetstream")
DEFAULT_URL = "nats://127.0.0.1:4222"
PARTITION_KEY_FIELDS = ("host", "service", "state", "description")


def aio(function: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """An asyncio coroutine function (nats-py's) callable from trio."""
    import trio_asyncio

    return trio_asyncio.aio_as_trio(function)  # type: ignore[no-any-return]


def asyncio_loop() -> Any:
    """The asyncio loop (trio-asyncio's) that ``aio`` calls run in, for ``async with``.

    trio-asyncio is imported only here and in ``aio``: importing it installs
    its asyncio event loop policy process-wide, which would change asyncio
    for everything else in a process that never scales out.
    """
    import trio_asyncio

    return trio_asyncio.open_loop()


@dataclass(frozen=True)
class ScaleOut:
    """How a scaled-out rillet is laid out on JetStream (the same for edge and workers).

    Args:
        url: the NATS server(s), comma-separated.
        partitions: the fixed partition count (changing it moves keys between
            partitions: stop everything, drain, then change).
        key: the event fields whose values choose the partition.
        stream: the JetStream stream's name; the KV bucket and object store
            are named after it.
        lease: seconds a worker's lease on a partition lasts without renewal,
            which bounds how long a dead worker's partitions stay unserved.
        snapshot_interval: seconds between a worker's index snapshots, which
            bounds what a new owner replays after a failover.
        replicas: how many JetStream servers of a cluster hold each stream,
            bucket and store (1 for a single server; 3 survives one failure).
        publish_timeout: seconds an edge retries storing events (a cluster
            elects a new leader for seconds after a node dies) before it
            answers the client with an error.
        query_timeout: seconds an edge waits for every partition's answer to
            a query before it answers with an error naming those missing.
    """

    url: str = DEFAULT_URL
    partitions: int = 16
    key: tuple[str, ...] = ("host",)
    stream: str = "RILLET"
    lease: float = 6.0
    snapshot_interval: float = 5.0
    replicas: int = 1
    publish_timeout: float = 20.0
    query_timeout: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int) \
                or not 1 <= self.partitions <= 4096:
            raise ValueError(f"partitions={self.partitions!r}: give an int from 1 to 4096, "
                             f"e.g. partitions=16")
        unknown = [name for name in self.key if name not in PARTITION_KEY_FIELDS]
        if not self.key or unknown:
            raise ValueError(f"partition key {self.key!r}: give one or more of "
                             f"{', '.join(PARTITION_KEY_FIELDS)}, e.g. key=('host',)")
        if not self.stream.isidentifier():
            raise ValueError(f"stream={self.stream!r}: use letters, digits and _ only, "
                             f"e.g. stream='RILLET'")
        if self.replicas not in (1, 2, 3, 4, 5):
            raise ValueError(f"replicas={self.replicas!r}: JetStream keeps 1 to 5 copies, "
                             f"e.g. replicas=3 on a 3-node cluster")
        for name in ("lease", "snapshot_interval", "publish_timeout", "query_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0.5:
                raise ValueError(f"{name}={value!r}: give seconds above 0.5, e.g. {name}=5")

    def partition(self, event: Any) -> int:
        """The partition ``event`` belongs to."""
        key = "\0".join(str(getattr(event, name) or "") for name in self.key)
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.partitions

    def subject(self, partition: int) -> str:
        return f"{self.stream}.p.{partition}"

    @property
    def subjects(self) -> str:
        return f"{self.stream}.p.*"

    @property
    def leases(self) -> str:
        """The key-value bucket holding partition leases and worker heartbeats."""
        return f"{self.stream}_leases"

    @property
    def snapshots(self) -> str:
        """The object store holding each partition's last index snapshot."""
        return f"{self.stream}_snapshots"

    @property
    def query_subject(self) -> str:
        return f"{self.stream}.query"

    def index_subject(self, partition: int | str) -> str:
        """Where workers publish a partition's index updates while edges have live
        subscribers (core NATS, not stored)."""
        return f"{self.stream}.index.{partition}"

    @property
    def live_subject(self) -> str:
        """Where edges say, every second, that they have live subscribers."""
        return f"{self.stream}.live"

    def consumer(self, partition: int) -> str:
        return f"p{partition}"

    async def connect(self, name: str) -> Any:
        """A nats-py connection (asyncio: call from inside ``aio``) that retries forever,
        so a NATS node that restarts is reconnected to."""
        import nats

        # nats-py logs each failed reconnection attempt (5 a second) with a
        # traceback by default: one line per kind of trouble per 10 s instead.
        limited = LogLimiter(log)

        async def error(problem: Exception) -> None:
            limited.warning(type(problem).__name__, "NATS (%s): %r", name, problem)

        async def disconnected() -> None:
            log.warning("%s: disconnected from NATS; reconnecting", name)

        async def reconnected() -> None:
            log.info("%s: reconnected to NATS", name)

        return await nats.connect(
            servers=[url.strip() for url in self.url.split(",")], name=name,
            max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=5,
            allow_reconnect=True, error_cb=error, disconnected_cb=disconnected,
            reconnected_cb=reconnected)

    async def ensure(self, js: Any, within: float = 60) -> None:
        """Create the stream, the lease bucket and the snapshot store if missing (asyncio);
        retried for ``within`` seconds, since a starting cluster elects its JetStream
        leader a while after it accepts connections."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                return await self._ensure(js)
            except Exception as error:
                if loop.time() > deadline:
                    raise ConnectionError(f"JetStream at {self.url} is not usable: "
                                          f"{error!r}") from error
                log.info("JetStream not ready yet (%r); retrying", error)
                await asyncio.sleep(0.5)

    async def _ensure(self, js: Any) -> None:
        from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig

        replicas = self.replicas
        try:
            await js.stream_info(self.stream)
        except Exception:
            await js.add_stream(StreamConfig(
                name=self.stream, subjects=[self.subjects], storage=StorageType.FILE,
                num_replicas=replicas, duplicate_window=120))
        await js.create_key_value(KeyValueConfig(
            bucket=self.leases, ttl=self.lease, history=1, replicas=replicas))
        await js.create_object_store(self.snapshots,
                                     config=ObjectStoreConfig(replicas=replicas))
