"""Alert hygiene: the recipes of docs/alerting.md, each a function of the outputs it feeds.

``alerting.py`` calls them with the real sinks (``pagerduty``, ``mailer``,
``alertmanager``, ...); ``test_alerting_rules.py`` calls them with sinks that
record, on a virtual clock.
"""

from streams import *


def page_on_change(pager: Stream) -> Stream:
    """Page when a service turns critical, and again only after it changed state."""
    return changed_state(where('state = "critical"', pager), init="ok")


def page_at_most_every(seconds: float, pager: Stream) -> Stream:
    """Page at most once per host every ``seconds``, however often it stays critical."""
    return where('state = "critical"', by("host", throttle(1, seconds, pager)))


def digest(seconds: float, mail: Stream) -> Stream:
    """One message for a burst across many hosts: the first critical event goes out
    at once, the rest of the burst in one list ``seconds`` later (a mailer sends a
    list as one mail)."""
    return where('state = "critical"', rollup(1, seconds, mail))


def page_and_resolve(pager: Stream) -> Stream:
    """Trigger on critical and resolve when the service is ok again or its events
    expire: PagerDuty and Alertmanager close the alert on state ok or expired."""
    return changed_state(where('state = "critical" or state = "ok" or state = "expired"',
                               pager), init="ok")


def sustained_above(service: str, threshold: float, seconds: float, pager: Stream) -> Stream:
    """Page when ``service``'s metric stays above ``threshold`` for ``seconds`` on a host,
    and resolve once when it drops below."""
    alert = changed_state(pager, init="ok")
    return where(None,
                 by("host", sustained(seconds, lambda e: e.metric is not None
                                      and e.metric > threshold,
                                      with_({"state": "critical"}, alert),
                                      else_=with_({"state": "ok"}, alert))),
                 service=service)
