"""Record, replay, diff and why-not as a user runs them: a live `rillet run --record`
fed by real clients, its forward sink received by a real TCP peer, then the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import Receiver, rillet_listening, start_rillet

from streams import Event
from transport import Client
from transport._recording import MSG, TICK, RecordingReader, recording_files

pytestmark = pytest.mark.network

CONFIG = """
from streams import *
from transport import forward, tcp_server, udp_server

tcp_server(port=0)
udp_server(port=0)
periodically_expire(0.2)
out = forward("127.0.0.1", {port}, linger=0, queue_size=1000)
streams(
    where(lambda e: e.metric is not None and e.metric > {limit}, throttle(2, 60, out)),
    where(lambda e: e.service == "health", by(["host"], stable(0.3, "state", out))),
    expired(out),
    index,
)
"""


def rillet(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport._cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def _event(fields: dict[str, Any]) -> tuple[Any, ...]:
    return (fields.get("host"), fields.get("service"), fields.get("state"),
            fields.get("metric"), fields["time"])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory,
             riemann_client: str) -> Iterator[dict[str, Any]]:
    """One live run, recorded: what its forward sink delivered, and the files."""
    tmp = tmp_path_factory.mktemp("replay")
    receiver = Receiver()
    config = tmp / "monitoring.py"
    config.write_text(CONFIG.format(port=receiver.port, limit=90))
    record = tmp / "rec"
    with rillet_listening(config, "--record", str(record), "--pid-file", str(tmp / "pid")) \
            as ports:
        with Client("127.0.0.1", ports["TCP"]) as client:
            # throttle(2, 60): of four alerts, two pass
            for host in ("a", "b", "c", "d"):
                client.send(Event(host=host, service="disk", metric=95.0))
            client.send(Event(host="a", service="disk", metric=10.0))
            # expiry: a short ttl, reaped by the 0.2 s sweep
            client.send(Event(host="tmp", service="short", ttl=0.3, state="ok"))
            # stable(0.3): a flap never passes, a steady state does
            client.send(Event(host="w", service="health", state="ok"))
            client.send(Event(host="w", service="health", state="critical"))
            client.send(Event(host="w", service="health", state="ok"))
        receiver.wait_for(4)  # 2 throttled alerts, the expiry, the stable health
        with Client("127.0.0.1", ports["TCP"]) as client:
            client.send(Event(host="e", service="disk", metric=99.0))  # throttled away
            client.send(Event(host="w", service="health", state="ok"))
        # Debian's riemann-client over UDP: a third throttled alert, recorded too
        subprocess.run([riemann_client, "send", "-U", "-h", "f", "-S", "disk", "-d", "98.5",
                        "127.0.0.1", str(ports["UDP"])], check=True, timeout=10)
        # Delivered before the server stops: a batch cut by shutdown is sent
        # again (at least once), which the receiver would count twice.
        receiver.wait_for(5)
        _wait_until_indexed(ports["TCP"], "f")
    receiver.close()
    yield {"config": config, "record": record, "received": receiver.events, "tmp": tmp,
           "receiver_port": receiver.port}


def _wait_until_indexed(port: int, host: str) -> None:
    """A UDP datagram has no reply: wait until the server has indexed its event
    (so it was recorded too) before stopping the server."""
    deadline = time.monotonic() + 15
    with Client("127.0.0.1", port) as client:
        while not client.query(f'host = "{host}"'):
            assert time.monotonic() < deadline, f"{host}'s event never reached the index"
            time.sleep(0.02)


def test_a_live_recording_replays_to_what_the_sinks_received(recorded: dict[str, Any]) -> None:
    files = recording_files(recorded["record"])
    reader = RecordingReader(files[0])
    assert reader.verify() is True
    kinds = [frame.kind for frame in reader.frames()]
    assert kinds.count(MSG) >= 2 and TICK in kinds
    out = recorded["tmp"] / "alerts.jsonl"
    done = rillet("replay", str(recorded["config"]), "--recording", str(recorded["record"]),
                  "--alerts", str(out))
    assert done.returncode == 0, done.stderr
    assert "exact timers" in done.stderr and "alert log sha256:" in done.stderr
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    assert {a["sink"] for a in replayed} == {"forward"}
    # forward delivers at least once: a batch whose ack the stopping server
    # did not read is sent again, identical to the microsecond; count it once.
    received = list(dict.fromkeys(_event(e.as_dict()) for e in recorded["received"]))
    assert len(received) == 5
    # Live, a timer reads the wall clock as it runs; a replay reads the time the
    # server's scheduler woke up (recorded in a TICK frame): microseconds apart.
    assert [e[:4] for e in received] == [_event(a["event"])[:4] for a in replayed]
    for live, again in zip(received, replayed, strict=True):
        assert live[4] == pytest.approx(_event(again["event"])[4], abs=0.005)
    services = [e[1] for e in received]
    assert services.count("disk") == 2 and "short" in services and "health" in services
    again = rillet("replay", str(recorded["config"]), "--recording", str(recorded["record"]),
                   "--check")
    assert again.returncode == 0, again.stderr
    assert again.stdout == out.read_text()


def test_recording_info_reports_what_the_recording_holds(recorded: dict[str, Any]) -> None:
    info = rillet("recording", "info", str(recorded["record"]))
    assert info.returncode == 0, info.stderr
    assert "sha256 ok" in info.stdout
    # requests: the events' and the test's index queries (recorded, not replayed)
    assert re.search(r"requests \d+, events 12,", info.stdout), info.stdout
    assert "gaps 0" in info.stdout


def _write_config(recorded: dict[str, Any], name: str, limit: int) -> Path:
    path: Path = recorded["tmp"] / name
    path.write_text(CONFIG.format(port=recorded["receiver_port"], limit=limit))
    return path


def test_diff_of_a_config_with_itself_is_empty(recorded: dict[str, Any]) -> None:
    report = recorded["tmp"] / "same.json"
    done = rillet("diff", str(recorded["config"]), str(recorded["config"]), "--recording",
                  str(recorded["record"]), "--json", str(report), "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(report.read_text())
    assert data["schema"] == "rillet.diff/1"
    assert data["changes"] == [] and data["summary"]["same"] == data["a"]["alerts"] > 0


def test_a_raised_threshold_makes_alerts_gone_and_why_not_names_the_where(
        recorded: dict[str, Any]) -> None:
    stricter = _write_config(recorded, "stricter.py", 96)
    report = recorded["tmp"] / "gone.json"
    done = rillet("diff", str(recorded["config"]), str(stricter), "--recording",
                  str(recorded["record"]), "--json", str(report))
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(report.read_text())
    gone = [c for c in data["changes"] if c["kind"] == "gone"]
    # a and b paged at 95; at 96 only e's 99 and f's 98.5 pass, and throttle(2, 60)
    # now lets them through
    assert [c["key"]["host"] for c in gone] == ["a", "b"]
    assert [c["key"]["host"] for c in data["changes"] if c["kind"] == "new"] == ["e", "f"]
    assert "where(" in gone[0]["explain"] and "stricter.py:" in gone[0]["explain"]
    # each side's alert names its sink by node id; the gone one's B side has none
    assert gone[0]["node_a"] == "streams[0]/where/throttle/forward" and gone[0]["node_b"] is None
    assert "GONE    forward a disk" in done.stdout
    assert re.search(r"noisiness \(alerts per key per day\): forward [\d.e+]+ -> [\d.e+]+",
                     done.stdout), done.stdout
    assert set(data["noisiness"]["forward"]) == {"a", "b"}
    assert "policy (default: no difference allowed): gone.forward <= 0 violated (2)" \
        in done.stdout
    policy = recorded["tmp"] / "gate.toml"
    policy.write_text('[gone]\nforward = 2\n[new]\n"*" = 2\n')
    allowed = rillet("diff", str(recorded["config"]), str(stricter), "--recording",
                     str(recorded["record"]), "--policy", str(policy), "--no-explain")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


def test_diff_reports_a_missing_recording_with_exit_code_2(recorded: dict[str, Any]) -> None:
    done = rillet("diff", str(recorded["config"]), str(recorded["config"]), "--recording",
                  str(recorded["tmp"] / "nowhere.rrec"))
    assert done.returncode == 2
    assert "no such recording" in done.stderr


def test_replay_to_a_server_resends_the_recorded_requests(recorded: dict[str, Any]) -> None:
    receiver = Receiver()
    try:
        done = rillet("replay", "--recording", str(recorded["record"]), "--send-to",
                      f"127.0.0.1:{receiver.port}", "--speed", "0")
        assert done.returncode == 0, done.stderr
        assert re.search(r"sent \d+ requests to 127.0.0.1:\d+; 0 answered with an error",
                         done.stderr), done.stderr
        receiver.wait_for(12)
        assert sorted({e.host for e in receiver.events}) == \
            ["a", "b", "c", "d", "e", "f", "tmp", "w"]
    finally:
        receiver.close()
    refused = rillet("replay", "--recording", str(recorded["record"]), "--send-to",
                     "nowhere")
    assert refused.returncode == 2 and "give HOST:PORT" in refused.stderr


def test_record_a_running_server_on_request(tmp_path: Path) -> None:
    config = tmp_path / "monitoring.py"
    config.write_text("from streams import *\nfrom transport import tcp_server, forward\n"
                      "tcp_server(port=0)\nout = forward('127.0.0.1', 9)\n"
                      "streams(where(lambda e: e.metric > 90, out), index)\n")
    pid_file = tmp_path / "rillet.pid"
    process, port, _ = start_rillet(config, "--pid-file", str(pid_file))
    drain = threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True)
    drain.start()
    record = tmp_path / "rec"
    deadline = time.monotonic() + 20
    try:
        while not pid_file.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with Client("127.0.0.1", port) as client:
            client.send(Event(host="before", metric=99.0))  # not recorded
            asked = rillet("record", "running", "--pid-file", str(pid_file), "--duration", "1s",
                           "-o", str(record))
            assert asked.returncode == 0, asked.stderr
            assert "records into" in asked.stdout
            client.send(Event(host="during", metric=99.0))
        # the recording closes itself after its duration: then its footer is written
        deadline = time.monotonic() + 15
        while not any(RecordingReader(p).footer for p in record.glob("*.rrec")):
            assert time.monotonic() < deadline, "the recording never ended"
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=20)
        drain.join(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
    done = rillet("replay", str(config), "--recording", str(record))
    assert done.returncode == 0, done.stderr
    hosts = [json.loads(line)["event"]["host"] for line in done.stdout.splitlines()]
    assert hosts == ["during"]
