"""A first monitoring config: run it with `.venv/bin/rillet run examples/monitoring.py`.

- alerts (here: a log line) at most once a minute per host while HTTP requests fail,
- keeps a per-host 60-second mean of CPU in the index as "cpu mean",
- logs every state change of every (host, service),
- indexes everything, expiring stale events every 10 seconds.
"""

import logging

from streams import *
from transport import tcp_server, udp_server

log = logging.getLogger("monitoring")


def page(event: Event) -> None:
    log.warning("PAGE: %s %s is %s: %s", event.host, event.service, event.state,
                event.description)


def log_change(event: Event) -> None:
    log.info("%s %s is now %s", event.host, event.service, event.state)


tcp_server()
udp_server()
periodically_expire(10)

streams(
    where('service = "http req" and not state = "ok"',
          by("host", throttle(1, 60, page))),
    where(lambda e: e.service == "cpu" and e.metric is not None,
          by("host", moving_time_window(60, smap(folds.mean,
                                                 with_({"service": "cpu mean"}, index))))),
    changed_state(log_change),
    index,
)
