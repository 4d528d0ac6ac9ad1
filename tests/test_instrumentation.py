"""Self-instrumentation (issue 10, spec §6.7): rillet's own figures arrive as events."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
import trio
from test_server import request

from streams import Config, Event, Index
from streams._config import declaring
from transport import Running, TcpServer, UdpServer, async_queue, serve
from transport._codec import encode_request
from transport._instrumentation import instrumentation

pytestmark = pytest.mark.network


def test_rillet_reports_on_itself_through_its_own_streams() -> None:
    index = Index()
    with declaring(Config()) as declared:
        queue = async_queue("mail", lambda event: None, size=10)
        instrumentation(interval=0.3)
    config = Config(streams=[index, queue],
                    services=[TcpServer(port=0), UdpServer(port=0), *declared.services])

    def metric(service: str) -> Any:
        found = [e for e in index if e.service == service]
        return found[0].metric if found else None

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(functools.partial(serve, config,
                                                                     index=index))
            port = running.ports[0]
            tcp = f"rillet server tcp 127.0.0.1:{port}"
            for _ in range(20):
                assert (await request(port, encode_request(
                    [Event(service="load", time=time.time())]))).ok
            time.sleep(0.4)  # hold the loop, as a blocking stream would
            with trio.fail_after(10):
                while not (metric("rillet loop longest stall") or 0) >= 300:
                    await trio.sleep(0.05)
                while metric(f"{tcp} conns") is None or metric("rillet index size") is None:
                    await trio.sleep(0.05)
            event = next(e for e in index if e.service == "rillet index size")
            assert event.tags == ("rillet",) and event.ttl == pytest.approx(0.6)
            assert metric("rillet index size") >= 1
            assert metric(f"{tcp} in rate") is not None
            assert metric("rillet queue mail queue size") == 0
            assert metric(f"rillet server udp 127.0.0.1:{running.ports[1]} kernel dropped") == 0
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_instrumentation_interval_is_checked() -> None:
    with pytest.raises(ValueError, match=r"instrumentation\(interval=0\): interval must be"), \
            declaring(Config()):
        instrumentation(interval=0)
