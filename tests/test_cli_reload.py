"""`rillet run` reloads on SIGHUP and `rillet reload`: a real process, a real client,
one connection kept open across the reloads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams import Event
from transport import Client

pytestmark = pytest.mark.network

HEAD = """\
import logging
from streams import *
from transport import tcp_server, udp_server

log = logging.getLogger("rillet.test")
tcp_server(port=0)
"""
RULES = """
streams(
    index,
    where('service = "page"', throttle(1, 3600, lambda e: log.warning("PAGE %s", e.metric))),
)
"""
EXTRA = """
udp_server(port=0)
streams(where('service = "extra"', lambda e: log.warning("EXTRA %s", e.metric)))
"""


class Log:
    """The server's log lines, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if re.search(pattern, line)]
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {count} log lines matching {pattern!r}:\n{''.join(self.lines)}")

    def count(self, pattern: str) -> int:
        return sum(1 for line in list(self.lines) if re.search(pattern, line))

    def join(self) -> None:
        self._thread.join(timeout=10)


@pytest.fixture
def rillet_run(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], Log]]]:
    started: list[tuple[subprocess.Popen[str], Log]] = []

    def start(config: Path, *options: str) -> tuple[subprocess.Popen[str], Log]:
        process = subprocess.Popen(
            [sys.executable, "-m", "transport._cli", "run", str(config),
             "--pid-file", str(tmp_path / "rillet.pid"), *options],
            stderr=subprocess.PIPE, text=True)
        started.append((process, Log(process)))
        return started[-1]

    yield start
    for process, log in started:
        process.terminate()
        process.wait(timeout=10)
        log.join()
        assert process.stderr is not None
        process.stderr.close()


def send(client: Client, service: str, metric: float, host: str = "web1") -> None:
    client.send(Event(host=host, service=service, metric=metric, ttl=300))


def test_reload_keeps_the_index_the_throttle_and_the_connection(
        tmp_path: Path, rillet_run: Callable[..., tuple[subprocess.Popen[str], Log]]) -> None:
    config = tmp_path / "monitoring.py"
    config.write_text(HEAD + RULES)
    process, log = rillet_run(config)
    port = int(re.search(r"TCP server listening on 127\.0\.0\.1:(\d+)",
                         log.wait_for("TCP server listening")[0]).group(1))  # type: ignore[union-attr]
    pid_file = tmp_path / "rillet.pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert int(pid_file.read_text()) == process.pid

    with Client("127.0.0.1", port) as client:
        send(client, "cpu", 0.5)
        send(client, "page", 1)
        log.wait_for("PAGE 1")

        # A new rule and a new listener; the throttle's rule is unchanged.
        config.write_text(HEAD + "# reloaded\n" + RULES + EXTRA)
        reload = subprocess.run([sys.executable, "-m", "transport._cli", "reload",
                                 "--pid-file", str(pid_file)],
                                capture_output=True, text=True, timeout=20, check=False)
        assert reload.returncode == 0, reload.stderr
        assert f"pid {process.pid}" in reload.stdout
        reloaded = log.wait_for(r"reloaded .*monitoring.py")[0]
        # the new rule starts fresh, named by its node id; the throttle's is kept
        assert "1 start fresh (streams[2]/where)" in reloaded, reloaded
        log.wait_for("UDP server listening")

        # Same connection: the index answers across the reload, the throttle holds.
        assert [e.metric for e in client.query('host = "web1" and service = "cpu"')] == [0.5]
        send(client, "page", 2)
        send(client, "extra", 3)
        log.wait_for("EXTRA 3")
        assert log.count("PAGE") == 1

        # A broken file: the error is logged with file:line, the previous config serves on.
        config.write_text(HEAD + RULES + EXTRA + "streams(where('service = \"x\"', index)\n")
        os.kill(process.pid, signal.SIGHUP)
        failed = log.wait_for("reload failed")[0]
        assert re.search(r"monitoring\.py:\d+: syntax error", failed), failed
        send(client, "page", 5)
        send(client, "extra", 4)
        log.wait_for("EXTRA 4")  # logged after whatever page 5 logged
        send(client, "cpu", 0.7)
        assert [e.metric for e in client.query('service = "cpu"')] == [0.7]
        assert log.count("PAGE") == 1

        # Drop the extra listener and rule again.
        config.write_text(HEAD + RULES)
        os.kill(process.pid, signal.SIGHUP)
        log.wait_for(r"reloaded .*1 stopped", count=1)
        send(client, "extra", 6)
        send(client, "page", 7)
        assert client.query('service = "page"')[0].metric == 7

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    log.join()
    assert log.count("EXTRA") == 2 and log.count("PAGE") == 1
    assert not pid_file.exists()


def test_rillet_reload_without_a_server_says_so(tmp_path: Path) -> None:
    missing = subprocess.run([sys.executable, "-m", "transport._cli", "reload",
                              "--pid-file", str(tmp_path / "none.pid")],
                             capture_output=True, text=True, timeout=20, check=False)
    assert missing.returncode == 1 and "no pid file" in missing.stderr
    stale = tmp_path / "stale.pid"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    stale.write_text(finished.stdout)
    gone = subprocess.run([sys.executable, "-m", "transport._cli", "reload",
                           "--pid-file", str(stale)],
                          capture_output=True, text=True, timeout=20, check=False)
    assert gone.returncode == 1 and "left over" in gone.stderr


def test_run_watch_reloads_when_a_rule_module_changes(
        tmp_path: Path, rillet_run: Callable[..., tuple[subprocess.Popen[str], Log]]) -> None:
    rules = tmp_path / "alerts.py"
    rules.write_text("import logging\nfrom streams import *\n"
                     "log = logging.getLogger('rillet.test')\n"
                     "def alerts():\n"
                     "    return lambda e: log.warning('V1 %s', e.service)\n")
    config = tmp_path / "monitoring.py"
    config.write_text(HEAD + "from alerts import alerts\nstreams(index, alerts())\n")
    _, log = rillet_run(config, "--watch")
    port = int(re.search(r"TCP server listening on 127\.0\.0\.1:(\d+)",
                         log.wait_for("TCP server listening")[0]).group(1))  # type: ignore[union-attr]
    with Client("127.0.0.1", port) as client:
        send(client, "one", 1)
        log.wait_for("V1 one")
        rules.write_text(rules.read_text().replace("V1", "V2"))
        log.wait_for(r"changed: .*alerts\.py; reloading")
        log.wait_for("reloaded")
        send(client, "two", 2)
        log.wait_for("V2 two")
        assert sorted(e.service for e in client.query('host = "web1"')) == ["one", "two"]
