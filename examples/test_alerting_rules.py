"""Tests for examples/alerting_rules.py, run with: pytest examples/test_alerting_rules.py"""

from itertools import pairwise

from alerting_rules import (
    digest,
    page_and_resolve,
    page_at_most_every,
    page_on_change,
    sustained_above,
)
from hypothesis import given, settings

from streams import Event
from streams.testing import run, timed_events


def check(host, state, time, service="http req", metric=None):
    return Event(host=host, service=service, state=state, time=time, metric=metric)


def test_page_on_change_pages_once_per_turn_to_critical():
    events = [check("web1", s, t) for t, s in
              [(0, "ok"), (10, "critical"), (20, "critical"), (30, "ok"), (40, "critical")]]
    assert [e.time for e in run(page_on_change, events)] == [10, 40]


def test_page_at_most_once_an_hour_per_host():
    events = [check(h, "critical", t) for h, t in
              [("web1", 0), ("web1", 600), ("web2", 700), ("web1", 3601)]]
    pages = run(lambda pager: page_at_most_every(3600, pager), events)
    assert [(e.host, e.time) for e in pages] == [("web1", 0), ("web2", 700), ("web1", 3601)]


def test_a_burst_across_many_hosts_is_one_message():
    burst = [check(f"web{i}", "critical", i) for i in range(20)]
    mails = run(lambda mail: digest(600, mail), burst, until=600)
    assert [[e.host for e in mail] for mail in mails] == \
        [["web0"], [f"web{i}" for i in range(1, 20)]]


def test_page_and_resolve():
    events = [check("web1", s, t) for t, s in
              [(0, "ok"), (10, "critical"), (20, "warning"), (30, "ok"), (40, "critical"),
               (50, "expired")]]
    assert [(e.state, e.time) for e in run(page_and_resolve, events)] == \
        [("critical", 10), ("ok", 30), ("critical", 40), ("expired", 50)]


def test_cpu_above_90_percent_for_five_minutes():
    samples = [check("db1", None, t, "cpu", m) for t, m in
               [(0, 0.95), (120, 0.97), (200, 0.5), (240, 0.92), (400, 0.99), (540, 0.95),
                (600, 0.96), (660, 0.3), (720, 0.2)]]
    pages = run(lambda pager: sustained_above("cpu", 0.9, 300, pager), samples)
    assert [(e.state, e.time) for e in pages] == [("critical", 540), ("ok", 660)]


@settings(deadline=None, max_examples=50)
@given(timed_events(services=["http req"], states=["ok", "critical"]))
def test_every_page_is_a_change_and_every_resolve_follows_a_page(events):
    alerts = run(page_and_resolve, events)
    for host in {e.host for e in alerts}:
        states = [e.state for e in alerts if e.host == host]
        assert all(a != b for a, b in pairwise(states))  # changes only
        assert states[0] == "critical"  # nothing to resolve before the first page
