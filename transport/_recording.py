"""Recordings (``.rrec``): what reached the servers, kept so any config can replay it.

A recording is taken at the transport boundary: the wire bytes of every
request the servers handed to the streams, verbatim (decode quirks replay
too), with the server's clock at that moment, so one recording serves every
config. Layout, all integers little-endian::

    file    = header block* footer?
    header  = "RRLTREC1" u32:len JSON{format, rillet_version, start_us, hostname, note,
              ticks (timer runs recorded), sample (e.g. "host:10%", or null),
              alerts (sink deliveries recorded: ALERT frames), alert_sinks (those
              sinks only, or null: all), config_sha256 (of the config running when
              the file was started; "" when not known)}
    block   = "BLK1" u32:clen u32:ulen u32:nframes u64:first_us u64:last_us u64:first_seq
              u32:crc32(compressed bytes) zstd(frames)
    footer  = "END1" u32:len JSON{blocks: [[offset, first_us, last_us, first_seq]...],
              messages, gaps, sha256 (of every byte before the footer)}
              u64:footer_offset "RRLTEND1"

A block holds about 1 MiB of frames compressed with zstd level 3 and decodes
alone; its frame times are deltas from ``first_us``. A frame is a varint kind
and its fields (``zz`` is a zigzag varint delta in microseconds from the
previous frame of the block, since the wall clock may step back):

- MSG  (1): zz dt, varint conn, varint len, the request Msg as received; the
  events of the other inputs (Graphite plaintext, HTTP and WebSocket JSON,
  self-instrumentation) are recorded as a Msg holding them, their
  connection id 0, so they replay through the same path;
- TICK (2): zz dt: the server ran its due timers at this time;
- CONN (3): zz dt, varint conn, varint open(1)/close(0), varint len, peer text;
- GAP  (4): zz dt, varint count: requests the full writer queue dropped;
- SEED (5): varint len, a Msg of the index's events when the file was started;
- MARK (6): zz dt, varint len, a note;
- ALERT (7): zz dt, varint alert_id, varint lineage, varint len, JSON{sink, event,
  config_sha256}: an event a sink of the live config received (``rillet run
  --record``), at the server's clock when the sink was called. ``alert_id``
  counts the recorder's alerts from 0 (a hole: alerts a full writer queue
  dropped); ``sink`` is named as a replay names it (``pagerduty#2``); ``event``
  is the event as a replay's alert log writes it. ``lineage`` is 0 when a timer
  ran the sink (TICK), 1 when the request being streamed is the last MSG frame
  before this one in the file, 2 when that request is not in the file (sampled
  out, lost in a GAP, or before a cut).

The footer lets a reader seek by time without decompressing earlier blocks.
A file whose writer died has no footer: a reader scans its blocks and drops
a torn last one (short, or failing its CRC).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from ._slices import _varint as _read_varint

__all__ = ["ALERT", "CONN", "GAP", "MARK", "MSG", "SEED", "TICK", "Frame", "RecordingError",
           "RecordingReader", "RecordingWriter", "Sampler", "WireRecorder", "cut",
           "alert_fields", "config_sha256", "import_jsonl", "merge", "parse_duration",
           "read_requests", "record_events",
           "record_on_request", "recording_files",
           "request_path", "rillet_version",
           "write_requests"]

log = logging.getLogger("rillet.recording")

MAGIC = b"RRLTREC1"
END_MAGIC = b"RRLTEND1"
BLOCK_TAG = b"BLK1"
FOOTER_TAG = b"END1"
FORMAT = "rillet.rrec/1"
_BLOCK = struct.Struct("<IIIQQQI")
_TRAILER = struct.Struct("<Q8s")
BLOCK_BYTES = 1 << 20
ZSTD_LEVEL = 3

MSG, TICK, CONN, GAP, SEED, MARK, ALERT = 1, 2, 3, 4, 5, 6, 7
KIND_NAMES = {MSG: "msg", TICK: "tick", CONN: "conn", GAP: "gap", SEED: "seed", MARK: "mark",
              ALERT: "alert"}
#: An ALERT frame's lineage: a timer's, the last MSG frame's, a request not recorded.
BY_TIMER, BY_LAST_REQUEST, BY_UNRECORDED_REQUEST = 0, 1, 2


class RecordingError(Exception):
    """A recording that cannot be read (not one, or damaged before its first block)."""


class Frame(NamedTuple):
    """One decoded frame: kind, time (µs since the epoch), connection, data, and a
    number (a GAP's dropped requests; 1/0 for a CONN's open/close). An ALERT keeps
    its alert_id in ``conn``, its lineage in ``n`` and its JSON in ``data``."""

    kind: int
    t_us: int
    conn: int = 0
    data: bytes = b""
    n: int = 0


# Varints -------------------------------------------------------------------

def _varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int, out: bytearray) -> None:
    _varint(value << 1 if value >= 0 else ((-value) << 1) - 1, out)




def rillet_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rillet")
    except PackageNotFoundError:
        return "unknown"


def config_sha256(path: str | Path) -> str:
    """The digest that names a config in replays and in a recording's live alerts."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def alert_fields(event: Any) -> dict[str, Any]:
    """An event a sink received, as an alert log (replayed or live) writes it."""
    fields = event.as_dict() if hasattr(event, "as_dict") else {"value": repr(event)}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items()}


