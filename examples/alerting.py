"""Alerting with rillet: run it with `.venv/bin/rillet run examples/alerting.py`.

Pages go to a local Prometheus Alertmanager (which routes them on to PagerDuty,
Slack or mail as its own config says); a digest of critical bursts is mailed
through the local mail relay. The rules are in alerting_rules.py, beside this
file, and tested in test_alerting_rules.py.
"""

from alerting_rules import digest, page_and_resolve, page_at_most_every, sustained_above

from streams import *
from transport import alertmanager, mailer, tcp_server, udp_server

tcp_server()
udp_server()
periodically_expire(10)  # a service that stops reporting resolves as "expired"

# Each sink queues and returns at once; a task delivers, retries and counts drops.
pager = alertmanager("http://127.0.0.1:9093")
mail = mailer("127.0.0.1", 25, from_="rillet@example.com", to=["ops@example.com"])
# With PagerDuty or Slack directly instead:
#   pager = pagerduty("<the 32-character integration key>")
#   chat = slack("https://hooks.slack.com/services/T000/B000/XXXX", channel="#ops")

streams(
    where('service = "http req"', page_and_resolve(pager)),
    sustained_above("cpu", 0.9, 300, pager),
    where('service = "disk"', page_at_most_every(3600, pager)),
    digest(600, mail),
    index,
)
