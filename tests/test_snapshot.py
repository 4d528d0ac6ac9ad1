"""Index persistence (issue 10): snapshots survive kill -9 and SIGTERM; a corrupt or truncated
snapshot is reported and skipped, never fatal."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
from _helpers import start_rillet

from streams import Event
from transport._codec import FrameDecoder, encode_request
from transport._proto import Msg
from transport._snapshot import read_snapshot, write_snapshot

pytestmark = pytest.mark.network

CONFIG = """
from streams import *
from transport import index_snapshot, tcp_server

index_snapshot({path!r}, interval={interval})
tcp_server(port=0)
streams(index)
"""


class Rillet:
    """``rillet run`` in a subprocess, with the port it listens on."""

    def __init__(self, tmp_path: Path, snapshot: Path, interval: float) -> None:
        config = tmp_path / "monitoring.py"
        config.write_text(CONFIG.format(path=str(snapshot), interval=interval))
        self.process, self.port, self.log = start_rillet(config)

    def ask(self, payload: bytes) -> Msg:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(payload)
            decoder = FrameDecoder()
            while (frame := decoder.next_frame()) is None:
                decoder.feed(sock.recv(1 << 16))
            return Msg.FromString(frame)

    def stop(self, signum: int) -> str:
        self.process.send_signal(signum)
        _, rest = self.process.communicate(timeout=20)
        return self.log + rest


def events(service: str, n: int, ttl: float = 3600) -> list[Event]:
    return [Event(host=f"h{i}", service=service, metric=i, time=time.time(), ttl=ttl)
            for i in range(n)]


def test_what_the_last_snapshot_held_comes_back_after_kill_9(tmp_path: Path) -> None:
    snapshot = tmp_path / "index.snapshot"
    first = Rillet(tmp_path, snapshot, interval=0.2)
    try:
        assert first.ask(encode_request(events("kept", 50))).ok
        deadline = time.monotonic() + 10
        while True:  # poll the file for the periodic snapshot that holds them
            try:
                if len(read_snapshot(snapshot, time.time())) >= 50:
                    break
            except (FileNotFoundError, ValueError):
                pass
            assert time.monotonic() < deadline, "no snapshot with the events was written"
            time.sleep(0.05)
    finally:
        first.process.kill()  # kill -9: no shutdown code runs
        first.process.communicate(timeout=10)
    second = Rillet(tmp_path, snapshot, interval=60)
    try:
        reply = second.ask(encode_request(query='service = "kept"'))
        assert sorted(e.metric_sint64 for e in reply.events) == list(range(50))
    finally:
        log = second.stop(signal.SIGTERM)
    assert "restored 50 events into the index" in log


def test_sigterm_writes_a_last_snapshot(tmp_path: Path) -> None:
    snapshot = tmp_path / "index.snapshot"
    server = Rillet(tmp_path, snapshot, interval=3600)
    assert server.ask(encode_request(events("last", 20) + events("gone", 1, ttl=0.001))).ok
    server.stop(signal.SIGTERM)
    assert server.process.returncode == 0
    time.sleep(0.01)  # "gone" outlives its ttl
    assert sorted(e.service for e in read_snapshot(snapshot, time.time())) == ["last"] * 20


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_a_damaged_snapshot_is_reported_and_skipped(tmp_path: Path, damage: str) -> None:
    snapshot = tmp_path / "index.snapshot"
    write_snapshot(snapshot, events("old", 5))
    data = snapshot.read_bytes()
    snapshot.write_bytes({"garbage": b"not a snapshot at all",
                          "truncated": data[:-40],
                          "flipped": data[:60] + bytes([data[60] ^ 1]) + data[61:]}[damage])
    server = Rillet(tmp_path, snapshot, interval=3600)
    try:
        assert "cannot restore the index" in server.log
        assert server.ask(encode_request(query="true")).ok
    finally:
        server.stop(signal.SIGTERM)
