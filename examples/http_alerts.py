"""The rules of rules.py with real outputs: run with `.venv/bin/rillet run examples/http_alerts.py`.

Pages go to PagerDuty (put your integration key), request rates to carbon.
"""

from rules import http_rules

from streams import *
from transport import graphite, pagerduty, tcp_server, udp_server

tcp_server()
udp_server()
periodically_expire(10)

streams(
    http_rules(pagerduty("0123456789abcdef0123456789abcdef"),
               graphite(host="127.0.0.1", port=2003)),
    index,
)
