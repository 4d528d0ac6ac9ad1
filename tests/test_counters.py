"""Per-stream counters: events in and out of each stream by its path id, in a replay
(rillet replay --counts, rillet explain) and live (rillet run --count-streams reported by
instrumentation), with by's per-key forks summed under the stream they copy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import rillet_listening

from streams import Event
from transport import Client, import_jsonl

T0 = 1_800_000_000.0

RULES = """from streams import *
from transport import pagerduty

page = pagerduty(routing_key="0123456789abcdef0123456789abcdef")
streams(where(lambda e: e.metric > 90, by(["host"], throttle(1, 60, page))))
"""


def rillet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport._cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _counts(text: str) -> dict[str, tuple[int, int | None]]:
    rows = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3:
            rows[fields[2]] = (int(fields[0]), int(fields[1]))
        elif len(fields) == 2:
            rows[fields[1]] = (int(fields[0]), None)
    return rows


def test_replay_counts_each_stream_and_sums_the_keys_of_by(tmp_path: Path) -> None:
    # 6 events, 4 above 90: a twice and b twice within a minute, so throttle(1, 60)
    # per host lets 2 through
    events = [{"host": h, "service": "disk", "metric": m, "time": T0 + i}
              for i, (h, m) in enumerate([("a", 95), ("b", 91), ("a", 10), ("a", 99),
                                          ("c", 50), ("b", 92)])]
    import_jsonl([json.dumps(e) for e in events], tmp_path / "r.rrec")
    (tmp_path / "rules.py").write_text(RULES)
    done = rillet("replay", str(tmp_path / "rules.py"), "--recording", str(tmp_path / "r.rrec"),
                  "--counts", "--alerts", str(tmp_path / "alerts.jsonl"))
    assert done.returncode == 0, done.stderr
    counts = _counts(done.stderr.split("replayed ")[0])
    assert counts == {"streams[0]/where": (6, 4), "streams[0]/where/by(['host'])": (4, 4),
                      "streams[0]/where/by(['host'])/throttle": (4, 2),
                      "streams[0]/where/by(['host'])/throttle/pagerduty": (2, None)}
    done = rillet("explain", str(tmp_path / "rules.py"), "--recording",
                  str(tmp_path / "r.rrec"), "--why-not", "host=a")
    assert "[streams[0]/where/by(['host'])/throttle: 4 in, 2 out]" in done.stdout, done.stdout


@pytest.mark.network
def test_live_counts_are_reported_by_instrumentation(tmp_path: Path) -> None:
    config = tmp_path / "monitoring.py"
    config.write_text("""from streams import *
from transport import instrumentation, tcp_server, udp_server

tcp_server(port=0)
udp_server(port=0)
instrumentation(interval=0.3)
streams(where(lambda e: e.service == "disk" and e.metric > 90,
              by(["host"], throttle(1, 60, index))),
        where(lambda e: (e.service or "").startswith("rillet stream"), index))
""")
    with rillet_listening(config, "--count-streams") as ports, \
            Client("127.0.0.1", ports["TCP"]) as client:
        for host, metric in (("a", 95.0), ("a", 96.0), ("b", 97.0), ("c", 1.0)):
            client.send(Event(host=host, service="disk", metric=metric))
        deadline = time.monotonic() + 20
        wanted = {"rillet stream streams[0]/where/by(['host'])/throttle in": 3,
                  "rillet stream streams[0]/where/by(['host'])/throttle out": 2}
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            found = client.query('service =~ "rillet stream streams[0]/where%"')
            seen = {e.service: e.metric for e in found}
            if all(seen.get(k) == v for k, v in wanted.items()):
                break
            time.sleep(0.1)
        assert all(seen.get(k) == v for k, v in wanted.items()), seen
        # the first where saw every event: the four disks and the reports before
        assert seen["rillet stream streams[0]/where in"] >= 4