# Writing --------------------------------------------------------------------

class RecordingWriter:
    """Writes one ``.rrec`` file: frames are buffered into blocks, ``close`` adds the footer.

    Not thread-safe: :class:`WireRecorder` calls it from its writer thread alone.
    """

    def __init__(self, path: str | Path, *, start_us: int, note: str = "", ticks: bool = True,
                 sample: str | None = None, block_bytes: int = BLOCK_BYTES,
                 alerts: bool = False, alert_sinks: list[str] | None = None,
                 config: str = "") -> None:
        import zstandard

        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._hash = hashlib.sha256()
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._block_bytes = block_bytes
        self._buffer = bytearray()
        self._frames = 0
        self._since = 0.0
        self._first_us = self._last_us = start_us
        self._first_seq = self.messages = self.gaps = 0
        self._index: list[list[int]] = []
        self._offset = 0
        header = json.dumps({"format": FORMAT, "rillet_version": rillet_version(),
                             "start_us": start_us, "hostname": socket.gethostname(),
                             "note": note, "ticks": ticks, "sample": sample,
                             "alerts": alerts, "alert_sinks": alert_sinks,
                             "config_sha256": config},
                            sort_keys=True).encode()
        self._write(MAGIC + struct.pack("<I", len(header)) + header)
        self._file.flush()  # a file being written reads as one without a footer

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self._offset += len(data)

    def _time(self, t_us: int) -> None:
        if not self._frames:
            self._first_us = self._last_us = t_us
        _zigzag(t_us - self._last_us, self._buffer)
        self._last_us = t_us

    def _framed(self) -> None:
        if not self._frames:
            self._since = time.monotonic()
        self._frames += 1
        if len(self._buffer) >= self._block_bytes:
            self.flush()

    def flush_if_older(self, seconds: float) -> None:
        """Write the block being filled once its first frame is ``seconds`` old: a
        quiet server's frames reach the disk (and survive a crash) anyway."""
        if self._frames and time.monotonic() - self._since >= seconds:
            self.flush()

    def message(self, t_us: int, conn: int, payload: bytes) -> None:
        out = self._buffer
        _varint(MSG, out)
        self._time(t_us)
        _varint(conn, out)
        _varint(len(payload), out)
        out += payload
        self.messages += 1
        self._framed()

    def tick(self, t_us: int) -> None:
        _varint(TICK, self._buffer)
        self._time(t_us)
        self._framed()

    def connection(self, t_us: int, conn: int, opened: bool, peer: str) -> None:
        out = self._buffer
        _varint(CONN, out)
        self._time(t_us)
        _varint(conn, out)
        _varint(int(opened), out)
        text = peer.encode()
        _varint(len(text), out)
        out += text
        self._framed()

    def gap(self, t_us: int, count: int) -> None:
        _varint(GAP, self._buffer)
        self._time(t_us)
        _varint(count, self._buffer)
        self.gaps += count
        self._framed()

    def seed(self, payload: bytes) -> None:
        out = self._buffer
        _varint(SEED, out)
        if not self._frames:
            self._first_us = self._last_us
        _varint(len(payload), out)
        out += payload
        self._framed()

    def mark(self, t_us: int, note: str) -> None:
        out = self._buffer
        _varint(MARK, out)
        self._time(t_us)
        text = note.encode()
        _varint(len(text), out)
        out += text
        self._framed()

    def alert(self, t_us: int, alert_id: int, lineage: int, data: bytes) -> None:
        out = self._buffer
        _varint(ALERT, out)
        self._time(t_us)
        _varint(alert_id, out)
        # A copied alert whose request is not in this file (cut after it) names none.
        _varint(BY_UNRECORDED_REQUEST if lineage == BY_LAST_REQUEST and not self.messages
                else lineage, out)
        _varint(len(data), out)
        out += data
        self._framed()

    def frame(self, frame: Frame) -> None:
        """Write a frame read from another recording."""
        kind = frame.kind
        if kind == MSG:
            self.message(frame.t_us, frame.conn, frame.data)
        elif kind == TICK:
            self.tick(frame.t_us)
        elif kind == CONN:
            self.connection(frame.t_us, frame.conn, bool(frame.n), frame.data.decode())
        elif kind == GAP:
            self.gap(frame.t_us, frame.n)
        elif kind == SEED:
            self.seed(frame.data)
        elif kind == ALERT:
            self.alert(frame.t_us, frame.conn, frame.n, frame.data)
        else:
            self.mark(frame.t_us, frame.data.decode())

    def flush(self) -> None:
        """Write the frames buffered so far as one block."""
        if not self._frames:
            return
        data = bytes(self._buffer)
        compressed = self._compressor.compress(data)
        self._index.append([self._offset, self._first_us, self._last_us, self._first_seq])
        self._write(BLOCK_TAG + _BLOCK.pack(len(compressed), len(data), self._frames,
                                            self._first_us, self._last_us, self._first_seq,
                                            zlib.crc32(compressed)) + compressed)
        self._file.flush()
        self._first_seq = self.messages
        self._buffer.clear()
        self._frames = 0

    @property
    def size(self) -> int:
        return self._offset + len(self._buffer)

    def close(self) -> None:
        self.flush()
        footer = json.dumps({"blocks": self._index, "messages": self.messages,
                             "gaps": self.gaps, "sha256": self._hash.hexdigest()},
                            sort_keys=True).encode()
        offset = self._offset
        self._file.write(FOOTER_TAG + struct.pack("<I", len(footer)) + footer +
                         _TRAILER.pack(offset, END_MAGIC))
        self._file.close()


