"""rillet's default config: what ``make run`` and a bare ``rillet run`` start.

TCP and UDP on 127.0.0.1:5555 (Riemann's defaults; ``rillet run --host H
--port P`` moves both, e.g. beside a Riemann that holds 5555), WebSocket
subscriptions and the dashboard on http://127.0.0.1:5556/ and Server-Sent
Events on 5558 (P+1 and P+3 with ``--port``; on loopback unless H is, since
beyond it they need tokens), an index
whose expired events are swept every 10 seconds, and one readable log line
each time a (host, service) changes state. Copy it as the start of your own
monitoring.py.
"""

import logging
import os
from typing import Any

from streams import Event, by, changed, index, periodically_expire, streams
from transport import sse_server, tcp_server, udp_server, ws_server

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
# The live view keeps Riemann's layout around the TCP port: 5555, 5556, 5558.
live_host = address.get("host", "127.0.0.1")
if live_host not in ("127.0.0.1", "::1", "localhost"):
    live_host = "127.0.0.1"
ws_server(live_host, address.get("port", 5555) + 1)
sse_server(live_host, address.get("port", 5555) + 3)
periodically_expire(10)

streams(
    by(["host", "service"], changed("state", log_change, pairs=True)),
    index,
)
