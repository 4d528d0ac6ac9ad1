"""`rillet run` as a user runs it: a real process, driven by Debian's riemann-client
and by `rillet send` / `rillet query`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import rillet_listening

pytestmark = pytest.mark.network

RIEMANN_CLIENT = shutil.which("riemann-client")

CONFIG = """
from streams import *
from transport import tcp_server, udp_server

tcp_server(port=0)
udp_server(port=0)
periodically_expire(1)
streams(
    where('service = "boom"', lambda e: 1 / 0),
    index,
)
"""


def rillet(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport._cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, int]]:
    config = tmp_path / "monitoring.py"
    config.write_text(CONFIG)
    with rillet_listening(config, stop_within=10) as ports:
        yield ports


def test_rillet_send_and_query_against_rillet_run(server: dict[str, int]) -> None:
    port = str(server["TCP"])
    sent = rillet("send", "--port", port, "-H", "web1", "-S", "cpu", "-m", "0.5",
                  "--state", "ok", "-t", "prod", "-a", "env=eu", "--ttl", "30")
    assert sent.returncode == 0, sent.stderr
    found = rillet("query", "--port", port, "--json", 'host = "web1"')
    assert found.returncode == 0, found.stderr
    (event,) = [json.loads(line) for line in found.stdout.splitlines()]
    assert (event["service"], event["metric"], event["state"], event["env"]) == \
        ("cpu", 0.5, "ok", "eu")


def test_a_failing_rule_is_an_error_reply_not_a_crash(server: dict[str, int]) -> None:
    port = str(server["TCP"])
    failed = rillet("send", "--port", port, "-S", "boom", "-m", "1")
    assert failed.returncode == 1
    assert "division by zero" in failed.stderr
    assert rillet("send", "--port", port, "-S", "fine").returncode == 0


@pytest.mark.usefixtures("riemann_client")
def test_riemann_client_against_rillet_run(server: dict[str, int]) -> None:
    assert RIEMANN_CLIENT is not None
    tcp, udp = str(server["TCP"]), str(server["UDP"])
    subprocess.run([RIEMANN_CLIENT, "send", "-h", "db1", "-S", "disk", "-i", "90",
                    "-s", "warning", "127.0.0.1", tcp], check=True, timeout=10)
    subprocess.run([RIEMANN_CLIENT, "send", "-U", "-h", "db2", "-S", "disk", "-d", "12.5",
                    "127.0.0.1", udp], check=True, timeout=10)
    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run([RIEMANN_CLIENT, "query", 'service = "disk"', "127.0.0.1", tcp],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        if "db2" in out or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "host = db1" in out and "metric_sint64 = 90" in out and "state = warning" in out
    assert "host = db2" in out and "12.5" in out


def test_expired_events_leave_the_index(server: dict[str, int]) -> None:
    port = str(server["TCP"])
    sent = rillet("send", "--port", port, "-H", "tmp", "-S", "short", "--ttl", "0.2")
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = rillet("query", "--port", port, "--json", 'host = "tmp"')
        if found.stdout.strip() == "":
            break
        time.sleep(0.2)
    assert found.stdout.strip() == ""


def test_a_broken_config_fails_at_load_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.py"
    config.write_text("from streams import *\n\nstreams(throttle(1, -60, print))\n")
    result = rillet("run", str(config))
    assert result.returncode == 2
    assert f"{config}:3" in result.stderr and "throttle(n, dt, *children)" in result.stderr
