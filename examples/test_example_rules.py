"""Tests for examples/rules.py, run with: pytest examples/test_example_rules.py"""

from hypothesis import given, settings
from rules import http_rules

from streams import Event
from streams.testing import Sink, run, taps, timed_events


def http(host, state="ok", metric=1, time=0):
    return Event(host=host, service="http req", state=state, metric=metric, time=time)


def build(sink):
    # Both outputs go to the same sink; the taps tell them apart.
    return http_rules(pager=sink, graph=sink)


def test_a_host_turning_critical_pages_once():
    with taps() as seen:
        run(build, [http("web1", time=0), http("web1", "critical", time=5),
                    http("web1", "critical", time=6), http("web2", time=7)])
    assert [(e.host, e.time) for e in seen["pages"]] == [("web1", 5)]


def test_flapping_pages_at_most_once_a_minute():
    flaps = [http("web1", state, time=t)
             for t, state in [(0, "critical"), (10, "ok"), (20, "critical"), (61, "ok"),
                              (62, "critical")]]
    with taps() as seen:
        run(build, flaps)
    assert [e.time for e in seen["pages"]] == [0, 62]


def test_request_rate_per_host_every_ten_seconds():
    with taps() as seen:
        run(build, [http("web1", metric=30, time=0), http("web1", metric=20, time=4),
                    http("web2", metric=5, time=6)], until=16)
    assert [(e.host, e.time, e.metric) for e in seen["request rate"]] == [
        ("web1", 10, 5.0), ("web2", 16, 0.5),
    ]


def test_other_services_are_ignored():
    assert run(build, [Event(host="web1", service="cpu", state="critical", time=0)],
               until=60) == []


@settings(deadline=None, max_examples=50)
@given(timed_events(services=["http req"], states=["ok", "critical"]))
def test_never_more_than_one_page_per_host_per_minute(events):
    with taps() as seen:
        run(build, events)
    assert all(e.state == "critical" for e in seen["pages"])
    for host in {e.host for e in seen["pages"]}:
        # Each host's throttle was built with the host's first event: its
        # one-minute windows start then.
        start = next(e.time for e in events if e.host == host)
        windows = [(e.time - start) // 60 for e in seen["pages"] if e.host == host]
        assert len(windows) == len(set(windows))


def test_the_pager_sees_what_the_tap_sees():
    pager, graph = Sink(), Sink()
    run(lambda _: http_rules(pager, graph), [http("web1", "critical", time=0)], until=10)
    assert [e.state for e in pager.events] == ["critical"]
    assert [e.metric for e in graph.events] == [0.1]
