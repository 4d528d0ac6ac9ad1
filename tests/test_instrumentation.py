"""Self-instrumentation (issue 10, spec §6.7): rillet's own figures arrive as events."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
import trio
from test_server import request

from streams import Config, Event, Index, Runtime
from streams._config import declaring
from transport import Running, TcpServer, UdpServer, async_queue, serve
from transport._codec import encode_request
from transport._instrumentation import LatencySampler, instrumentation
from transport._scheduler import TrioScheduler

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


def test_stream_latency_by_keys_and_skewed_events_are_reported(tmp_path: Any) -> None:
    # A config loaded from a file, as rillet run does, so a reload can follow.
    config_file = tmp_path / "monitoring.py"
    config_file.write_text(
        "import time\n"
        "from streams import *\n"
        "from transport import instrumentation, tcp_server\n"
        "tcp_server(port=0)\n"
        "instrumentation(interval=0.3)\n"
        "def slow(event):\n"
        "    if event.service == 'slow':\n"
        "        time.sleep(0.03)\n"
        "streams(index, slow,\n"
        "        where('service =~ \"disk%\"',\n"
        "              by('host', by('service', moving_time_window(60, bit_bucket())))))\n")
    runtime = Runtime(TrioScheduler())
    config = runtime.load(config_file)

    def found(service: str) -> Any:
        return next((e for e in runtime.index if e.service == service), None)

    async def wait_for(service: str, condition: Any) -> Any:
        with trio.fail_after(20):
            while (event := found(service)) is None or not condition(event):
                await trio.sleep(0.05)
        return event

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(functools.partial(serve, config,
                                                                     runtime=runtime))
            port = running.ports[0]
            now = time.time()
            for _ in range(16):  # one request in 8 is timed: at least two slow ones
                assert (await request(port, encode_request(
                    [Event(host="web", service="slow", time=now)]))).ok
            assert (await request(port, encode_request(
                [Event(host=f"h{n % 3}", service=f"disk{n}", time=now) for n in range(6)]
                + [Event(host="h0", service="disk0", time=now + 365 * 86400)]))).ok
            latency = await wait_for("rillet streams latency max",
                                     lambda e: e.metric >= 30)
            assert latency.tags == ("rillet",)
            assert found("rillet streams latency 0.5") is not None
            assert found("rillet streams latency 0.99").metric <= latency.metric
            await wait_for("rillet by keys", lambda e: e.metric == 3 + 6)
            largest = await wait_for("rillet by largest keys", lambda e: e.metric == 6)
            assert largest.description == \
                "streams[2]/where/by('host')/by('service')"
            await wait_for("rillet streams skewed", lambda e: e.metric == 1)
            # After a reload the new config's instrumentation times requests; the
            # old one, stopping, does not take the new one's timer away.
            assert await running.reload()
            reloaded = next(s for s in runtime.services if isinstance(s, instrumentation))
            with trio.fail_after(10):
                while runtime.latency is not reloaded.latency:
                    await trio.sleep(0.02)
            await trio.sleep(0.2)
            assert runtime.latency is reloaded.latency
            nursery.cancel_scope.cancel()
        assert runtime.latency is None  # stopped with the server: nothing times requests

    trio.run(main)


def test_latency_sampler_times_one_call_in_every_and_keeps_a_bounded_sample() -> None:
    sampler = LatencySampler(every=4, size=10)
    marks = [sampler.start() for _ in range(100)]
    timed = [m for m in marks if m is not None]
    assert len(timed) == 25 and marks[0] is not None
    for mark in timed:
        sampler.stop(mark)
    samples, longest = sampler.take()
    assert len(samples) == 10 and samples == sorted(samples) and longest >= samples[-1]
    assert sampler.take() == ([], 0.0)