# Reading --------------------------------------------------------------------

@dataclass
class RecordingReader:
    """Reads one ``.rrec`` file: its header, footer (when the writer closed it) and frames."""

    path: Path
    header: dict[str, Any] = field(init=False)
    footer: dict[str, Any] | None = field(init=False, default=None)
    torn: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        with open(self.path, "rb") as stream:
            head = stream.read(12)
            if len(head) < 12 or head[:8] != MAGIC:
                raise RecordingError(f"{self.path}: not a rillet recording (no {MAGIC!r} "
                                     f"header); record one with 'rillet run --record DIR' or "
                                     f"'rillet record import events.jsonl -o FILE'")
            (length,) = struct.unpack("<I", head[8:])
            try:
                self.header = json.loads(stream.read(length))
            except ValueError as error:
                raise RecordingError(f"{self.path}: damaged header: {error}") from error
            self._data_start = 12 + length
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            if size >= self._data_start + _TRAILER.size:
                stream.seek(size - _TRAILER.size)
                offset, magic = _TRAILER.unpack(stream.read(_TRAILER.size))
                if magic == END_MAGIC and self._data_start <= offset < size:
                    stream.seek(offset)
                    tag = stream.read(8)
                    if tag[:4] == FOOTER_TAG:
                        (length,) = struct.unpack("<I", tag[4:])
                        self.footer = json.loads(stream.read(length))
                        self._data_end = offset
                        return
            self._data_end = size

    def blocks(self, start_us: int | None = None) -> Iterator[tuple[int, int, bytes]]:
        """(first_us, first_seq, frame bytes) per block; with ``start_us``, the
        blocks before the one holding it are skipped through the footer's index."""
        offset = self._data_start
        if start_us is not None and self.footer is not None:
            for entry in self.footer["blocks"]:
                if entry[2] >= start_us:
                    offset = entry[0]
                    break
            else:
                return
        for _offset, first_us, first_seq, data in self.blocks_at(offset):
            yield first_us, first_seq, data

    def blocks_at(self, offset: int | None = None) -> Iterator[tuple[int, int, int, bytes]]:
        """(offset, first_us, first_seq, frame bytes) per block from the block at
        byte ``offset`` (a checkpoint's position; default: the first block)."""
        import zstandard

        decompressor = zstandard.ZstdDecompressor()
        offset = self._data_start if offset is None else offset
        with open(self.path, "rb") as stream:
            stream.seek(offset)
            while offset < self._data_end:
                head = stream.read(4 + _BLOCK.size)
                if len(head) < 4 + _BLOCK.size or head[:4] != BLOCK_TAG:
                    self.torn = True
                    return
                clen, ulen, _n, first_us, _last, first_seq, crc = _BLOCK.unpack(head[4:])
                compressed = stream.read(clen)
                if len(compressed) < clen or zlib.crc32(compressed) != crc:
                    self.torn = True
                    log.warning("%s: dropped a torn block at byte %d", self.path, offset)
                    return
                yield offset, first_us, first_seq, decompressor.decompress(
                    compressed, max_output_size=ulen)
                offset += 4 + _BLOCK.size + clen

    def frames(self, start_us: int | None = None) -> Iterator[Frame]:
        for first_us, _seq, data in self.blocks(start_us):
            yield from _frames(data, first_us)

    def verify(self) -> bool | None:
        """Whether the sha256 in the footer matches the file (None: no footer)."""
        if self.footer is None:
            return None
        digest = hashlib.sha256()
        with open(self.path, "rb") as stream:
            left = self._data_end
            while left:
                chunk = stream.read(min(left, 1 << 20))
                digest.update(chunk)
                left -= len(chunk)
        return bool(digest.hexdigest() == self.footer["sha256"])


