"""Recording every input of a live `rillet run`, locally (--record) and from another process
(`rillet record remote`, through the SSE server), fed by real clients over the Riemann
protocol, Graphite plaintext and HTTP JSON; both recordings replay to what the sinks got."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import Receiver, rillet_listening

from streams import Event
from transport import Client
from transport._codec import decode_message
from transport._recording import MSG, TICK, RecordingReader, recording_files

pytestmark = pytest.mark.network

CONFIG = """
from streams import *
from transport import forward, graphite_server, sse_server, tcp_server, udp_server, ws_server

tcp_server(port=0)
udp_server(port=0)
graphite_server(port=0, source_host=1)
sse_server(port=0)
ws_server(port=0)
out = forward("127.0.0.1", {port}, linger=0, queue_size=1000)
streams(
    where(lambda e: e.metric is not None and e.metric > 90, throttle(4, 60, out)),
    where(lambda e: e.service == "health", by(["host"], stable(0.3, "state", out))),
    index,
)
"""


def rillet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport._cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _alert(fields: dict[str, Any]) -> tuple[Any, ...]:
    return fields.get("host"), fields.get("service"), fields.get("state"), fields.get("metric")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("live")
    receiver = Receiver()
    config = tmp / "monitoring.py"
    config.write_text(CONFIG.format(port=receiver.port))
    record = tmp / "rec"
    remote = tmp / "remote.rrec"
    kinds = ("TCP", "UDP", "Graphite TCP", "SSE", "WebSocket")
    with rillet_listening(config, "--record", str(record), "--pid-file", str(tmp / "pid"),
                          kinds=kinds) as ports:
        follower = subprocess.Popen(
            [sys.executable, "-m", "transport._cli", "record", "remote",
             f"127.0.0.1:{ports['SSE']}", "--duration", "120", "-o", str(remote)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert follower.stderr is not None
            started = follower.stderr.readline()
            assert "recording 127.0.0.1" in started, started + follower.stderr.read()
            now = time.time()
            # Graphite plaintext: two pages (host from path segment 1), one below the line
            with socket.create_connection(("127.0.0.1", ports["Graphite TCP"])) as graphite:
                graphite.sendall(f"collectd.web1.disk 95.5 {int(now)}\n"
                                 f"collectd.web2.disk 12 {int(now)}\n"
                                 f"collectd.web3.disk 97 {int(now)}\n".encode())
            receiver.wait_for(2)
            # HTTP JSON input: a third page
            request = urllib.request.Request(
                f"http://127.0.0.1:{ports['WebSocket']}/events", method="POST",
                data=json.dumps({"host": "api", "service": "disk", "metric": 93.0}).encode())
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            receiver.wait_for(3)
            with Client("127.0.0.1", ports["TCP"]) as client:
                client.send(Event(host="db", service="disk", metric=99.0))  # the 4th page
                client.send(Event(host="db2", service="disk", metric=99.5))  # throttled
                client.send(Event(host="w", service="health", state="critical"))
            receiver.wait_for(5)  # stable(0.3) lets w's critical through
        except BaseException:
            follower.kill()
            raise
        # Stopping the server ends the remote recording (its connection closes).
    try:
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    receiver.close()
    yield {"config": config, "record": record, "remote": remote, "tmp": tmp,
           "received": receiver.events, "follower": (follower.returncode, out, err)}


def _replayed(live: dict[str, Any], recording: Path) -> list[tuple[Any, ...]]:
    out = live["tmp"] / f"{recording.name}.jsonl"
    done = rillet("replay", str(live["config"]), "--recording", str(recording), "--alerts",
                  str(out))
    assert done.returncode == 0, done.stderr
    return [_alert(json.loads(line)["event"]) for line in out.read_text().splitlines()]


def test_graphite_and_http_inputs_are_recorded_and_replay_to_what_the_sinks_got(
        live: dict[str, Any]) -> None:
    received = list(dict.fromkeys(_alert(e.as_dict()) for e in live["received"]))
    assert ("web1", "collectd.disk", None, 95.5) in received  # Graphite
    assert ("api", "disk", None, 93.0) in received  # HTTP JSON
    assert ("db", "disk", None, 99.0) in received and len(received) == 5
    services = set()
    for path in recording_files(live["record"]):
        for frame in RecordingReader(path).frames():
            if frame.kind == MSG:
                services |= {e.service for e in decode_message(frame.data, 0).events}
    assert {"collectd.disk", "disk", "health"} <= services
    assert _replayed(live, live["record"]) == received


def test_a_remote_recording_replays_to_what_the_sinks_got(live: dict[str, Any]) -> None:
    code, out, err = live["follower"]
    assert code == 0, err
    assert f"requests to {live['remote']}" in out
    reader = RecordingReader(live["remote"])
    assert reader.verify() is True
    kinds = [frame.kind for frame in reader.frames()]
    assert kinds.count(MSG) == 5 and TICK in kinds  # graphite (one request), http, 3 tcp
    assert "recorded from 127.0.0.1:" in reader.header["note"]
    received = list(dict.fromkeys(_alert(e.as_dict()) for e in live["received"]))
    assert _replayed(live, live["remote"]) == received


def test_record_remote_names_what_is_wrong(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = rillet("record", "remote", f"127.0.0.1:{port}", "--duration", "1s", "-o",
                  str(tmp_path / "r.rrec"))
    assert done.returncode == 2
    assert f"cannot reach 127.0.0.1:{port}" in done.stderr and "sse_server" in done.stderr
    done = rillet("record", "remote", "nowhere", "-o", str(tmp_path / "r.rrec"))
    assert done.returncode == 2 and "give the SSE server as HOST:PORT" in done.stderr
