"""Example rules: page when a host's HTTP turns critical, and graph request rates.

``http_alerts.py``, beside this file, calls ``http_rules(pagerduty(...), graphite(...))``
inside ``streams(...)``; tests call it with sinks instead of real outputs.
"""

from streams import *
from streams.testing import tap


def http_rules(pager: Stream, graph: Stream) -> Stream:
    """The HTTP rules, built from the outputs they feed."""
    return where(
        'service = "http req"',
        # changed_state forks its children per (host, service), so every host gets
        # its own throttle: at most one page a minute per host.
        changed_state(where(None, throttle(1, 60, tap("pages", pager)), state="critical")),
        # Requests per second per host, every 10 seconds.
        by("host", rate(10, tap("request rate", graph))),
    )
