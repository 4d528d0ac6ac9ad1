"""forward: rillet to rillet over Riemann's protocol, through the delivery layer."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from _peers import free_port, rillet, send_to, until

from streams import Config, Event, Index, StreamArgumentError, index
from streams._config import declaring
from transport import Running, TcpServer, TrioClient, forward, serve


@asynccontextmanager
async def downstream(port: int = 0, streams: list[Any] | None = None
                     ) -> AsyncIterator[Running]:
    """A second rillet, indexing what it receives on ``port``."""
    config = Config(streams=streams or [index], services=[TcpServer(port=port)])
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(functools.partial(serve, config, index=Index()))
        yield running
        nursery.cancel_scope.cancel()


def events(n: int, service: str = "cpu") -> list[Event]:
    return [Event(host=f"web{i}", service=service, metric=i, time=1700000000 + i,
                  attributes={"region": "eu"}) for i in range(n)]


def test_forward_reaches_another_rillet_with_every_field() -> None:
    async def main() -> None:
        async with downstream() as down:
            target = down.ports[0]
            async with rillet(lambda: [forward("127.0.0.1", target, request_size=7)]) as up:
                await send_to(up.ports[0], events(50))
                [sink] = up.services[1:]
                await until(lambda: sink.statistics()["sent"] == 50)
                assert len(down.index) == 50
            async with await TrioClient.connect("127.0.0.1", target) as client:
                found = await client.query('service = "cpu" and host = "web7"')
        assert [(e.host, e.metric, e.time, e.get("region")) for e in found] == [
            ("web7", 7, 1700000007, "eu")]

    trio.run(main)


def test_forward_queues_while_the_peer_is_down_and_delivers_when_it_comes_back() -> None:
    port = free_port()

    async def main() -> None:
        build = lambda: [forward("127.0.0.1", port, backoff=0.05, max_backoff=0.2)]
        async with rillet(build) as up:
            [sink] = up.services[1:]
            assert await send_to(up.ports[0], events(10, "early")) < 2  # never waits
            await until(lambda: sink.retries >= 2)
            assert "cannot connect to Riemann" in sink.statistics()["last_error"]
            async with downstream(port) as down:
                await until(lambda: len(down.index) == 10)
            # the peer goes away mid-stream, then comes back on the same port
            retries = sink.retries
            await send_to(up.ports[0], events(5, "late"))
            await until(lambda: sink.retries > retries)
            async with downstream(port) as down:
                await until(lambda: len(down.index) == 5)
                assert {e.service for e in down.index} == {"late"}
            assert sink.statistics()["dropped"] == 0

    trio.run(main)


def test_a_peer_whose_streams_fail_rejects_the_batch_without_retries() -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("no disk")

    async def main() -> None:
        async with downstream(streams=[broken]) as down:
            target = down.ports[0]
            async with rillet(lambda: [forward("127.0.0.1", target)]) as up:
                [sink] = up.services[1:]
                await send_to(up.ports[0], events(3))
                await until(lambda: sink.failed == 3)
                stats = sink.statistics()
                assert stats["retries"] == 0
                assert "answered" in stats["last_error"] and "no disk" in stats["last_error"]

    trio.run(main)


def test_config_mistakes() -> None:
    with pytest.raises(StreamArgumentError, match=r"forward\(window=0\)"), declaring(Config()):
        forward(window=0)
    with pytest.raises(ValueError, match=r"forward\(port=70000\)"), declaring(Config()):
        forward("h", 70000)
