"""Index persistence: a snapshot file written periodically and on shutdown, restored on start.

The file is ``rillet-index-snapshot 1\\n``, the 8-byte big-endian length of a
Riemann ``Msg`` holding every indexed event (the wire encoding, so times,
ttls and attributes come back exactly), and the SHA-256 of that ``Msg``. It
is written to a temporary file beside the target, flushed to disk and
renamed over it, so a crash (even ``kill -9``) leaves the previous snapshot
or the new one, never half of one. On start the events are put back into the
index, except those whose ttl ran out meanwhile; a file that is truncated,
corrupt or from something else is reported and skipped: rillet starts with
an empty index rather than not at all.

>>> from streams import Index
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "index.snapshot")
>>> write_snapshot(path, [Event(host="a", service="b", metric=1, time=100, ttl=60)])
1
>>> read_snapshot(path, now=120)
[Event(host='a', service='b', metric=1, time=100.0, ttl=60.0)]
>>> read_snapshot(path, now=200)  # its ttl ran out while rillet was down
[]
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

from streams import Event
from streams._config import service
from streams._event import outlived
from streams._validate import StreamArgumentError

from ._codec import decode_message, encode_event, encode_request
from ._limits import check_seconds
from ._watchdog import stop_deadline

__all__ = ["SnapshotError", "index_snapshot", "read_snapshot", "write_snapshot"]

log = logging.getLogger("rillet.snapshot")

MAGIC = b"rillet-index-snapshot 1\n"
_DIGEST = 32
# Events encoded per turn of the loop while a periodic snapshot is built.
_SLICE = 4096
# The longest the snapshot written at shutdown may take (less under SIGTERM's deadline).
_LAST_SAVE_SECONDS = 10.0


class SnapshotError(ValueError):
    """A snapshot file that cannot be read back whole."""


def _encode(events: list[Any]) -> bytes:
    try:
        return encode_request(events, framed=False)
    except ValueError:
        # An event protobuf cannot carry stays out of the snapshot (and is
        # logged) rather than costing every other event its place.
        kept = []
        for event in events:
            try:
                encode_event(event)
            except ValueError as error:
                log.warning("left out of the snapshot: %s", error)
            else:
                kept.append(event)
        return encode_request(kept, framed=False)


def _seal(body: bytes) -> bytes:
    return MAGIC + len(body).to_bytes(8, "big") + body + hashlib.sha256(body).digest()


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    # The rename itself is only durable once the directory is flushed.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_snapshot(path: str | Path, events: Iterable[Any]) -> int:
    """Write ``events`` as the snapshot at ``path`` (atomically); returns how many."""
    events = list(events)
    _write(Path(path), _seal(_encode(events)))
    return len(events)


def read_snapshot(path: str | Path, now: float) -> list[Event]:
    """The events of the snapshot at ``path`` whose ttl has not run out by ``now``.

    Raises :class:`SnapshotError` for a file that is not a whole snapshot, and
    ``FileNotFoundError`` when there is none.
    """
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{path} is not a rillet index snapshot (it does not start with "
                            f"{MAGIC!r})")
    start = len(MAGIC) + 8
    length = int.from_bytes(data[len(MAGIC):start], "big")
    if len(data) != start + length + _DIGEST:
        raise SnapshotError(f"{path} is truncated or has trailing bytes: {len(data)} bytes, "
                            f"expected {start + length + _DIGEST}")
    body = data[start:start + length]
    if hashlib.sha256(body).digest() != data[start + length:]:
        raise SnapshotError(f"{path} is corrupt: its checksum does not match")
    return [Event(**event.as_dict()) for event in decode_message(body, now).events
            if event.time is None or not outlived(event.time, event.ttl, now)]


class index_snapshot:
    """Keep the index in ``path`` across restarts: restored on start, written every
    ``interval`` seconds and on shutdown.

    Declare it in the config before the servers, so the index is restored
    before the first client is accepted::

        index_snapshot("/var/lib/rillet/index.snapshot", interval=60)
    """

    def __init__(self, path: str | Path, interval: float = 60) -> None:
        path = Path(path)
        if not path.parent.is_dir():
            raise StreamArgumentError(
                f"index_snapshot(path={str(path)!r}): the folder "
                f"{str(path.parent)!r} does not exist; create it or choose another")
        check_seconds("index_snapshot", "interval", interval, 60)
        self.path = path
        self.interval = interval
        self.written = 0
        self.restored = 0
        self.failures = 0
        service(self)

    def __repr__(self) -> str:
        return f"index_snapshot({str(self.path)!r}, interval={self.interval!r})"

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore, then write every interval until cancelled, and once more when cancelled."""
        self._restore(runtime)
        task_status.started(0)
        try:
            while True:
                await trio.sleep(self.interval)
                await self.save(runtime)
        finally:
            # Shutdown: the last snapshot, within a bounded time, even while cancelled.
            started = trio.current_time()
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = min(started + _LAST_SAVE_SECONDS, stop_deadline())
                written = self.written
                await self.save(runtime)
            if scope.cancelled_caught and self.written == written:
                self.failures += 1
                log.error("the last index snapshot was not written within %.1f s of the stop; "
                          "%d events of the index are not in %s (it holds the previous "
                          "snapshot)", min(_LAST_SAVE_SECONDS, scope.deadline - started),
                          len(runtime.index), self.path)

    def _restore(self, runtime: Any) -> None:
        index = runtime.index
        try:
            events = read_snapshot(self.path, runtime.now())
        except FileNotFoundError:
            log.info("no index snapshot at %s yet; starting with an empty index", self.path)
            return
        except (SnapshotError, OSError, ValueError) as error:
            self.failures += 1
            log.error("cannot restore the index from %s (%s); starting with an empty index, "
                      "the next snapshot replaces the file", self.path, error)
            return
        for event in events:
            if index.lookup(event.host, event.service) is None:  # newer data wins
                index(event)
        self.restored = len(events)
        log.info("restored %d events into the index from %s", len(events), self.path)

    async def save(self, runtime: Any) -> None:
        """Write the index now: encoded a slice per turn, written off the loop."""
        events = list(runtime.index)
        parts = []
        for start in range(0, len(events), _SLICE):
            parts.append(_encode(events[start:start + _SLICE]))
            await trio.lowlevel.checkpoint()
        data = _seal(b"".join(parts))  # concatenated Msgs read as one
        try:
            await trio.to_thread.run_sync(_write, self.path, data)
        except OSError as error:
            self.failures += 1
            log.error("cannot write the index snapshot %s: %s", self.path, error)
            return
        self.written += 1

    def statistics(self) -> dict[str, Any]:
        return {"written": self.written, "restored": self.restored, "failures": self.failures}