def _frames(data: bytes, t_us: int) -> Iterator[Frame]:
    pos = 0
    end = len(data)
    read = _read_varint
    # A NamedTuple's own constructor runs Python code; replay builds one per request.
    new = tuple.__new__
    while pos < end:
        kind = data[pos]
        pos += 1
        if kind == SEED:
            length, pos = read(data, pos)
            yield Frame(SEED, t_us, 0, data[pos:pos + length])
            pos += length
            continue
        delta, pos = read(data, pos)
        t_us += (delta >> 1) ^ -(delta & 1)
        if kind == MSG:
            conn, pos = read(data, pos)
            length, pos = read(data, pos)
            yield new(Frame, (MSG, t_us, conn, data[pos:pos + length], 0))
            pos += length
        elif kind == TICK:
            yield new(Frame, (TICK, t_us, 0, b"", 0))
        elif kind in (CONN, ALERT):
            # conn and open flag, or alert id and lineage; then the text.
            conn, pos = read(data, pos)
            number, pos = read(data, pos)
            length, pos = read(data, pos)
            yield Frame(kind, t_us, conn, data[pos:pos + length], number)
            pos += length
        elif kind == GAP:
            count, pos = read(data, pos)
            yield Frame(GAP, t_us, 0, b"", count)
        elif kind == MARK:
            length, pos = read(data, pos)
            yield Frame(MARK, t_us, 0, data[pos:pos + length])
            pos += length
        else:
            raise RecordingError(f"unknown frame kind {kind} (a newer rillet wrote this "
                                 f"recording?)")


