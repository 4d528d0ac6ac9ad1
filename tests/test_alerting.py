"""The alerting sinks against their peers: a real SMTP server (aiosmtpd), a real
Alertmanager, and a server that checks PagerDuty, Slack and webhook payloads
against the providers' schemas (tests/_alert_peers.py).

The first test of each sink drives it as a user would: a monitoring.py loaded
from a file, rillet serving it, events sent with the Riemann client. Then the
failures: the peer down at start, gone mid-stream, slow, answering 5xx or
refusing; the streams never wait, drops are counted and logged, delivery
resumes, and shutdown flushes within its deadline and says what it dropped.
"""

from __future__ import annotations

import email
import email.policy
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from _alert_peers import (
    AlertmanagerPeer,
    ProviderPeer,
    SmtpPeer,
    free_port,
    peers_fixture,
)

from streams import Config, Event, StreamArgumentError, load_config
from streams._config import declaring
from transport import (
    Running,
    TrioClient,
    alertmanager,
    mailer,
    pagerduty,
    serve,
    slack,
    webhook,
)
from transport._delivery import NetworkSink
from transport._messages import mail_body

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpPeer]:
    yield from peers_fixture(SmtpPeer)


@pytest.fixture(scope="session")
def smtp_tls_server() -> Iterator[SmtpPeer]:
    yield from peers_fixture(functools.partial(SmtpPeer, tls=True, auth=True))


@pytest.fixture(scope="session")
def alertmanager_server() -> Iterator[AlertmanagerPeer]:
    yield from peers_fixture(AlertmanagerPeer)


@pytest.fixture(scope="session")
def provider_server() -> Iterator[ProviderPeer]:
    yield from peers_fixture(ProviderPeer)


@pytest.fixture
def smtp(smtp_server: SmtpPeer) -> SmtpPeer:
    smtp_server.reset()
    return smtp_server


@pytest.fixture
def provider(provider_server: ProviderPeer) -> ProviderPeer:
    provider_server.reset()
    return provider_server


def declare(build: Callable[[], NetworkSink]) -> NetworkSink:
    with declaring(Config()):
        return build()


async def until(condition: Callable[[], Any], seconds: float = 10, what: str = "") -> None:
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.01)


