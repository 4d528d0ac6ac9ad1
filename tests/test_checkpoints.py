"""Replay checkpoints: a replay resumed from any checkpoint logs exactly the alerts a full
replay logs after it; explain starts from the nearest one, and says so."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import Event
from transport._checkpoint import CheckpointError, CheckpointReader, CheckpointWriter
from transport._codec import encode_request
from transport._explain import explain_alert, why_not
from transport._recording import RecordingWriter
from transport._replay import replay

T0 = 1_800_000_000.0

# Every kind of state a checkpoint must carry: throttle budgets and their
# timers, stable's candidate, changed_state per key (forks built by by),
# a time window, a rate's accumulator and timer, the index and its expiry.
CONFIG = """
from streams import *
from transport import forward, slack

page = forward("127.0.0.1", 9, linger=0)
chat = slack("https://hooks.slack.invalid/x")
periodically_expire(5)
LIMIT = 90
streams(
    where(lambda e: e.metric is not None and e.metric > LIMIT, throttle(2, 30, page)),
    where(lambda e: e.service == "health", by(["host"], stable(3, "state", chat))),
    by(["host", "service"], changed_state(page)),
    where(lambda e: e.service == "load" and e.metric is not None,
          by(["host"], moving_time_window(20, smap(
              lambda es: Event(host=es[-1].host, service="load avg", time=es[-1].time,
                               metric=sum(e.metric for e in es) / len(es)),
              where(lambda e: e.metric > 70, chat))))),
    where(lambda e: e.metric is not None, rate(10, where(lambda e: e.metric > 700, page))),
    expired(chat),
    index,
)
"""


def rillet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport._cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _record(path: Path, steps: list[tuple[float, int, str, str, float]], ticks: bool,
            block_bytes: int = 600) -> None:
    """A recording of one event per request, in small blocks (a checkpoint goes
    at a block boundary); with ``ticks``, a timer tick every second (exact timers)."""
    writer = RecordingWriter(path, start_us=int(T0 * 1e6), ticks=ticks, block_bytes=block_bytes)
    t = T0
    next_tick = T0 + 1
    for dt, host, service, state, metric in steps:
        t += dt
        while ticks and next_tick <= t:
            writer.tick(int(next_tick * 1e6))
            next_tick += 1
        event = Event(host=f"h{host}", service=service, state=state, time=t, ttl=8,
                      metric=None if service == "health" else metric)
        writer.message(int(t * 1e6), 1, encode_request([event], framed=False))
    writer.close()


steps = st.lists(st.tuples(st.floats(0, 2), st.integers(0, 4),
                           st.sampled_from(["disk", "health", "load"]),
                           st.sampled_from(["ok", "ok", "critical"]), st.floats(0, 100)),
                 min_size=30, max_size=300)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, ticks=st.booleans(), every=st.sampled_from([5.0, 20.0]))
def test_a_replay_from_any_checkpoint_logs_what_a_full_replay_logs_after_it(
        tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[float, int, str, str, float]],
        ticks: bool, every: float) -> None:
    tmp = tmp_path_factory.mktemp("ck")
    config = tmp / "rules.py"
    config.write_text(CONFIG)
    recording = tmp / "r.rrec"
    _record(recording, steps, ticks)
    writer = CheckpointWriter(tmp / "r.ckp", every=every)
    full = replay(config, recording, checkpoints=writer)
    lines = list(full.lines())
    reader = CheckpointReader(tmp / "r.ckp")
    assert len(reader.checkpoints) == writer.taken and writer.failed == 0
    assert [a[:4] for a in reader.alerts()] == [(a.seq, a.t, a.sink, a.input)
                                                for a in full.alerts]
    for checkpoint in reader.checkpoints:
        resumed = replay(config, recording, resume=(reader, checkpoint))
        assert list(resumed.lines()) == lines[checkpoint.alerts:]
        assert resumed.messages == full.messages and resumed.events == full.events


def test_alerts_carry_the_request_that_triggered_them(tmp_path: Path) -> None:
    config = tmp_path / "rules.py"
    config.write_text(CONFIG)
    recording = tmp_path / "r.rrec"
    _record(recording, [(1, 0, "disk", "ok", 95), (1, 1, "health", "critical", 0),
                        (5, 1, "health", "critical", 0)], ticks=False)
    alerts = replay(config, recording).alerts
    # the threshold page comes from request 0; changed_state's first states too;
    # stable's first page comes from its timer, 3 s after request 1; the next
    # critical, still stable, passes straight through with request 2
    page = next(a for a in alerts if a.sink == "forward" and a.event.metric == 95)
    assert page.input == 0 and page.as_dict()["input"] == 0
    # the sink's path id: the forward is first met under the first where's throttle
    assert page.node == page.as_dict()["node"] == "streams[0]/where/throttle/forward"
    stable = [a for a in alerts if a.sink == "slack" and a.event.service == "health"]
    assert [(a.input, round(a.t - T0, 3)) for a in stable] == [(None, 5), (2, 7)]


def _long(tmp_path: Path) -> tuple[Path, Path]:
    """About 12,000 requests over 1,200 s, checkpointed every 100 s."""
    import random

    rng = random.Random(5)
    config = tmp_path / "rules.py"
    config.write_text(CONFIG)
    recording = tmp_path / "long.rrec"
    _record(recording, [(0.1, rng.randrange(20), rng.choice(["disk", "health", "load"]),
                         rng.choice(["ok", "ok", "critical"]), rng.uniform(0, 100))
                        for _ in range(12_000)], ticks=True, block_bytes=16_384)
    return config, recording


def _uncounted(text: str) -> str:
    return re.sub(r"  \[streams\[.* in(, \d+ out)?\]$", "", text, flags=re.MULTILINE)


def test_explain_replays_only_from_the_nearest_checkpoint(tmp_path: Path) -> None:
    config, recording = _long(tmp_path)
    checkpoints = tmp_path / "long.ckp"
    done = rillet("replay", str(config), "--recording", str(recording), "--checkpoints",
                  str(checkpoints), "--checkpoint-every", "100s", "--alerts",
                  str(tmp_path / "alerts.jsonl"))
    assert done.returncode == 0, done.stderr
    reader = CheckpointReader(checkpoints)
    assert f"{len(reader.checkpoints)} checkpoints in {checkpoints}" in done.stderr
    assert len(reader.checkpoints) >= 8
    logged = reader.alerts()
    late = next(a for a in logged[len(logged) * 9 // 10:] if a[2] == "forward" and a[3])
    seq, t, _sink, source, fields = late
    nearest = reader.before(t=t, messages=source)
    assert nearest is not None and nearest.messages > 9_000

    started = time.perf_counter()
    full = explain_alert(config, recording, seq)
    from_start = time.perf_counter() - started
    started = time.perf_counter()
    fast = explain_alert(config, recording, seq, checkpoints=checkpoints)
    from_checkpoint = time.perf_counter() - started
    # The same path, found by replaying a tenth of the recording or less (the
    # counts in brackets are over the replayed span, so they differ).
    assert _uncounted(fast).splitlines()[1:] == _uncounted(full).splitlines()[1:]
    assert "[streams[0]/where: " in fast
    assert f"<- input request #{source}" in fast
    assert f"replayed from the checkpoint at {nearest.t:.3f}, after request " \
           f"#{nearest.messages}" in fast
    assert from_checkpoint < from_start, (from_checkpoint, from_start)

    asked = {"host": fields["host"], "service": fields["service"]}
    slow_answer = why_not(config, recording, asked, at=t, window=30)
    fast_answer = why_not(config, recording, asked, at=t, window=30, checkpoints=checkpoints)
    assert fast_answer.candidates == slow_answer.candidates > 0
    assert [(_uncounted(where), n, note) for where, n, note in fast_answer.stopped] == \
        [(_uncounted(where), n, note) for where, n, note in slow_answer.stopped]
    assert "replayed from the checkpoint" in fast_answer.text()

    done = rillet("explain", str(config), "--recording", str(recording), "--alert", str(seq),
                  "--checkpoints", str(checkpoints))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == fast.strip()


def test_checkpoints_of_another_config_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "rules.py"
    config.write_text(CONFIG)
    recording = tmp_path / "r.rrec"
    _record(recording, [(1, 0, "disk", "ok", 95)] * 50, ticks=False, block_bytes=100)
    checkpoints = tmp_path / "r.ckp"
    replay(config, recording, checkpoints=CheckpointWriter(checkpoints, every=5))
    other = tmp_path / "other.py"
    other.write_text(CONFIG.replace("LIMIT = 90", "LIMIT = 95"))
    with pytest.raises(CheckpointError, match="another config sha256"):
        explain_alert(other, recording, 0, checkpoints=checkpoints)
    done = rillet("explain", str(other), "--recording", str(recording), "--why-not", "host=h0",
                  "--at", str(T0 + 40), "--checkpoints", str(checkpoints))
    assert done.returncode == 2
    assert "written for another config sha256" in done.stderr
    assert "--checkpoints" in done.stderr  # how to write them again
    (tmp_path / "junk.ckp").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a rillet checkpoint file"):
        CheckpointReader(tmp_path / "junk.ckp")
