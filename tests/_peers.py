"""Starting real peers (carbon, graphite-web, InfluxDB, Prometheus) and a rillet for the sink tests.

Each peer runs from a config written in a temp dir, on free ports of 127.0.0.1;
its output goes to a log file quoted when it fails to start.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import trio
from conftest import peer_unavailable, require_binary

from streams import Config, Event, Index
from streams._config import declaring
from transport import Running, TcpServer, TrioClient, serve

STARTUP_SECONDS = 30


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def poll(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    """``condition()``'s first truthy value, polled until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


class Process:
    """A peer process: started with its output in ``log``, stopped on ``stop()``."""

    def __init__(self, name: str, argv: list[str], log: Path, ports: list[int],
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.ports = ports
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})}, cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not all(listening(p) for p in self.ports):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-2000:]
                peer_unavailable(f"{self.name} did not start listening on {self.ports} "
                                 f"({' '.join(self.argv)}):\n{tail}")
            time.sleep(0.05)
        return self

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# carbon-cache -----------------------------------------------------------------------


class Carbon(Process):
    """A carbon-cache writing whisper files under ``root``; read back with whisper-fetch."""

    def __init__(self, root: Path, line_port: int | None = None) -> None:
        binary = require_binary("carbon-cache", "graphite-carbon")
        self.fetch = require_binary("whisper-fetch", "python3-whisper")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.whisper = root / "whisper"
        for sub in ("whisper", "lists", "log"):
            (root / sub).mkdir(exist_ok=True)
        self.line_port = line_port or free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.pickle_port = free_port()
        (root / "storage-schemas.conf").write_text(
            "[everything]\npattern = .*\nretentions = 1s:1d\n")
        (root / "carbon.conf").write_text(f"""[cache]
STORAGE_DIR = {root}
LOCAL_DATA_DIR = {self.whisper}
WHITELISTS_DIR = {root}/lists
CONF_DIR = {root}
LOG_DIR = {root}/log
PID_DIR = {root}
ENABLE_LOGROTATION = False
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {self.line_port}
ENABLE_UDP_LISTENER = True
UDP_RECEIVER_INTERFACE = 127.0.0.1
UDP_RECEIVER_PORT = {self.udp_port}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {self.pickle_port}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {free_port()}
""")
        super().__init__("carbon-cache", [
            binary, f"--config={root}/carbon.conf", f"--pidfile={root}/carbon.pid",
            "--nodaemon", "start"], root / "carbon.out", [self.line_port, self.pickle_port])

    def points(self, path: str, since: float) -> dict[int, float]:
        """What whisper holds for ``path`` (dots) from ``since``: {timestamp: value}."""
        file = self.whisper.joinpath(*path.split(".")).with_suffix(".wsp")
        if not file.exists():
            return {}
        out = subprocess.run([self.fetch, f"--from={int(since) - 1}", str(file)],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        found = {}
        for line in out.splitlines():
            stamp, value = line.split()
            if value != "None":
                found[int(stamp)] = float(value)
        return found

    def wait_for(self, path: str, since: float, count: int, seconds: float = 20
                 ) -> dict[int, float]:
        return poll(lambda: (p := self.points(path, since)) and len(p) >= count and p,  # type: ignore[no-any-return]
                    seconds, f"{count} points of {path} in whisper")


# rillet -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def rillet(build: Callable[[], list[Any]]) -> AsyncIterator[Running]:
    """A rillet serving the streams ``build()`` returns (sinks declared inside), on TCP port 0,
    with an index of its own.

    Leaving the block stops it the way a SIGTERM does: the nursery is cancelled
    and every sink flushes within its flush_timeout.
    """
    with declaring(Config()) as declared:
        top = build()
    config = Config(streams=top, services=[TcpServer(port=0), *declared.services])
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(functools.partial(serve, config, index=Index()))
        yield running
        nursery.cancel_scope.cancel()


async def send_to(port: int, events: list[Event]) -> float:
    """Send events to rillet one request each; the seconds it took, all acks included."""
    began = time.perf_counter()
    async with await TrioClient.connect("127.0.0.1", port) as client:
        for event in events:
            await client.send(event)
    return time.perf_counter() - began


async def until(condition: Callable[[], Any], seconds: float = 20) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail after ``seconds``."""
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.02)


@contextlib.contextmanager
def started(process: Process) -> Iterator[Process]:
    process.start()
    try:
        yield process
    finally:
        process.stop()