def run_sink(sink: NetworkSink, body: Callable[[], Any], condition: Callable[[], Any],
             seconds: float = 10) -> None:
    """Start the sink's task, call ``body`` (feeding the sink), wait for ``condition``, stop."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.serve, None)
            result = body()
            if inspect.isawaitable(result):
                await result
            await until(condition, seconds)
            await until(lambda: idle(sink), seconds)
            nursery.cancel_scope.cancel()

    trio.run(main)


def idle(sink: Any) -> bool:
    # Stopping a sink mid-request sends that request again at shutdown (delivery
    # is at least once), so tests stop only once nothing is in flight.
    return not isinstance(sink, NetworkSink) or sink.statistics()["queued"] == 0


def run_config(path: Path, events: list[Event], condition: Callable[[], Any]) -> Config:
    """Load ``path``, serve it, send ``events`` with the client, wait for ``condition``."""
    config = load_config(path)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(functools.partial(serve, config))
            async with await TrioClient.connect("127.0.0.1", running.ports[0]) as client:
                await client.send(events)
            await until(condition)
            await until(lambda: all(idle(s) for s in config.services))
            nursery.cancel_scope.cancel()

    trio.run(main)
    return config


def write_config(tmp_path: Path, sink_line: str, rule: str = "sink") -> Path:
    path = tmp_path / "monitoring.py"
    path.write_text(
        "from streams import *\n"
        "from transport import *\n"
        "tcp_server(port=0)\n"
        f"sink = {sink_line}\n"
        f"streams({rule}, index)\n"
    )
    return path


def parse(mail: dict[str, Any]) -> Any:
    """The mail as the recipient reads it (SMTP's CRLF line ends made plain)."""
    return email.message_from_bytes(mail["content"].replace(b"\r\n", b"\n"),
                                    policy=email.policy.default)


def now_event(**fields: Any) -> Event:
    fields.setdefault("time", time.time())
    return Event(**fields)


# mailer -------------------------------------------------------------------------------------


def test_mailer_sends_riemanns_mail_through_a_real_smtp_server(smtp: SmtpPeer,
                                                                tmp_path: Path) -> None:
    path = write_config(tmp_path, f"mailer('127.0.0.1', {smtp.port}, from_='rillet@example.com',"
                                  f" to=['ops@example.com', 'dba@example.com'])")
    critical = Event(host="db1", service="disk", state="critical", metric=0.97, time=1700000000,
                     description="97 % full", tags=["prod"], team="storage")
    config = run_config(path, [critical], lambda: smtp.messages)
    assert len(smtp.messages) == 1, (smtp.messages, [s.statistics() for s in config.services])
    [mail] = smtp.messages
    assert mail["from"] == "rillet@example.com"
    assert mail["to"] == ["ops@example.com", "dba@example.com"]
    parsed = parse(mail)
    assert parsed["Subject"] == "db1 disk critical"
    assert parsed["To"] == "ops@example.com, dba@example.com"
    assert parsed.get_content().rstrip("\n") == mail_body(critical)
    assert "Custom Attributes: {:team \"storage\"}" in parsed.get_content()


def test_mailer_starttls_and_login(smtp_tls_server: SmtpPeer) -> None:
    peer = smtp_tls_server
    peer.reset()
    sink = declare(lambda: mailer("127.0.0.1", peer.port, from_="rillet@example.com",
                                  to="ops@example.com", starttls=True, user=peer.USER,
                                  password=peer.PASSWORD, ssl_context=peer.client_context(),
                                  subject="{host}: {service} is {state}"))
    run_sink(sink, lambda: sink(now_event(host="a", service="b", state="critical")),
             lambda: sink.sent == 1)
    [mail] = peer.messages
    assert mail["tls"] and peer.logins == ["LOGIN"]
    parsed = parse(mail)
    assert parsed["Subject"] == "a: b is critical"
    assert sink.statistics()["sent"] == 1


def test_mailer_speaks_tls_from_the_start_with_ssl_true() -> None:
    peer = SmtpPeer(implicit_tls=True)
    try:
        sink = declare(lambda: mailer("127.0.0.1", peer.port, from_="r@example.com",
                                      to="ops@example.com", ssl=True,
                                      ssl_context=peer.client_context()))
        run_sink(sink, lambda: sink(now_event(host="tls", state="critical")),
                 lambda: sink.sent == 1)
        assert [m["tls"] for m in peer.messages] == [True]
    finally:
        peer.close()


def test_mailer_with_a_wrong_password_is_refused_not_retried(smtp_tls_server: SmtpPeer) -> None:
    peer = smtp_tls_server
    peer.reset()
    sink = declare(lambda: mailer("127.0.0.1", peer.port, from_="r@example.com",
                                  to="ops@example.com", starttls=True, user=peer.USER,
                                  password="wrong", ssl_context=peer.client_context()))
    run_sink(sink, lambda: sink(now_event(host="a", state="critical")),
             lambda: sink.failed == 1)
    stats = sink.statistics()
    assert (stats["sent"], stats["retries"], peer.messages) == (0, 0, [])
    assert "refused user 'rillet'" in stats["last_error"]


def test_mailer_sends_one_mail_for_a_rollup(smtp: SmtpPeer) -> None:
    sink = declare(lambda: mailer("127.0.0.1", smtp.port, from_="r@example.com",
                                  to="ops@example.com"))
    burst = [now_event(host=h, service="http", state="critical") for h in "abcdef"]
    run_sink(sink, lambda: sink(burst), lambda: smtp.messages)
    [mail] = smtp.messages
    parsed = parse(mail)
    assert parsed["Subject"] == "6 hosts http critical"
    assert parsed.get_content().count("\nTags: []") == 6


def test_mailer_retries_a_temporary_refusal_and_counts_a_permanent_one(smtp: SmtpPeer) -> None:
    sink = declare(lambda: mailer("127.0.0.1", smtp.port, from_="r@example.com",
                                  to="ops@example.com", backoff=0.01, max_backoff=0.05))
    smtp.reply = "451 4.3.0 try again later"

    async def feed() -> None:
        sink(now_event(host="temporary", state="critical"))
        await until(lambda: sink.retries >= 2)
        smtp.reply = "550 5.7.1 not here"
        await until(lambda: sink.failed == 1)
        smtp.reply = "250 OK"
        sink(now_event(host="after", state="critical"))

    run_sink(sink, feed, lambda: sink.sent == 1)
    assert [m["content"].count(b"after") > 0 for m in smtp.messages] == [True]
    assert "550" in sink.statistics()["last_error"]


def test_mailer_config_mistakes_name_the_argument() -> None:
    with pytest.raises(StreamArgumentError, match=r"mailer\(to='ops'\): to must be an address"):
        declare(lambda: mailer(from_="r@example.com", to="ops"))
    with pytest.raises(StreamArgumentError, match=r"choose one"):
        declare(lambda: mailer(from_="r@x.org", to="a@x.org", starttls=True, ssl=True))
    with pytest.raises(StreamArgumentError, match=r"give both user and password"):
        declare(lambda: mailer(from_="r@x.org", to="a@x.org", user="me"))
    with pytest.raises(StreamArgumentError, match=r"mailer\(port=70000\)"):
        declare(lambda: mailer("localhost", 70000, from_="r@x.org", to="a@x.org"))
    with pytest.raises(StreamArgumentError, match=r"mailer\(subject=...\): the template '\{host'"):
        declare(lambda: mailer(from_="r@x.org", to="a@x.org", subject="{host"))


# alertmanager ----------------------------------------------------------------------------------


def test_alertmanager_fires_and_resolves_alerts_in_a_real_alertmanager(
        alertmanager_server: AlertmanagerPeer, tmp_path: Path) -> None:
    am = alertmanager_server
    path = write_config(tmp_path, f"alertmanager('{am.url}', labels={{'team': 'web'}}, "
                                  f"annotations={{'summary': '{{host}} {{service}} is "
                                  f"{{state}} ({{metric}}) in {{env}}'}})")
    start = time.time() - 5
    critical = Event(host="e2e", service="http req", state="critical", metric=12, time=start,
                     env="test")
    run_config(path, [critical], lambda: am.alerts(host="e2e"))
    [alert] = am.alerts(host="e2e")
    assert alert["labels"] == {"alertname": "http req", "host": "e2e", "service": "http req",
                               "team": "web"}
    assert alert["annotations"] == {"state": "critical", "summary": "e2e http req is critical "
                                                                "(12) in test"}
    assert alert["status"]["state"] == "active"
    assert abs(_unix(alert["startsAt"]) - start) < 0.01

    # Back to ok: the same alert (same labels) ends; Alertmanager no longer lists it.
    sink = declare(lambda: alertmanager(am.url, labels={"team": "web"}))
    sink(critical)
    run_sink(sink, lambda: sink(now_event(host="e2e", service="http req", state="ok",
                                          time=time.time() - 1)),
             lambda: sink.sent == 2)
    assert am.alerts(host="e2e") == []


def test_alertmanager_resolves_on_expiry_and_reminds_alertmanager_of_firing_alerts(
        alertmanager_server: AlertmanagerPeer) -> None:
    am = alertmanager_server
    sink = declare(lambda: alertmanager(am.url, resend=0.1))
    updates: list[str] = []

    async def feed() -> None:
        sink(now_event(host="remind", service="cpu", state="critical", ttl=600))
        sink(now_event(host="expire", service="cpu", state="warning", ttl=600))
        await until(lambda: len(am.alerts(alertname="cpu")) == 2)
        updates.append(am.alerts(host="remind")[0]["updatedAt"])
        await until(lambda: am.alerts(host="remind")[0]["updatedAt"] != updates[0], 5)
        # The index's expiry emits state "expired": that resolves the alert.
        sink(Event(host="expire", service="cpu", state="expired", time=time.time() - 1))

    run_sink(sink, feed, lambda: [a["labels"]["host"] for a in am.alerts(alertname="cpu")]
             == ["remind"])
    assert sink.statistics()["firing"] == 1


def test_alertmanager_gone_mid_stream_then_back(tmp_path: Path) -> None:
    port = free_port()
    peer = AlertmanagerPeer(port=port)
    sink = declare(lambda: alertmanager(peer.url, backoff=0.05, max_backoff=0.2, timeout=2))
    peers = [peer]

    async def feed() -> None:
        sink(now_event(host="before", service="mid", state="critical"))
        await until(lambda: sink.sent == 1)
        peers[0].close()
        started = time.perf_counter()
        for i in range(50):
            sink(now_event(host=f"during{i}", service="mid", state="critical"))
        assert time.perf_counter() - started < 0.1  # the streams never wait for the peer
        await until(lambda: sink.retries >= 2)
        assert sink.statistics()["last_error"].startswith("ConnectError")
        peers.append(await trio.to_thread.run_sync(AlertmanagerPeer, port))

    try:
        run_sink(sink, feed, lambda: sink.sent == 51, seconds=30)
        assert len(peers[-1].alerts(alertname="mid")) == 50  # a fresh Alertmanager
    finally:
        peers[-1].close()


def test_alertmanager_reminders_never_pile_up_while_it_is_down() -> None:
    sink = declare(lambda: alertmanager(f"http://127.0.0.1:{free_port()}", resend=1,
                                        backoff=0.5, max_backoff=2))
    sizes: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.serve, None)
            for host in "abc":
                sink(Event(host=host, service="s", state="critical", time=0))
            for _ in range(30):  # 30 reminder intervals of virtual time
                await trio.sleep(1)
                sizes.append(sink.statistics()["queued"])
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert max(sizes) == 3 and sink.statistics()["dropped"] == 3  # the 3 alerts, at shutdown


