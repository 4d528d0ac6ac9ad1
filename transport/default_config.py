"""rillet's default config: what ``make run`` and a bare ``rillet run`` start.

TCP and UDP on 127.0.0.1:5555 (Riemann's defaults; ``rillet run --host H
--port P`` moves both, e.g. beside a Riemann that holds 5555), an index
whose expired events are swept every 10 seconds, and one readable log line
each time a (host, service) changes state. Copy it as the start of your own
monitoring.py.
"""

import logging
import os
from typing import Any

from streams import Event, by, changed, index, periodically_expire, streams
from transport import tcp_server, udp_server

log = logging.getLogger("rillet.state")


def log_change(pair: tuple[Event | None, Event]) -> None:
    previous, event = pair
    before = previous.state if previous is not None else "new"
    log.info("%s %s: %s -> %s (metric %s)",
             event.host, event.service, before, event.state, event.metric)


# `rillet run --host/--port` pass their values here; otherwise Riemann's defaults.
address: dict[str, Any] = {}
if "RILLET_HOST" in os.environ:
    address["host"] = os.environ["RILLET_HOST"]
if "RILLET_PORT" in os.environ:
    address["port"] = int(os.environ["RILLET_PORT"])
tcp_server(**address)
udp_server(**address)
periodically_expire(10)

streams(
    by(["host", "service"], changed("state", log_change, pairs=True)),
    index,
)
