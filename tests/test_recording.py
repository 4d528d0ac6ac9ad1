"""The recording format and recorder, imports, the replay API and why-not, without a server."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import Event
from streams.testing import perturbed, replay
from transport._codec import decode_message, encode_request
from transport._recording import (
    GAP,
    MSG,
    SEED,
    TICK,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    Sampler,
    WireRecorder,
    import_jsonl,
    parse_duration,
    recording_files,
)

T0 = 1_800_000_000.0


def rillet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport._cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _payload(*events: Event) -> bytes:
    return encode_request(list(events), framed=False)


def test_frames_round_trip_across_blocks_and_seek_by_time(tmp_path: Path) -> None:
    path = tmp_path / "r.rrec"
    writer = RecordingWriter(path, start_us=int(T0 * 1e6), block_bytes=200)
    writer.seed(_payload(Event(host="seeded", service="s", time=T0)))
    for i in range(100):
        writer.message(int((T0 + i) * 1e6), i % 3, _payload(Event(host=f"h{i}", time=T0 + i)))
        if i % 10 == 0:
            writer.tick(int((T0 + i + 0.5) * 1e6))
    writer.gap(int((T0 + 100) * 1e6), 7)
    writer.close()
    reader = RecordingReader(path)
    assert reader.verify() is True
    assert len(reader.footer["blocks"]) > 5 if reader.footer else False
    frames = list(reader.frames())
    messages = [f for f in frames if f.kind == MSG]
    assert [decode_message(f.data, 0).events[0].host for f in messages] == \
        [f"h{i}" for i in range(100)]
    assert [f.t_us for f in messages] == [int((T0 + i) * 1e6) for i in range(100)]
    assert [f.conn for f in messages[:4]] == [0, 1, 2, 0]
    assert frames[0].kind == SEED and sum(f.kind == TICK for f in frames) == 10
    assert frames[-1].kind == GAP and frames[-1].n == 7
    later = [f for f in reader.frames(start_us=int((T0 + 80) * 1e6)) if f.kind == MSG]
    assert len(later) < 40 and later[-1].t_us == messages[-1].t_us
    assert int((T0 + 80) * 1e6) in [f.t_us for f in later]


def test_a_torn_last_block_is_dropped_and_the_rest_reads(tmp_path: Path) -> None:
    path = tmp_path / "r.rrec"
    writer = RecordingWriter(path, start_us=int(T0 * 1e6), block_bytes=100)
    for i in range(30):
        writer.message(int((T0 + i) * 1e6), 1, _payload(Event(host=f"h{i}")))
    writer.close()
    data = path.read_bytes()
    footer = RecordingReader(path).footer
    assert footer is not None
    torn = tmp_path / "torn.rrec"
    torn.write_bytes(data[:footer["blocks"][-1][0] + 50])  # half the last block
    reader = RecordingReader(torn)
    assert reader.footer is None and reader.verify() is None
    kept = [f for f in reader.frames() if f.kind == MSG]
    assert 0 < len(kept) < 30 and reader.torn
    info = rillet("recording", "info", str(torn))
    assert info.returncode == 0 and "no footer" in info.stdout and "torn" in info.stdout
    assert "not a rillet recording" in rillet("recording", "info", __file__).stderr


def test_a_full_writer_queue_drops_whole_chunks_and_records_a_gap(tmp_path: Path) -> None:
    recorder = WireRecorder(tmp_path, chunk=10, queue_chunks=2)
    gate = threading.Event()
    apply = recorder._apply

    def slow(command: tuple[Any, ...], dropped: int) -> bool:
        gate.wait(10)
        return apply(command, dropped)

    recorder._apply = slow  # type: ignore[method-assign]
    # The writer is stuck on the "open" command: two chunks queue, the rest drop.
    started = time.perf_counter()
    for i in range(100):
        recorder.message(_payload(Event(host=f"h{i}")), T0 + i, 1)
    assert time.perf_counter() - started < 1  # ingest never waited for the writer
    assert recorder.dropped == 80 and recorder.messages == 100
    gate.set()
    recorder.close()
    (path,) = recording_files(tmp_path)
    frames = list(RecordingReader(path).frames())
    assert sum(f.kind == MSG for f in frames) == 20
    assert [f.n for f in frames if f.kind == GAP] == [80]


def test_rotation_starts_seeded_files_and_retention_deletes_old_ones(tmp_path: Path) -> None:
    old = tmp_path / "rillet-20200101T000000.000000Z.rrec"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    indexed = [Event(host="kept", service="s", time=T0, ttl=60)]
    recorder = WireRecorder(tmp_path, rotate=3600, keep=86400, snapshot=lambda: indexed)
    recorder.message(_payload(Event(host="first")), T0, 1)
    assert not recorder.rotate_if_due(time.time() + 10)
    assert recorder.rotate_if_due(time.time() + 3601)
    recorder.message(_payload(Event(host="second")), T0 + 1, 1)
    recorder.close()
    files = recording_files(tmp_path)
    assert len(files) == 2 and not old.exists()
    hosts = []
    for path in files:
        frames = list(RecordingReader(path).frames())
        assert frames[0].kind == SEED
        assert decode_message(frames[0].data, 0).events[0].host == "kept"
        hosts += [decode_message(f.data, 0).events[0].host for f in frames if f.kind == MSG]
    assert hosts == ["first", "second"]


def test_durations() -> None:
    assert parse_duration("7d", "--record-keep") == 7 * 86400
    with pytest.raises(ValueError, match="--record-rotate 'soon': give a duration"):
        parse_duration("soon", "--record-rotate")


RULES = """
from streams import *
from transport import forward, slack

