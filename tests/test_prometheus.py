"""prometheus_endpoint: a real Prometheus (Debian's prometheus) scrapes rillet, answers PromQL."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _peers import Process, free_port, poll, rillet, started
from conftest import require_binary

from streams import Config, Event, StreamArgumentError, index
from streams._config import declaring
from transport import TrioClient
from transport._prometheus import prometheus_endpoint


class Prometheus(Process):
    """Prometheus scraping ``127.0.0.1:target`` every second."""

    def __init__(self, root: Path, target: int) -> None:
        binary = require_binary("prometheus", "prometheus")
        self.port = free_port()
        self.target = target
        (root / "prometheus.yml").write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: rillet
    static_configs:
      - targets: ["127.0.0.1:{target}"]
""")
        super().__init__("prometheus", [
            binary, f"--config.file={root}/prometheus.yml", f"--storage.tsdb.path={root}/data",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            root / "prometheus.out", [self.port])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5):
                return True
        except OSError:
            return False

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The instant vector for ``promql``: {sorted labels but name, job, instance: value}."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + \
            urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return {tuple(sorted((k, v) for k, v in r["metric"].items()
                             if k not in ("job", "instance", "__name__"))): float(r["value"][1])
                for r in answer["data"]["result"]}


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with started(Prometheus(tmp_path_factory.mktemp("prometheus"), free_port())) as peer:
        assert isinstance(peer, Prometheus)
        poll(peer.ready, 30, "Prometheus to be ready")
        yield peer


async def until_answer(prometheus: Prometheus, promql: str, expected: Any,
                       seconds: float = 20) -> None:
    found: Any = None
    with trio.move_on_after(seconds):
        while True:
            found = await trio.to_thread.run_sync(prometheus.query, promql)
            if found == expected:
                return
            await trio.sleep(0.2)
    raise AssertionError(f"Prometheus answered {promql!r} with {found}, not {expected}")


def test_prometheus_scrapes_the_index_and_answers_promql(prometheus: Prometheus) -> None:
    now = time.time()
    events = [Event(host="web1", service="cpu user", metric=0.5, time=now, ttl=300, env="prod"),
              Event(host="web2", service="cpu user", metric=2, time=now, ttl=300, env="dev"),
              Event(host='we"b3', service="cpu user", metric=1.5, time=now, ttl=300),
              Event(host="web1", service="status", state="ok", time=now, ttl=300)]

    async def main() -> None:
        def build() -> list[Any]:
            prometheus_endpoint(port=prometheus.target, prefix="rillet_", labels=("env",))
            return [index]

        async with rillet(build) as r:
            async with await TrioClient.connect("127.0.0.1", r.ports[0]) as client:
                await client.send(events)
            cpu = "cpu user"
            await until_answer(prometheus, "rillet_cpu_user", {
                (("env", "prod"), ("host", "web1"), ("service", cpu)): 0.5,
                (("env", "dev"), ("host", "web2"), ("service", cpu)): 2.0,
                (("host", 'we"b3'), ("service", cpu)): 1.5})
            await until_answer(prometheus, 'sum by (env) (rillet_cpu_user{env!=""})',
                               {(("env", "prod"),): 0.5, (("env", "dev"),): 2.0})
            # a short-lived event is scraped, then gone once its TTL runs out
            async with await TrioClient.connect("127.0.0.1", r.ports[0]) as client:
                await client.send(Event(host="web1", service="blip", metric=7,
                                        time=time.time(), ttl=4))
            await until_answer(prometheus, "rillet_blip", {
                (("host", "web1"), ("service", "blip")): 7.0}, seconds=3.5)
            await until_answer(prometheus, "rillet_blip", {})
            assert prometheus.query("rillet_status") == {}
            [endpoint] = [s for s in r.services if isinstance(s, prometheus_endpoint)]
            assert endpoint.statistics()["scrapes"] >= 2

    trio.run(main)


def test_the_endpoint_speaks_http_to_any_client() -> None:
    async def main() -> None:
        def build() -> list[Any]:
            prometheus_endpoint(port=free_port())
            return [index]

        async with rillet(build) as r:
            async with await TrioClient.connect("127.0.0.1", r.ports[0]) as client:
                await client.send(Event(host="h", service="5xx rate", metric=3,
                                        time=time.time()))
            base = f"http://127.0.0.1:{r.ports[1]}"
            async with httpx.AsyncClient() as http:  # one keep-alive connection for all
                metrics = await http.get(f"{base}/metrics")
                again = await http.get(f"{base}/metrics?x=1")
                head = await http.head(f"{base}/metrics")
                missing = await http.get(f"{base}/")
                posted = await http.post(f"{base}/metrics", content=b"x")
            assert metrics.status_code == 200 and again.text == metrics.text
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert metrics.text == \
                '# TYPE _5xx_rate gauge\n_5xx_rate{host="h",service="5xx rate"} 3\n'
            assert head.status_code == 200 and head.content == b""
            assert (missing.status_code, posted.status_code) == (404, 405)

    trio.run(main)


@pytest.mark.parametrize(("options", "message"), [
    ({"port": -1}, r"prometheus_endpoint\(port=-1\)"),
    ({"prefix": "my-app"}, r"prefix='my-app'"),
    ({"labels": "env"}, r"labels='env'"),
    ({"path": "metrics"}, r"path='metrics'"),
])
def test_config_mistakes(options: dict[str, Any], message: str) -> None:
    with pytest.raises(StreamArgumentError, match=message), declaring(Config()):
        prometheus_endpoint(**options)
