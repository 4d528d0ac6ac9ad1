"""rillet's default config: what ``make run`` and a bare ``rillet run`` start.

TCP and UDP on 127.0.0.1:5555 (Riemann's defaults), WebSocket subscriptions
and the dashboard on http://127.0.0.1:5556/, Server-Sent Events on 5558, an
index whose expired events are swept every 10 seconds, and one readable log
line each time a (host, service) changes state. Copy it as the start of your own monitoring.py.
"""

import logging

from streams import Event, by, changed, index, periodically_expire, streams
from transport import sse_server, tcp_server, udp_server, ws_server

log = logging.getLogger("rillet.state")


def log_change(pair: tuple[Event | None, Event]) -> None:
    previous, event = pair
    before = previous.state if previous is not None else "new"
    log.info("%s %s: %s -> %s (metric %s)",
             event.host, event.service, before, event.state, event.metric)


tcp_server()
udp_server()
ws_server()
sse_server()
periodically_expire(10)

streams(
    by(["host", "service"], changed("state", log_change, pairs=True)),
    index,
)
