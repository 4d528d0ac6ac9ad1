"""``rillet record remote``: record a running rillet from another machine, over its SSE server.

The SSE server (``sse_server(...)`` in the config) serves ``GET /recording``:
a Server-Sent Events stream of what the running server hands to its streams,
as its ``--record`` would write it. While a client follows it, a
:class:`TapRecorder` sits beside any ``--record`` recorder (a :class:`Tee`
feeds both): each request costs a list append on the server, nothing more.

The stream is one ``event: header`` (JSON: rillet version, start time,
hostname) and then one ``data:`` line per frame::

    data: KIND T_US CONN N BASE64

KIND is the frame kind of the recording layout (MSG, TICK, CONN, GAP, SEED,
MARK), T_US the server's own processing time in microseconds, CONN the
connection, N a GAP's count (a CONN's open flag), BASE64 the frame's bytes
(a request's Msg verbatim; the events of Graphite and HTTP inputs encoded as
one). A SEED of the server's index comes first. The client writes each line
as the frame it names, so the file is what ``rillet run --record`` would have
written, with the remote's processing times, except for the limits below.

Limits: a client that cannot keep up (a slow link) costs the server at most
``max_behind`` frames of memory; beyond that the server drops frames and
sends a GAP with their count when the client catches up. A recording starts
when the client connects (state older than that is only in the SEED index:
use ``--warmup`` when replaying it), and the connection's loss ends it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import trio

from ._recording import _EVENTS, CONN, GAP, MARK, MSG, SEED, TICK, RecordingWriter, _encoded

__all__ = ["TapRecorder", "Tee", "attach", "detach", "record_remote", "serve_tap"]

log = logging.getLogger("rillet.tap")

#: Frames a remote recorder may lag before the server drops (and counts) them.
DEFAULT_MAX_BEHIND = 100_000
# The server sends what is pending this often, and a comment line when idle.
_SEND_EVERY = 0.05
_KEEPALIVE = 1.0


class TapRecorder:
    """What the servers hand to the streams, kept for one remote recorder: a bounded
    deque appended to on the trio thread and drained by the SSE connection."""

    def __init__(self, max_behind: int = DEFAULT_MAX_BEHIND) -> None:
        self.items: deque[tuple[Any, ...]] = deque()
        self.max_behind = max_behind
        self.dropped = 0

    def _add(self, item: tuple[Any, ...]) -> None:
        if len(self.items) >= self.max_behind:
            if item[0] in (MSG, _EVENTS):
                self.dropped += 1
            return
        self.items.append(item)

    def message(self, payload: bytes, now: float, conn: int) -> None:
        self._add((MSG, now, conn, payload))

    def events(self, events: list[Any], now: float, conn: int = 0) -> None:
        self._add((_EVENTS, now, conn, events))

    def tick(self, now: float) -> None:
        self._add((TICK, now))

    def connection(self, now: float, conn: int, opened: bool, peer: str) -> None:
        self._add((CONN, now, conn, opened, peer))

    def mark(self, now: float, note: str) -> None:
        self._add((MARK, now, note))

    def lines(self) -> bytes:
        """The SSE lines of what is pending (a GAP first when frames were dropped)."""
        out = []
        if self.dropped:
            out.append(_line(GAP, time.time(), 0, self.dropped, b""))
            self.dropped = 0
        items = self.items
        while items:
            item = items.popleft()
            kind = item[0]
            if kind == MSG:
                out.append(_line(MSG, item[1], item[2], 0, item[3]))
            elif kind == _EVENTS:
                out.append(_line(MSG, item[1], item[2], 0, _encoded(item[3])))
            elif kind == TICK:
                out.append(_line(TICK, item[1], 0, 0, b""))
            elif kind == CONN:
                out.append(_line(CONN, item[1], item[2], int(item[3]), item[4].encode()))
            else:
                out.append(_line(MARK, item[1], 0, 0, item[2].encode()))
        return b"".join(out)


def _line(kind: int, now: float, conn: int, n: int, data: bytes) -> bytes:
    return b"data: %d %d %d %d %s\n\n" % (kind, round(now * 1_000_000), conn, n,
                                          base64.b64encode(data))


class Tee:
    """Several recorders fed as one (``--record`` and remote recorders)."""

    def __init__(self, *recorders: Any) -> None:
        self.recorders = list(recorders)

    def message(self, payload: bytes, now: float, conn: int) -> None:
        for recorder in self.recorders:
            recorder.message(payload, now, conn)

    def events(self, events: list[Any], now: float, conn: int = 0) -> None:
        for recorder in self.recorders:
            recorder.events(events, now, conn)

    def tick(self, now: float) -> None:
        for recorder in self.recorders:
            recorder.tick(now)

    def connection(self, now: float, conn: int, opened: bool, peer: str) -> None:
        for recorder in self.recorders:
            recorder.connection(now, conn, opened, peer)

    def mark(self, now: float, note: str) -> None:
        for recorder in self.recorders:
            recorder.mark(now, note)

    def alert(self, now: float, sink: str, event: Any) -> None:
        # A remote recording carries what reached the streams, not the live alerts.
        for recorder in self.recorders:
            if hasattr(recorder, "alert"):
                recorder.alert(now, sink, event)


def attach(runtime: Any, tap: Any) -> None:
    """Feed ``tap`` what the servers hand to the streams, beside any other recorder."""
    current = runtime.recorder
    if current is None:
        runtime.recorder = tap
    elif isinstance(current, Tee):
        current.recorders.append(tap)
    else:
        runtime.recorder = Tee(current, tap)


def detach(runtime: Any, tap: Any) -> None:
    current = runtime.recorder
    if current is tap:
        runtime.recorder = None
    elif isinstance(current, Tee):
        current.recorders = [r for r in current.recorders if r is not tap]
        if len(current.recorders) == 1:
            runtime.recorder = current.recorders[0]


async def serve_tap(stream: trio.abc.Stream, conn: h11.Connection, runtime: Any, peer: str,
                    token_filter: str | None, headers: dict[str, str]) -> bool:
    """Answer ``GET /recording``: follow what the server streams until the client leaves."""
    if token_filter is not None and token_filter.strip() != "true":
        body = b"recording needs a token whose query is \"true\": it sees every event\n"
        await stream.send_all((conn.send(h11.Response(status_code=403, headers=[
            ("content-type", "text/plain"), ("content-length", str(len(body)))])) or b"") +
            (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        return True
    merged = {"content-type": "text/event-stream", "cache-control": "no-cache"}
    merged.update({k.lower(): v for k, v in headers.items()})
    await stream.send_all(conn.send(h11.Response(status_code=200,
                                                 headers=list(merged.items()))) or b"")
    from ._recording import rillet_version

    now = runtime.now()
    header = json.dumps({"rillet_version": rillet_version(), "start_us": round(now * 1e6),
                         "hostname": socket.gethostname()})
    tap = TapRecorder()
    # The index and the tap start at the same moment: nothing yields in between.
    seed = _line(SEED, now, 0, 0, _encoded(list(runtime.index)))
    attach(runtime, tap)
    log.info("remote recorder %s connected", peer)
    first = f"event: header\ndata: {header}\n\n".encode() + seed
    try:
        async with trio.open_nursery() as nursery:
            from ._http import cancel_when_closed

            nursery.start_soon(cancel_when_closed, stream, nursery.cancel_scope)
            await stream.send_all(conn.send(h11.Data(data=first)) or b"")
            idle = 0.0
            while True:
                await trio.sleep(_SEND_EVERY)
                data = tap.lines()
                idle = 0.0 if data else idle + _SEND_EVERY
                if not data and idle >= _KEEPALIVE:
                    data, idle = b": keepalive\n\n", 0.0
                if data:
                    await stream.send_all(conn.send(h11.Data(data=data)) or b"")
    finally:
        detach(runtime, tap)
        # A stopping server sends what its last moments handed to the streams.
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            rest = tap.lines()
            if rest:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                         h11.LocalProtocolError):
                    await stream.send_all(conn.send(h11.Data(data=rest)) or b"")
        log.info("remote recorder %s left", peer)
    return False


# The client ---------------------------------------------------------------------

def record_remote(server: str, output: str | Path, *, duration: float,
                  token: str | None = None, timeout: float = 30.0,
                  started: Callable[[], object] | None = None) -> RecordingWriter:
    """Follow ``http://SERVER/recording`` for ``duration`` seconds into ``output``;
    returns the closed writer (its ``messages`` and ``gaps``). ``started`` is
    called once the server has begun sending."""
    import http.client
    from urllib.parse import quote

    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"rillet record remote {server!r}: give the SSE server as HOST:PORT, "
                         f"e.g. 127.0.0.1:5558")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    path = "/recording" + (f"?token={quote(token)}" if token else "")
    try:
        connection.request("GET", path)
        response = connection.getresponse()
    except OSError as error:
        raise ValueError(f"rillet record remote: cannot reach {server}: {error}; is its config "
                         f"serving sse_server(...) there?") from error
    if response.status != 200:
        raise ValueError(f"rillet record remote: {server} answered {response.status}: "
                         f"{response.read(300).decode(errors='replace').strip()}")
    deadline = time.monotonic() + duration
    writer: RecordingWriter | None = None
    try:
        kind = ""
        while time.monotonic() < deadline:
            line = response.readline()
            if not line:
                log.warning("the server closed the recording early")
                break
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                kind = text[7:]
            elif text.startswith("data: ") and kind == "header":
                header = json.loads(text[6:])
                writer = RecordingWriter(output, start_us=header["start_us"], ticks=True,
                                         note=f"recorded from {server} "
                                              f"({header.get('hostname')}, rillet "
                                              f"{header.get('rillet_version')})")
                kind = ""
                if started is not None:
                    started()
            elif text.startswith("data: ") and writer is not None:
                _write(writer, text[6:])
    finally:
        connection.close()
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"rillet record remote: {server} sent no recording header")
    return writer


def _write(writer: RecordingWriter, fields: str) -> None:
    kind_text, t_text, conn_text, n_text, data_text = fields.split(" ")
    kind, t_us, conn, n = int(kind_text), int(t_text), int(conn_text), int(n_text)
    data = base64.b64decode(data_text)
    if kind == MSG:
        writer.message(t_us, conn, data)
    elif kind == TICK:
        writer.tick(t_us)
    elif kind == CONN:
        writer.connection(t_us, conn, bool(n), data.decode())
    elif kind == GAP:
        writer.gap(t_us, n)
    elif kind == SEED:
        writer.seed(data)
    elif kind == MARK:
        writer.mark(t_us, data.decode())