def recording_files(path: str | Path) -> list[Path]:
    """The files of a recording: the file itself, or a directory's ``*.rrec`` in time order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.rrec"))
        if not files:
            raise RecordingError(f"{path}: no *.rrec file in this directory")
        return files
    if not path.exists():
        raise RecordingError(f"{path}: no such recording")
    return [path]


# Sampling ----------------------------------------------------------------------

class Sampler:
    """Keeps the events of a fraction of the keys, whole: every event of a kept
    key (all of a host's, say) and none of the others, so stateful rules over
    the kept keys replay intact. Which keys are kept depends on a CRC-32 of the
    key, the same in every process and every run.

    >>> sampler = Sampler.parse("host:50%")
    >>> sampler.fields, sampler.percent
    (('host',), 50.0)
    """

    def __init__(self, fields: tuple[str, ...], percent: float) -> None:
        self.fields = fields
        self.percent = percent
        self._below = int(percent / 100 * 2**32)

    @classmethod
    def parse(cls, text: str) -> Sampler:
        names, sep, share = text.rpartition(":")
        fields = tuple(f.strip() for f in names.split(",") if f.strip())
        try:
            percent = float(share.rstrip("%"))
        except ValueError:
            percent = -1
        if not sep or not fields or not 0 < percent <= 100:
            raise ValueError(f"--record-sample {text!r}: give key fields and a share, e.g. "
                             f"host:10% or host,service:25%")
        return cls(fields, percent)

    def kept(self, event: Any) -> bool:
        key = "\x00".join(str(getattr(event, name, "")) for name in self.fields)
        return zlib.crc32(key.encode("utf-8", "replace")) < self._below

    def __call__(self, payload: bytes) -> bytes | None:
        """The request with the sampled-out events removed (None: none is left);
        a request without events (a query) is kept as it is."""
        from ._proto import Msg

        message = Msg.FromString(payload)
        if not message.events:
            return payload
        kept = [event for event in message.events if self.kept(event)]
        if len(kept) == len(message.events):
            return payload
        if not kept:
            return None
        del message.events[:]
        message.events.extend(kept)
        return bytes(message.SerializeToString())

    def __str__(self) -> str:
        return f"{','.join(self.fields)}:{self.percent:g}%"


# The live recorder ---------------------------------------------------------------

def _us(t: float) -> int:
    return round(t * 1_000_000)


# Not a frame kind: events of a non-protobuf input, encoded by the writer thread.
_EVENTS = -1


def _encoded(events: list[Any]) -> bytes:
    from ._snapshot import _encode  # the one home of "skip what protobuf cannot carry"

    return _encode(events)


# Made once: json.dumps with options builds an encoder per call.
_encode_alert = json.JSONEncoder(sort_keys=True, default=repr).encode


def _alert_json(sink: str, event: Any, config: str) -> bytes:
    return _encode_alert({"sink": sink, "event": alert_fields(event),
                          "config_sha256": config}).encode()


def record_events(runtime: Any, events: list[Any], conn: int = 0) -> None:
    """Hand the events an input other than the protobuf servers is about to stream
    (Graphite, HTTP and WebSocket JSON, instrumentation) to ``--record``."""
    recorder = runtime.recorder
    if recorder is not None and events:
        recorder.events(events, runtime.now(), conn)


class WireRecorder:
    """Records what the servers hand to the streams, without ever blocking them.

    The server calls :meth:`message` (and the scheduler :meth:`tick`) from the
    trio thread: each appends a tuple to a list. Every ``chunk`` items, or
    when :meth:`flush` runs (every second, from a trio task), the list goes to
    a bounded queue of ``queue_chunks`` chunks drained by a writer thread that
    encodes, compresses and writes. When that queue is full the chunk is
    dropped and its requests counted; the writer records them as a GAP frame.

    Files are ``DIR/rillet-YYYYmmddTHHMMSS.ffffffZ.rrec``; a new one starts every
    ``rotate`` seconds (with a SEED of the index), and files older than
    ``keep`` seconds are deleted. With ``sample`` (a :class:`Sampler`), the
    writer thread keeps the events of a share of the keys only. A block is
    written when it holds about 1 MiB or its first frame is ``block_seconds``
    old, whichever comes first. With ``alerts``, the sinks report what they
    receive (:class:`transport._livelog.LiveSinks`) and each event becomes an
    ALERT frame, its lineage worked out by the writer thread.
    """

    def __init__(self, directory: str | Path, *, rotate: float = 3600.0,
                 keep: float = 7 * 86400.0, chunk: int = 2048, queue_chunks: int = 64,
                 block_seconds: float = 10.0, snapshot: Any = None,
                 sample: Sampler | None = None, alerts: bool = False,
                 alert_sinks: list[str] | None = None, config_sha256: str = "") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rotate = rotate
        self.keep = keep
        self.block_seconds = block_seconds
        self.sample = sample
        self._chunk = chunk
        self._items: list[tuple[Any, ...]] = []
        self._queue: deque[Any] = deque()
        self._queue_chunks = queue_chunks
        self._ready = threading.Condition()
        self._closed = False
        self._dropped = 0
        self.messages = self.dropped = 0
        self._snapshot = snapshot
        #: Whether the config's sinks report what they receive (:meth:`alert`,
        #: ``rillet run --record``), and the sha256 of the config running now.
        self.alerts_recorded = alerts
        self.alert_sinks = alert_sinks
        self.config_sha256 = config_sha256
        self.alerts = self.alerts_dropped = 0
        # The writer thread's view of what a sink was called for (see ALERT).
        self._lineage = BY_TIMER
        self._started = time.time()
        self._writer: RecordingWriter | None = None
        self.files: list[Path] = []
        self._thread = threading.Thread(target=self._write_loop, name="rillet-recorder",
                                        daemon=True)
        self._thread.start()
        self._command(("open", self._started, self._seed()))

    # The trio side: a list append per request --------------------------------

    def message(self, payload: bytes, now: float, conn: int) -> None:
        items = self._items
        items.append((MSG, now, conn, payload))
        self.messages += 1
        if len(items) >= self._chunk:
            self.flush()

    def events(self, events: list[Any], now: float, conn: int = 0) -> None:
        """Events an input other than the protobuf servers decoded (Graphite, HTTP
        JSON): the writer thread encodes them as a Msg (events are immutable)."""
        items = self._items
        items.append((_EVENTS, now, conn, events))
        self.messages += 1
        if len(items) >= self._chunk:
            self.flush()

    def tick(self, now: float) -> None:
        self._items.append((TICK, now))

    def alert(self, now: float, sink: str, event: Any) -> None:
        """A sink received ``event``: while a request is streamed, or a timer runs
        (the writer thread tells which from the frames before it)."""
        items = self._items
        items.append((ALERT, now, self.alerts, sink, event, self.config_sha256))
        self.alerts += 1
        if len(items) >= self._chunk:
            self.flush()

    def connection(self, now: float, conn: int, opened: bool, peer: str) -> None:
        self._items.append((CONN, now, conn, opened, peer))

    def mark(self, now: float, note: str) -> None:
        """A note in the recording; "start" tells a replay when the config started."""
        self._items.append((MARK, now, note))

    def flush(self) -> None:
        items, self._items = self._items, []
        if not items:
            return
        with self._ready:
            if sum(1 for c in self._queue if c[0] == "items") >= self._queue_chunks:
                lost = sum(1 for item in items if item[0] in (MSG, _EVENTS))
                self._dropped += lost
                self.dropped += lost
                # No frame says so: the holes in the recorded alert ids do.
                self.alerts_dropped += sum(1 for item in items if item[0] == ALERT)
                return
            self._queue.append(("items", items))
            self._ready.notify()

    def _command(self, command: tuple[Any, ...]) -> None:
        with self._ready:
            self._queue.append(command)
            self._ready.notify()

    def _seed(self) -> bytes:
        if self._snapshot is None:
            return b""
        from ._codec import encode_request

        return encode_request(list(self._snapshot()), framed=False)

    async def run(self) -> None:
        """Flush every second and rotate on time; start it in the server's nursery."""
        import trio

        try:
            while True:
                await trio.sleep(1)
                self.flush()
                self.rotate_if_due(time.time())
        finally:
            self.close()

    def rotate_if_due(self, now: float) -> bool:
        """Start a new file (seeded with the index) once ``rotate`` seconds have passed."""
        if now - self._started < self.rotate:
            return False
        self.flush()
        self._started = now
        self._command(("open", now, self._seed()))
        return True

    def close(self) -> None:
        """Write what is buffered, close the file (footer) and stop the writer thread."""
        if self._closed:
            return
        self.flush()
        self._command(("close",))
        self._thread.join(timeout=30)
        self._closed = True

    # The writer thread -------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                command = self._queue.popleft()
                dropped = 0
                if command[0] == "items":  # the gap goes before the chunk after it
                    dropped, self._dropped = self._dropped, 0
            try:
                if not self._apply(command, dropped):
                    return
            except Exception:
                log.exception("recording: writing failed; requests are being lost")

    def _apply(self, command: tuple[Any, ...], dropped: int) -> bool:
        writer = self._writer
        if command[0] == "open" or command[0] == "close":
            if writer is not None:
                writer.close()
                self._writer = None
            if command[0] == "close":
                return False
            now = command[1]
            # Names sort in time order: a directory replays in name order.
            name = time.strftime("rillet-%Y%m%dT%H%M%S", time.gmtime(now)) + \
                f".{int(now * 1e6) % 1_000_000:06d}Z"
            path = self.directory / f"{name}.rrec"
            serial = 1
            while path.exists():
                serial += 1
                path = self.directory / f"{name}-{serial}.rrec"
            self._writer = writer = RecordingWriter(
                path, start_us=_us(now), sample=None if self.sample is None else str(self.sample),
                alerts=self.alerts_recorded, alert_sinks=self.alert_sinks,
                config=self.config_sha256)
            self.files.append(path)
            if command[2]:
                writer.seed(command[2])
            self._expire(now)
            log.info("recording to %s", path)
            return True
        assert writer is not None
        items = command[1]
        if dropped:
            writer.gap(_us(items[0][1]), dropped)
            self._lineage = BY_UNRECORDED_REQUEST
        for item in items:
            kind = item[0]
            if kind in (MSG, _EVENTS):
                payload = item[3] if kind == MSG else _encoded(item[3])
                if payload is not None and self.sample is not None:
                    payload = self.sample(payload)
                if payload is not None:
                    writer.message(_us(item[1]), item[2], payload)
                    self._lineage = BY_LAST_REQUEST
                else:
                    self._lineage = BY_UNRECORDED_REQUEST
            elif kind == TICK:
                writer.tick(_us(item[1]))
                self._lineage = BY_TIMER
            elif kind == ALERT:
                writer.alert(_us(item[1]), item[2], self._lineage, _alert_json(*item[3:]))
            elif kind == MARK:
                writer.mark(_us(item[1]), item[2])
            else:
                writer.connection(_us(item[1]), item[2], item[3], item[4])
        writer.flush_if_older(self.block_seconds)
        return True

    def _expire(self, now: float) -> None:
        for old in sorted(self.directory.glob("rillet-*.rrec")):
            try:
                if now - old.stat().st_mtime > self.keep:
                    old.unlink()
                    log.info("recording: deleted %s (older than --record-keep)", old)
            except OSError:
                pass


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h`` or ``7d``.

    >>> parse_duration("15m", "--warmup"), parse_duration("2", "--tolerance")
    (900.0, 2.0)
    """
    value = text.strip()
    unit = _UNITS.get(value[-1:])
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        seconds = -1
    if not seconds >= 0:
        raise ValueError(f"{option} {text!r}: give a duration such as 90s, 15m, 1h or 7d")
    return seconds


def write_requests(requests: Iterable[tuple[int, int, bytes]], output: str | Path, *,
                   note: str = "") -> int:
    """Write (t_us, conn, Msg bytes) requests, sorted by time, as a recording
    without timer ticks (it replays with ideal timers). Returns how many."""
    ordered = sorted(requests, key=lambda r: r[0])
    start = ordered[0][0] if ordered else _us(time.time())
    writer = RecordingWriter(output, start_us=start, note=note, ticks=False)
    for t_us, conn, payload in ordered:
        writer.message(t_us, conn, payload)
    writer.close()
    return len(ordered)


def read_requests(path: str | Path) -> list[tuple[int, int, bytes]]:
    """The (t_us, conn, Msg bytes) of every request of a recording, in order."""
    return [(f.t_us, f.conn, f.data) for file in recording_files(path)
            for f in RecordingReader(file).frames() if f.kind == MSG]


def cut(recording: str | Path, output: str | Path, *, start: float | None = None,
        end: float | None = None) -> int:
    """Copy the frames from ``start`` to ``end`` (Unix seconds) into a new file,
    seeking to the first block that holds ``start``. Returns the requests copied."""
    files = recording_files(recording)
    readers = [RecordingReader(path) for path in files]
    start_us = None if start is None else _us(start)
    end_us = None if end is None else _us(end)
    header = readers[0].header
    writer = RecordingWriter(output, start_us=start_us or header.get("start_us", 0),
                             note=f"cut from {recording}", ticks=header.get("ticks", False),
                             alerts=header.get("alerts", False),
                             alert_sinks=header.get("alert_sinks"),
                             config=header.get("config_sha256", ""))
    for reader in readers:
        for frame in reader.frames(start_us):
            if end_us is not None and frame.kind != SEED and frame.t_us > end_us:
                break
            if frame.kind == SEED or start_us is None or frame.t_us >= start_us:
                writer.frame(frame)
    writer.close()
    return writer.messages


def merge(recordings: list[str | Path], output: str | Path) -> int:
    """Merge recordings (of several servers) by time into one; connection ids are
    kept apart. The result has no timer ticks (one server's ticks do not time
    another's timers), so it replays with ideal timers, and no live alerts (each
    server's came from its own state, not from the merged traffic). Returns the
    requests."""
    import heapq

    streams = []
    for number, recording in enumerate(recordings):
        frames = (f for path in recording_files(recording)
                  for f in RecordingReader(path).frames() if f.kind not in (TICK, ALERT))
        streams.append(((f.t_us, number, i, f) for i, f in enumerate(frames)))
    merged = heapq.merge(*streams)
    first = next(merged, None)
    writer = RecordingWriter(output, start_us=first[0] if first else _us(time.time()),
                             note="merged from " + ", ".join(map(str, recordings)), ticks=False)
    shift = 1 << 32
    for item in ([first] if first else []), merged:
        for _t, number, _i, frame in item:
            conn = frame.conn + number * shift if frame.conn else 0
            writer.frame(frame._replace(conn=conn))
    writer.close()
    return writer.messages


# Recording a running server on request --------------------------------------

def request_path(pid_file: str | Path) -> Path:
    """Where 'rillet record running' leaves its request for the server it signals."""
    return Path(f"{pid_file}.record")


def record_on_request(runtime: Any, nursery: Any, pid_file: str | Path) -> None:
    """Start recording as the request next to the pid file asks (SIGUSR1 from
    'rillet record running'): into its directory, for its duration."""
    path = request_path(pid_file)
    try:
        request = json.loads(path.read_text())
        path.unlink()
        sample = Sampler.parse(request["sample"]) if request.get("sample") else None
        directory, duration = request["directory"], float(request["duration"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.error("SIGUSR1: no valid recording request at %s (send it with 'rillet record "
                  "running'): %s", path, error)
        return
    from ._tap import Tee, attach

    current = runtime.recorder
    if isinstance(current, WireRecorder) or (isinstance(current, Tee) and any(
            isinstance(r, WireRecorder) for r in current.recorders)):
        log.error("SIGUSR1: already recording; the request to record into %s is ignored",
                  directory)
        return
    try:
        recorder = WireRecorder(directory, sample=sample, snapshot=lambda: list(runtime.index))
    except OSError as error:
        log.error("SIGUSR1: cannot record into %s: %s", directory, error)
        return
    attach(runtime, recorder)  # beside remote recorders ('rillet record remote')
    log.info("recording into %s for %g s, as 'rillet record running' asked", directory,
             duration)
    nursery.start_soon(_record_for, runtime, recorder, duration)


async def _record_for(runtime: Any, recorder: WireRecorder, duration: float) -> None:
    import trio

    try:
        with trio.move_on_after(duration):
            await recorder.run()
    finally:
        from ._tap import detach

        detach(runtime, recorder)
        recorder.close()
        log.info("recording into %s ended (%d requests, %d dropped)", recorder.directory,
                 recorder.messages, recorder.dropped)


# Importing ---------------------------------------------------------------------

def import_jsonl(lines: Iterable[str], output: str | Path, *, source: str = "-") -> int:
    """Write a recording of events given as JSON lines (one event object a line,
    or a list of them: one request). Each request is processed at its events'
    latest ``time``, which every event must have. Returns the requests written."""
    from streams import Event

    from ._codec import encode_request

    requests: list[tuple[int, int, bytes]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            value = json.loads(line)
        except ValueError as error:
            raise RecordingError(f"{where}: not JSON: {error}") from error
        objects = value if isinstance(value, list) else [value]
        events = []
        for obj in objects:
            if not isinstance(obj, dict) or not isinstance(obj.get("time"), (int, float)):
                raise RecordingError(f"{where}: each event must be an object with a numeric "
                                     f"'time' (Unix seconds), got {json.dumps(obj)[:200]}")
            try:
                events.append(Event(**obj))
            except (TypeError, ValueError) as error:
                raise RecordingError(f"{where}: not an event: {error}") from error
        t_us = max(_us(e.time or 0.0) for e in events)
        requests.append((t_us, 0, encode_request(events, framed=False)))
    return write_requests(requests, output, note=f"imported from {source}")
