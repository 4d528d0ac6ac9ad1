"""`rillet check`, the messages of a config that cannot load, and `rillet run --host/--port`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams import ConfigError, Event, load_config
from transport import Client
from transport._cli import main

GOOD = """\
from streams import *
from transport import tcp_server

tcp_server(port=5999)
periodically_expire(10)
streams(where('service = "cpu"', by("host", rate(5, index))))
"""


def test_check_prints_what_the_config_declares(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "monitoring.py"
    path.write_text(GOOD)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr()
    assert "where('service = \"cpu\"', by('host', rate(5, index)))" in out.out
    assert "TcpServer(host='127.0.0.1', port=5999" in out.out
    assert "index expiry: every 10 s" in out.out
    assert out.err == ""


def test_check_fails_with_file_and_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "monitoring.py"
    path.write_text("from streams import *\n\nstreams(rate('five', index))\n")
    assert main(["check", str(path)]) == 1
    assert f"{path}:3: " in capsys.readouterr().err


def test_check_and_run_warn_about_a_config_without_a_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "monitoring.py"
    path.write_text("from streams import *\nstreams(index)\n")
    assert main(["check", str(path)]) == 0
    assert "declares no server" in capsys.readouterr().err


@pytest.mark.parametrize(("source", "expected"), [
    ("(streams\n  (where (service \"cpu\") index))\n", "Riemann (Clojure) config"),
    ("from streams import *\nstreams(wher(None, index))\n", "Did you mean: 'where'?"),
    ("from streams import *\nstreams(index())\n", "use `index`, not `index()`"),
    ("from streams import *\nstreams(where(lambda e: e.metric >, index))\n",
     "syntax error: invalid syntax\n    streams(where(lambda e: e.metric >, index))\n"
     "                                      ^"),
])
def test_config_mistakes_explain_themselves(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "monitoring.py"
    path.write_text(source)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert expected in str(raised.value)
    assert "frozen" not in str(raised.value)


def test_a_riemann_config_file_points_to_the_translation_guide(tmp_path: Path) -> None:
    path = tmp_path / "riemann.config"
    path.write_text("; -*- mode: clojure; -*-\n(tcp-server)\n")
    with pytest.raises(ConfigError, match=r"docs/coming-from-riemann\.md"):
        load_config(path)


def test_a_directory_or_unreadable_file_gets_a_plain_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a directory; give the path of a monitoring"):
        load_config(tmp_path)
    # Readable by nobody, root included: the kernel refuses to read a process's memory at 0.
    with pytest.raises(ConfigError, match=r"/proc/self/mem: cannot read the config: "):
        load_config("/proc/self/mem")
    path = tmp_path / "secret.py"
    path.write_text("from streams import *\nstreams(index)\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: every file is readable")
        with pytest.raises(ConfigError, match="cannot read the config: Permission denied"):
            load_config(path)
    finally:
        path.chmod(0o600)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_default_ports() -> int:
    """A port P with P+1 and P+3 free too: the default config puts WebSocket and SSE there."""
    for _ in range(100):
        port = free_port()
        probes = [socket.socket() for _ in range(3)]
        try:
            for probe, offset in zip(probes, (0, 1, 3), strict=True):
                probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return port
    raise AssertionError("no free port P with P+1 and P+3 free on 127.0.0.1")


@pytest.mark.network
def test_the_default_config_moves_off_5555(tmp_path: Path) -> None:
    port = free_default_ports()
    process = subprocess.Popen(
        [sys.executable, "-m", "transport._cli", "run", "--port", str(port),
         "--pid-file", str(tmp_path / "pid")],
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with Client("127.0.0.1", port, connect_attempts=1) as client:
                    client.send(Event(host="beside", service="riemann", metric=1))
                    assert [e.host for e in client.query('service = "riemann"')] == ["beside"]
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "rillet run --port did not listen"
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
    refused = subprocess.run([sys.executable, "-m", "transport._cli", "run", str(tmp_path / "x.py"),
                              "--port", "1"], capture_output=True, text=True, timeout=20,
                             check=False)
    assert refused.returncode == 2 and "declares its own" in refused.stderr