out = forward("127.0.0.1", 9, queue_size=10)
chat = slack("https://hooks.slack.invalid/x")
streams(
    where(lambda e: e.service == "disk" and e.metric > {limit}, throttle(1, 60, out)),
    where(lambda e: e.service == "health",
          by(["host"], stable(10, "state", changed_state(chat, init="ok")))),
)
"""


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    lines = [{"host": "a", "service": "disk", "metric": 96, "time": T0},
             {"host": "a", "service": "disk", "metric": 97, "time": T0 + 1},
             {"host": "b", "service": "disk", "metric": 99, "time": T0 + 2},
             {"host": "a", "service": "disk", "metric": 96.5, "time": T0 + 100},
             [{"host": "w", "service": "health", "state": "critical", "time": T0 + 3},
              {"host": "x", "service": "health", "state": "critical", "time": T0 + 3}],
             {"host": "x", "service": "health", "state": "ok", "time": T0 + 5},
             {"host": "w", "service": "health", "state": "critical", "time": T0 + 20}]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "old.rrec"
    done = rillet("record", "import", str(events), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote 7 requests" in done.stdout
    return out


def _rules(tmp_path: Path, name: str, limit: int) -> Path:
    path = tmp_path / name
    path.write_text(RULES.format(limit=limit))
    return path


def test_the_replay_api_runs_timers_on_time_for_an_imported_recording(
        tmp_path: Path, imported: Path) -> None:
    result = replay(_rules(tmp_path, "rules.py", 95), imported)
    assert result.fidelity == "ideal" and result.events == 8 and result.sinks == \
        ["forward", "slack"]
    seen = [(a.sink, a.event.host, a.t - T0) for a in result.alerts]
    # throttle(1, 60): a at +0, b blocked until +60, a again at +100; stable(10)
    # lets w's critical through at +13 (a timer between requests), never x's flap
    assert seen == [("forward", "a", 0), ("slack", "w", 13), ("forward", "a", 100)]
    assert result.digest == replay(tmp_path / "rules.py", imported).digest


def test_import_rejects_events_without_time(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"host": "a", "time": 1}\n{"host": "b"}\n')
    done = rillet("record", "import", str(bad), "-o", str(tmp_path / "x.rrec"))
    assert done.returncode == 2
    assert "bad.jsonl:2: each event must be an object with a numeric 'time'" in done.stderr
    with pytest.raises(Exception, match="not JSON"):
        import_jsonl(["{"], tmp_path / "y.rrec")


def _why_not(tmp_path: Path, recording: Path, config: Path, *fields: str,
             at: float | None = None) -> str:
    args = ["explain", str(config), "--recording", str(recording), "--why-not", *fields]
    if at is not None:
        args += ["--at", str(at), "--window", "5s"]
    done = rillet(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_why_not_names_the_where_and_the_closest_miss(tmp_path: Path, imported: Path) -> None:
    stricter = _rules(tmp_path, "stricter.py", 98)
    out = _why_not(tmp_path, imported, stricter, "host=a", "service=disk")
    assert "3 candidate inputs" in out
    assert "3 stopped at stricter.py:8 where(<lambda>, throttle(1, 60, forward(" in out
    assert "metric of those: max 97, min 96; closest: 97 against 98 (short by 1)" in out


def test_why_not_names_throttle_stable_and_changed_state(tmp_path: Path,
                                                         imported: Path) -> None:
    rules = _rules(tmp_path, "rules.py", 95)
    out = _why_not(tmp_path, imported, rules, "host=a", "service=disk", at=T0 + 1)
    assert "1 stopped at rules.py:8 throttle(1, 60, forward(" in out  # a's second alert
    assert f"its state then: count=2 windows={{anchor={T0} dt=60 start={T0} " \
        f"task=Task(due={T0 + 60})}}" in out  # 2 seen in this window; it opens at +60
    out = _why_not(tmp_path, imported, rules, "host=x", "service=health")
    assert "stopped at rules.py:10 stable(10, 'state'" in out
    out = _why_not(tmp_path, imported, rules, "host=w", "service=health", at=T0 + 20)
    # still critical, so no change (changed_state keeps a changed() per key inside)
    assert "1 stopped at rules.py:10 changed_state(slack(" in out
    assert "(inside it: changed('state', slack(" in out
    assert "previous_value='critical'" in out


def test_explain_an_alert_shows_its_path_and_each_streams_state(tmp_path: Path,
                                                                 imported: Path) -> None:
    rules = _rules(tmp_path, "rules.py", 95)
    done = rillet("explain", str(rules), "--recording", str(imported), "--alert", "0")
    assert done.returncode == 0, done.stderr
    assert "ALERT #0 forward host=a service=disk" in done.stdout
    steps = done.stdout.splitlines()
    throttle = steps.index(next(s for s in steps if "rules.py:8 throttle(1, 60, forward(" in s))
    # the throttle's budget after the alert: 1 used, the window opens again at +60
    assert "count=1" in steps[throttle + 1] and f"task=Task(due={T0 + 60})" in steps[throttle + 1]
    done = rillet("explain", str(rules), "--recording", str(imported), "--alert", "1")
    assert "a timer emitted it" in done.stdout


def test_diff_against_a_git_revision(tmp_path: Path, imported: Path) -> None:
    rules = _rules(tmp_path, "rules.py", 95)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "rules.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "rules"], check=True)
    rules.write_text(RULES.format(limit=97))
    done = rillet("diff", str(rules), "--against", "git:HEAD", "--recording", str(imported))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "GONE    forward a disk" in done.stdout
    assert "B: WHY-NOT host=a service=disk" in done.stdout and "rules.py:8 where(" \
        in done.stdout
    assert sorted(p.name for p in tmp_path.glob("*.py")) == ["rules.py"]  # no leftover


ON_CHANGE = """
from streams import *
from transport import slack

