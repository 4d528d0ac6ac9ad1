"""The pytest plugin as a user runs it: their own test file, pytest --rillet-recording R,
in a git checkout whose rules were just edited."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from transport import import_jsonl

RULES = """from streams import *
from transport import pagerduty, slack

page = pagerduty(routing_key="0123456789abcdef0123456789abcdef")
chat = slack("https://hooks.slack.invalid/x")
streams(where(lambda e: e.service == "disk" and e.metric > LIMIT,
              by(["host"], throttle(1, 3600, page))),
        where(lambda e: e.service == "health", by(["host"], stable(10, "state", chat))))
"""

USER_TESTS = """
def test_no_page_disappears(rillet_diff):
    report = rillet_diff("git:HEAD", "monitoring.py")
    assert not report.of("gone", sink="pagerduty"), report.text()


def test_health_pages_come_after_ten_steady_seconds(rillet_replay, rillet_recording):
    chats = [a for a in rillet_replay("monitoring.py").alerts if a.sink == "slack"]
    assert [(a.event.host, a.t - 1800000000) for a in chats] == [("w", 13.0)]
    # a second replay of the same config and recording is the cached one
    assert rillet_replay("monitoring.py", rillet_recording) is rillet_replay("monitoring.py")
"""


def _pytest(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *args], cwd=where, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_users_test_replays_the_recording_and_catches_a_gone_page(tmp_path: Path) -> None:
    events = [{"host": "web-1", "service": "disk", "metric": 96, "time": 1800000000},
              {"host": "w", "service": "health", "state": "critical", "time": 1800000003},
              {"host": "web-2", "service": "disk", "metric": 99, "time": 1800000060}]
    import_jsonl([json.dumps(e) for e in events], tmp_path / "prod.rrec")
    config = tmp_path / "monitoring.py"
    config.write_text(RULES.replace("LIMIT", "95"))
    (tmp_path / "test_rules.py").write_text(USER_TESTS)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "monitoring.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "rules"], check=True)

    unchanged = _pytest(tmp_path, "--rillet-recording", "prod.rrec")
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert "2 passed" in unchanged.stdout

    config.write_text(RULES.replace("LIMIT", "96.5"))  # the edit under review
    (tmp_path / "pytest.ini").write_text("[pytest]\nrillet_recording = prod.rrec\n")
    edited = _pytest(tmp_path)
    assert edited.returncode == 1, edited.stdout + edited.stderr
    assert "1 failed, 1 passed" in edited.stdout
    # the report names the gone page and where it now stops
    assert "GONE    pagerduty web-1" in edited.stdout
    assert "stopped at monitoring.py:6 where(" in edited.stdout
    assert "closest: 96 against 96.5" in edited.stdout
    assert not list(tmp_path.glob(".monitoring@*.py"))  # the config at HEAD, cleaned up


def test_a_fixture_without_a_recording_says_how_to_give_one(tmp_path: Path) -> None:
    (tmp_path / "monitoring.py").write_text(RULES.replace("LIMIT", "95"))
    (tmp_path / "test_rules.py").write_text(USER_TESTS)
    done = _pytest(tmp_path, "-k", "health")
    assert done.returncode == 1
    assert "no recording to replay: run pytest --rillet-recording prod.rrec" in done.stdout