def _unix(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# pagerduty -------------------------------------------------------------------------------------


def test_pagerduty_triggers_and_resolves_with_one_dedup_key(provider: ProviderPeer,
                                                            tmp_path: Path) -> None:
    path = write_config(tmp_path, f"pagerduty('{KEY}', url='{provider.url}/v2/enqueue')",
                        rule="changed_state(sink, init='ok')")
    events = [now_event(host="web1", service="http req", state=s, metric=m)
              for s, m in [("ok", 1), ("critical", 9), ("critical", 8), ("warning", 3),
                           ("ok", 1)]]
    config = run_config(path, events, lambda: len(provider.of("pagerduty")) == 3)
    requests = provider.of("pagerduty")
    assert [r["errors"] for r in requests] == [[], [], []], (
        [(r["json"]["event_action"], r["json"].get("payload", {}).get("severity"))
         for r in requests], [s.statistics() for s in config.services])
    assert [r["json"]["event_action"] for r in requests] == ["trigger", "trigger", "resolve"]
    assert {r["json"]["dedup_key"] for r in requests} == {"web1 http req"}
    assert [r["json"]["payload"]["severity"] for r in requests[:2]] == ["critical", "warning"]
    assert requests[0]["json"]["payload"]["summary"] == "web1 http req is critical (9)"


def test_pagerduty_routing_key_is_checked_at_load() -> None:
    with pytest.raises(StreamArgumentError, match=r"pagerduty\(routing_key='abc'\): the "
                                                  r"routing key is the 32-character"):
        declare(lambda: pagerduty("abc"))


def test_a_template_that_fails_rejects_that_alert_only(provider: ProviderPeer) -> None:
    sink = declare(lambda: pagerduty(KEY, url=f"{provider.url}/v2/enqueue",
                                     summary=lambda e: e.description.upper()))
    run_sink(sink, lambda: [sink(now_event(host="a", state="critical")),
                            sink(now_event(host="b", state="critical", description="x"))],
             lambda: sink.sent == 1)
    assert sink.failed == 1 and "AttributeError" in sink.statistics()["last_error"]
    assert [r["json"]["payload"]["summary"] for r in provider.of("pagerduty")] == ["X"]


# slack -----------------------------------------------------------------------------------


def test_slack_posts_valid_incoming_webhook_messages(provider: ProviderPeer,
                                                     tmp_path: Path) -> None:
    path = write_config(tmp_path, f"slack('{provider.url}/services/T0/B0/XYZ', channel='#ops', "
                                  f"icon_emoji=':fire:')",
                        rule="where('state = \"critical\"', sink)")
    run_config(path, [now_event(host="web<1>", service="http", state="critical", metric=3,
                                description="5xx & timeouts")],
               lambda: provider.of("slack"))
    [request] = provider.of("slack")
    assert request["errors"] == []
    assert request["json"]["text"].startswith("*web&lt;1&gt; http* is *critical* (3)\n"
                                              "5xx &amp; timeouts\n20")
    assert (request["json"]["channel"], request["json"]["icon_emoji"]) == ("#ops", ":fire:")


def test_slack_templates_escape_the_values_and_keep_their_own_markup(
        provider: ProviderPeer) -> None:
    sink = declare(lambda: slack(f"{provider.url}/services/T/B/C",
                                 text="<!here> {host} is {state}"))
    run_sink(sink, lambda: sink(now_event(host="<b>&", state="critical")),
             lambda: sink.sent == 1)
    assert [r["json"]["text"] for r in provider.of("slack")] == \
        ["<!here> &lt;b&gt;&amp; is critical"]


def test_slack_config_mistakes() -> None:
    with pytest.raises(StreamArgumentError, match=r"slack\(icon_emoji='fire'\): write the emoji"):
        declare(lambda: slack("https://hooks.slack.com/services/x", icon_emoji="fire"))
    with pytest.raises(StreamArgumentError, match=r"slack\(url='hooks.slack.com'\): the url must"):
        declare(lambda: slack("hooks.slack.com"))


# webhook ---------------------------------------------------------------------------------


def test_webhook_posts_the_event_or_the_body_template(provider: ProviderPeer,
                                                      tmp_path: Path) -> None:
    path = write_config(tmp_path, f"webhook('{provider.url}/hooks/alerts', "
                                  f"headers={{'Authorization': 'Bearer t0k3n'}})")
    event = now_event(host="web1", service="http", state="critical", metric=2, team="ops")
    run_config(path, [event], lambda: provider.of("webhook"))
    [request] = provider.of("webhook")
    assert request["errors"] == []
    assert request["headers"]["Authorization"] == "Bearer t0k3n"
    assert request["json"]["team"] == "ops" and request["json"]["metric"] == 2

    provider.reset()
    provider.webhook_schema = {
        "type": "object", "required": ["title", "severity"], "additionalProperties": False,
        "properties": {"title": {"type": "string"}, "severity": {"enum": ["critical", "ok"]}}}
    sink = declare(lambda: webhook(f"{provider.url}/incident",
                                   body={"title": "{host} {service}", "severity": "{state}"}))
    run_sink(sink, lambda: sink(event), lambda: provider.of("webhook"))
    [request] = provider.of("webhook")
    assert (request["json"], request["errors"]) == ({"title": "web1 http",
                                                    "severity": "critical"}, [])


def test_credentials_stay_out_of_reprs_and_logs() -> None:
    sinks = [
        declare(lambda: mailer("mail.example.com", 587, from_="r@example.com",
                               to="ops@example.com", user="rillet", password="hunter2")),
        declare(lambda: pagerduty(KEY)),
        declare(lambda: slack("https://hooks.slack.com/services/T0/B0/s3cr3tT0k3n")),
        declare(lambda: webhook("https://example.com/hook",
                                headers={"Authorization": "Bearer s3cr3tT0k3n"})),
    ]
    text = " ".join(repr(sink) for sink in sinks)
    for secret in ("hunter2", KEY, "s3cr3tT0k3n"):
        assert secret not in text
    assert "https://hooks.slack.com/services/T0/B0/<hidden>" in text


# Failures ------------------------------------------------------------------------------


def test_peer_down_at_start_then_up(provider: ProviderPeer) -> None:
    port = free_port()
    sink = declare(lambda: slack(f"http://127.0.0.1:{port}/services/T/B/C",
                                 backoff=0.02, max_backoff=0.1))
    late: list[ProviderPeer] = []

    async def feed() -> None:
        for host in "abc":
            sink(now_event(host=host, service="s", state="critical"))
        await until(lambda: sink.retries >= 3)
        assert sink.statistics()["sent"] == 0 and "ConnectError" in sink.last_error
        late.append(ProviderPeer(port))

    try:
        run_sink(sink, feed, lambda: sink.sent == 3)
        assert [r["json"]["text"].split("*")[1] for r in late[0].of("slack")] == \
            ["a s", "b s", "c s"]  # in order
    finally:
        for peer in late:
            peer.close()


def test_smtp_down_at_start_then_up() -> None:
    port = free_port()
    sink = declare(lambda: mailer("127.0.0.1", port, from_="r@example.com",
                                  to="ops@example.com", backoff=0.02, max_backoff=0.1))
    late: list[SmtpPeer] = []

    async def feed() -> None:
        sink(now_event(host="late", state="critical"))
        await until(lambda: sink.retries >= 2)
        assert "ConnectionRefusedError" in sink.last_error
        late.append(await trio.to_thread.run_sync(functools.partial(SmtpPeer, port=port)))

    try:
        run_sink(sink, feed, lambda: sink.sent == 1)
        assert len(late[0].messages) == 1
    finally:
        for peer in late:
            peer.close()


def test_a_slow_peer_times_out_is_retried_and_never_holds_up_the_streams(
        provider: ProviderPeer) -> None:
    provider.delay = 1.0
    sink = declare(lambda: pagerduty(KEY, url=f"{provider.url}/v2/enqueue", timeout=0.2,
                                     backoff=0.01, max_backoff=0.05))
    calls: list[float] = []

    async def feed() -> None:
        for i in range(200):
            started = time.perf_counter()
            sink(now_event(host=f"h{i}", service="s", state="critical"))
            calls.append(time.perf_counter() - started)
        await until(lambda: sink.retries >= 1)
        assert "TimeoutError" in sink.last_error
        provider.delay = 0

    run_sink(sink, feed, lambda: sink.sent == 200, seconds=20)
    assert max(calls) < 0.01
    delivered = {r["json"]["payload"]["source"] for r in provider.of("pagerduty")}
    assert delivered == {f"h{i}" for i in range(200)}


def test_5xx_is_retried_and_4xx_is_counted_as_failed(provider: ProviderPeer) -> None:
    sink = declare(lambda: webhook(f"{provider.url}/hook", backoff=0.01, max_backoff=0.05))
    provider.fail_with = 503

    async def feed() -> None:
        sink(now_event(host="five", state="critical"))
        await until(lambda: sink.retries >= 2)
        provider.fail_with = None
        await until(lambda: sink.sent == 1)
        provider.fail_with = 400
        sink(now_event(host="four", state="critical"))
        await until(lambda: sink.failed == 1)
        provider.fail_with = None
        sink(now_event(host="after", state="critical"))

    run_sink(sink, feed, lambda: sink.sent == 2)
    stats = sink.statistics()
    assert stats["failed"] == 1 and stats["last_success"] is not None
    hosts = [r["json"]["host"] for r in provider.of("webhook")]
    assert hosts.count("four") == 1  # a 4xx is not retried
    assert hosts[-1] == "after" and "five" in hosts


def test_a_full_queue_drops_new_alerts_with_a_log_line_each_then_recovers(
        provider: ProviderPeer, caplog: pytest.LogCaptureFixture) -> None:
    provider.fail_with = 503
    sink = declare(lambda: slack(f"{provider.url}/services/T/B/C", queue_size=3,
                                 backoff=0.01, max_backoff=0.05))

    async def feed() -> None:
        await until(lambda: True)
        for host in "abcdefghij":
            sink(now_event(host=host, service="s", state="critical"))
        provider.fail_with = None

    with caplog.at_level(logging.ERROR, "rillet.delivery"):
        run_sink(sink, feed, lambda: sink.sent == 3)
    stats = sink.statistics()
    assert stats["dropped"] == 7
    drops = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(drops) == 7 and "host='j'" in drops[-1] and "7 dropped so far" in drops[-1]
    texts = [r["json"]["text"] for r in provider.of("slack") if r["json"]]
    assert {t.split("*")[1] for t in texts} == {"a s", "b s", "c s"}


def test_shutdown_flushes_what_is_queued(provider: ProviderPeer) -> None:
    sink = declare(lambda: pagerduty(KEY, url=f"{provider.url}/v2/enqueue"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.serve, None)
            for i in range(5):
                sink(now_event(host=f"h{i}", state="critical"))
            nursery.cancel_scope.cancel()  # before the task had a turn

    trio.run(main)
    stats = sink.statistics()
    assert (stats["sent"], stats["dropped"], stats["retries"]) == (5, 0, 0), stats
    assert [r["json"]["payload"]["source"] for r in provider.of("pagerduty")] == \
        [f"h{i}" for i in range(5)]


def test_shutdown_gives_up_within_the_deadline_and_says_what_it_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    sink = declare(lambda: mailer("127.0.0.1", port, from_="r@example.com",
                                  to="ops@example.com", flush_timeout=0.3, backoff=0.05))
    took: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.serve, None)
            for i in range(4):
                sink(now_event(host=f"h{i}", state="critical"))
            await until(lambda: sink.retries >= 1)
            started = time.perf_counter()
            nursery.cancel_scope.cancel()
        took.append(time.perf_counter() - started)

    with caplog.at_level(logging.ERROR, "rillet.delivery"):
        trio.run(main)
    assert took[0] < 1.5
    assert sink.statistics()["dropped"] == 4
    assert any("dropped 4 undelivered events" in r.getMessage() for r in caplog.records)


# The guide -----------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["alerting_rules.py", "alerting.py",
                                     "test_alerting_rules.py"])
def test_the_alerting_guide_shows_the_example_files_as_they_are(example: str) -> None:
    root = Path(__file__).resolve().parents[1]
    guide = (root / "docs" / "alerting.md").read_text()
    assert f"```python\n{(root / 'examples' / example).read_text()}```" in guide