chat = slack("https://hooks.slack.invalid/x")
streams(where(lambda e: e.service == "health", by(["host"], changed_state(chat, init="ok"))))
"""


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_request_sent_twice_never_pages_twice(tmp_path: Path, imported: Path,
                                                data: st.DataObject) -> None:
    rules = tmp_path / "on_change.py"
    rules.write_text(ON_CHANGE)
    original = [(a.sink, a.event.host, a.event.state, a.t) for a in replay(rules, imported).alerts]
    assert original == [("slack", "w", "critical", T0 + 3), ("slack", "x", "critical", T0 + 3),
                        ("slack", "x", "ok", T0 + 5)]
    copy = data.draw(perturbed(imported, tmp_path, drop=0, duplicate=1))
    again = [(a.sink, a.event.host, a.event.state, a.t) for a in replay(rules, copy).alerts]
    assert again == original


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_dropped_or_jittered_requests_only_lose_or_shift_pages(
        tmp_path: Path, imported: Path, data: st.DataObject) -> None:
    rules = tmp_path / "on_change.py"
    rules.write_text(ON_CHANGE)
    copy = data.draw(perturbed(imported, tmp_path, drop=0.5, duplicate=0, jitter=0.5))
    result = replay(rules, copy)
    assert result.events <= 8
    for alert in result.alerts:
        assert (alert.event.host, alert.event.state) in {("w", "critical"), ("x", "critical"),
                                                         ("x", "ok")}


def test_cut_and_merge(tmp_path: Path, imported: Path) -> None:
    part = tmp_path / "part.rrec"
    done = rillet("recording", "cut", str(imported), "--from", str(T0 + 2),
                  "--to", "2027-01-15T08:00:50Z", "-o", str(part))
    assert done.returncode == 0, done.stderr
    assert "wrote 4 requests" in done.stdout
    times = [f.t_us / 1e6 - T0 for f in RecordingReader(part).frames() if f.kind == MSG]
    assert times == [2, 3, 5, 20]
    both = tmp_path / "both.rrec"
    done = rillet("recording", "merge", str(imported), str(part), "-o", str(both))
    assert done.returncode == 0, done.stderr
    times = [f.t_us / 1e6 - T0 for f in RecordingReader(both).frames() if f.kind == MSG]
    assert times == [0, 1, 2, 2, 3, 3, 5, 5, 20, 20, 100]
    bad = rillet("recording", "cut", str(imported), "--from", "yesterday", "-o", str(part))
    assert bad.returncode == 2 and "--from 'yesterday': give Unix seconds" in bad.stderr


def test_why_not_names_a_by_that_evicted_the_key(tmp_path: Path, imported: Path) -> None:
    rules = tmp_path / "few_keys.py"
    rules.write_text(ON_CHANGE.replace('by(["host"], changed_state(chat, init="ok"))',
                                       'by(["host"], stable(1, "state", chat), max_keys=1)'))
    out = _why_not(tmp_path, imported, rules, "host=w", "service=health")
    # w's first critical was held by stable when x's took w's place; w's second
    # arrived to a fresh stable
    assert "2 candidate inputs" in out
    assert "2 stopped at few_keys.py:6 stable(1, 'state'" in out
    assert "1 arrived at few_keys.py:6 by(['host'], stable(1, 'state', slack(" in out
    assert "after their key had been evicted" in out


def test_a_quiet_recorder_still_writes_blocks(tmp_path: Path) -> None:
    recorder = WireRecorder(tmp_path, block_seconds=0)
    recorder.message(_payload(Event(host="quiet")), T0, 1)
    recorder.flush()
    deadline = time.monotonic() + 10
    found: list[Any] = []
    while not found and time.monotonic() < deadline:
        with contextlib.suppress(RecordingError):  # the writer thread opens the file
            (path,) = recording_files(tmp_path)
            found = [f for f in RecordingReader(path).frames() if f.kind == MSG]
        time.sleep(0.01)
    assert decode_message(found[0].data, 0).events[0].host == "quiet"  # no footer yet
    recorder.close()
    assert RecordingReader(path).verify() is True


def test_sampling_keeps_whole_keys(tmp_path: Path) -> None:
    sampler = Sampler.parse("host:30%")
    recorder = WireRecorder(tmp_path / "rec", sample=sampler)
    hosts = [f"web-{i}" for i in range(100)]
    for round_ in range(3):
        for host in hosts:
            recorder.message(_payload(Event(host=host, metric=round_)), T0 + round_, 1)
        recorder.message(_payload(*(Event(host=h, metric=9) for h in hosts)), T0 + round_, 1)
    recorder.close()
    (path,) = recording_files(tmp_path / "rec")
    reader = RecordingReader(path)
    assert reader.header["sample"] == "host:30%"
    seen: dict[str, int] = {}
    for frame in reader.frames():
        if frame.kind == MSG:
            for event in decode_message(frame.data, 0).events:
                seen[event.host] = seen.get(event.host, 0) + 1
    kept = {h for h in hosts if sampler.kept(Event(host=h))}
    assert set(seen) == kept and 15 < len(kept) < 45
    assert set(seen.values()) == {6}  # every event of a kept host, none of the others
    rules = tmp_path / "rules.py"
    rules.write_text("from streams import *\nstreams(index)\n")
    assert "sampled host:30%" in replay(rules, tmp_path / "rec").summary()
    with pytest.raises(ValueError, match="--record-sample 'host': give key fields and a share"):
        Sampler.parse("host")
    bad = rillet("run", str(rules), "--record", str(tmp_path / "x"), "--record-sample", "50")
    assert bad.returncode == 2 and "--record-sample '50'" in bad.stderr


def test_check_warns_about_the_wall_clock_and_randomness(tmp_path: Path) -> None:
    rules = tmp_path / "monitoring.py"
    rules.write_text("import random, time\nfrom streams import *\n"
                     "streams(where(lambda e: random.random() < 0.5, index))  # sampled\n"
                     "# time.time() in a comment is fine\n"
                     "streams(where(lambda e: e.time > time.time() - 60, index))\n")
    done = rillet("check", str(rules))
    assert done.returncode == 0, done.stderr
    assert f"warning: {rules}:3: random.random() reads the wall clock or randomness" \
        in done.stderr
    assert f"{rules}:5: time.time()" in done.stderr and f"{rules}:4:" not in done.stderr


def test_replay_a_time_range(tmp_path: Path, imported: Path) -> None:
    rules = _rules(tmp_path, "rules.py", 95)
    done = rillet("replay", str(rules), "--recording", str(imported), "--from", str(T0 + 2),
                  "--to", "2027-01-15T08:00:50Z")
    assert done.returncode == 0, done.stderr
    seen = [(a["sink"], a["event"]["host"], a["t"] - T0)
            for a in map(json.loads, done.stdout.splitlines())]
    # a's pages at +0 and +100 are outside; b's +2 now opens the throttle
    assert seen == [("forward", "b", 2), ("slack", "w", 13)]


def test_every_network_sink_records_in_a_replay(tmp_path: Path, imported: Path) -> None:
    import transport
    from transport import NetworkSink

    config = tmp_path / "all_sinks.py"
    config.write_text(
        "from streams import *\nfrom transport import *\n"
        "streams(forward('127.0.0.1', 9), graphite('127.0.0.1', 2003),\n"
        "        graphite_annotations('http://127.0.0.1:1'),\n"
        "        influxdb('http://127.0.0.1:1', database='x'),\n"
        "        mailer(to=['a@example.com'], from_='b@example.com'),\n"
        "        alertmanager('http://127.0.0.1:1'),\n"
        "        pagerduty(routing_key='0123456789abcdef0123456789abcdef'),\n"
        "        slack('https://hooks.slack.invalid/x'), webhook('http://127.0.0.1:1/x'))\n")
    sinks = {name for name in transport.__all__ if isinstance(getattr(transport, name), type)
             and issubclass(getattr(transport, name), NetworkSink)} - {"NetworkSink", "HttpSink"}
    result = replay(config, imported)
    assert set(result.sinks) == sinks  # a new sink type must join this config
    assert {a.sink for a in result.alerts} == sinks
    assert len(result.alerts) == len(sinks) * result.events
