"""What the alerting sinks send, built without a network: templates, Riemann's mail,
Alertmanager alerts, PagerDuty events, Slack messages and webhook bodies.

Every payload is also checked against the provider's documented schema (the
same schemas the test peer enforces, tests/_alert_peers.py), for hand-picked
events and for events Hypothesis draws.
"""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest
from _alert_peers import EVENT_JSON, PAGERDUTY_EVENT, SLACK_MESSAGE, schema_errors
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import Event
from streams.testing import events
from transport._messages import (
    AlertTracker,
    alertmanager_alert,
    compile_body,
    compile_template,
    email_message,
    event_json,
    iso_time,
    mail_body,
    mail_subject,
    pagerduty_event,
    slack_message,
    slack_text,
    webhook_body,
)

KEY = "0123456789abcdef0123456789abcdef"
CRITICAL = Event(host="web1", service="http req", state="critical", metric=0.95, time=1700000000,
                 description="5xx above 5 %", tags=("prod", "web"), team="ops", ttl=60)

# Templates --------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "expected"), [
    ("{host} {service} is {state} ({metric})", "web1 http req is critical (0.95)"),
    ("{metric:.1f} {metric:>6}", "0.9   0.95"),
    ("{time}", "2023-11-14T22:13:20.000Z"),
    ("{tags}", "prod, web"),
    ("{team}/{missing}/{description}", "ops//5xx above 5 %"),
    ("{{literal}} {host}", "{literal} web1"),
    ("", ""),
])
def test_templates_render_fields_attributes_and_iso_times(template: str, expected: str) -> None:
    assert compile_template(template, "t")(CRITICAL) == expected


def test_absent_fields_render_empty_whatever_their_format() -> None:
    assert compile_template("[{metric:.2f}] [{time}] [{tags}]", "t")(Event()) == "[] [] []"


@pytest.mark.parametrize(("template", "message"), [
    ("{host", r"slack\(text=...\): the template '\{host' is not a valid str.format template"),
    ("{}", r"positional fields"),
    ("{0}", r"positional fields"),
    ("{metric:q}", r"Unknown format code 'q'"),
    ("{host.upper}", r"not a valid"),
])
def test_template_mistakes_fail_at_load_naming_the_argument(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_template(template, "slack(text=...)")


def test_a_template_may_be_a_function() -> None:
    assert compile_template(lambda e: e.host.upper(), "t")(CRITICAL) == "WEB1"
    with pytest.raises(TypeError, match=r"str.format string or a function"):
        compile_template(42, "t")  # type: ignore[arg-type]


def test_iso_time_is_rfc3339_utc() -> None:
    assert iso_time(1700000000.1234) == "2023-11-14T22:13:20.123Z"


# Mail: Riemann's subject and body ---------------------------------------------------------


@pytest.mark.parametrize(("hosts", "expected"), [
    (["a"], "a http critical"),
    (["a", "b"], "a and b http critical"),
    (["a", "b", "a"], "a and b http critical"),
    (["a", "b", "c"], "a, b, c http critical"),
    (["a", "b", "c", "d"], "a, b, c, d http critical"),
    (["a", "b", "c", "d", "e"], "5 hosts http critical"),
])
def test_subject_summarises_like_riemanns_human_uniq(hosts: list[str], expected: str) -> None:
    assert mail_subject([Event(host=h, service="http", state="critical") for h in hosts]) \
        == expected


def test_subject_leaves_out_absent_fields() -> None:
    assert mail_subject(Event(service="backup")) == "backup"
    assert mail_subject([Event(host="a", state="ok"), Event(host="a", state="critical")]) \
        == "a ok and critical"


def test_body_is_riemanns_layout_one_block_per_event() -> None:
    body = mail_body([CRITICAL, Event(host="db1", service="disk", time=0)])
    assert body == (
        "At Tue Nov 14 22:13:20 UTC 2023\n"
        "web1 http req critical (0.95)\n"
        "Tags: [prod, web]\n"
        'Custom Attributes: {:team "ops"}\n'
        "\n"
        "5xx above 5 %"
        "\n\n\n"
        "At Thu Jan 01 00:00:00 UTC 1970\n"
        "db1 disk  ()\n"
        "Tags: []\n"
        "Custom Attributes: {}\n"
        "\n"
    )


def test_email_message_headers_and_body_parse_back() -> None:
    message = email_message([CRITICAL], from_="rillet@example.com",
                            to=["ops@example.com", "oncall@example.com"])
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["From"] == "rillet@example.com"
    assert parsed["To"] == "ops@example.com, oncall@example.com"
    assert parsed["Subject"] == "web1 http req critical"
    assert parsed.get_content() == mail_body(CRITICAL) + "\n"


# Alertmanager -------------------------------------------------------------------------------


def test_alertmanager_alert_labels_annotations_and_times() -> None:
    alert = alertmanager_alert(
        CRITICAL, now=1700000100, labels={"team": lambda e: e.get("team"), "env": "prod"},
        annotations={"summary": compile_template("{host} is {state}", "t")},
        generator_url="http://rillet.example/")
    assert alert == {
        "labels": {"alertname": "http req", "host": "web1", "service": "http req",
                   "team": "ops", "env": "prod"},
        "annotations": {"state": "critical", "summary": "web1 is critical"},
        "startsAt": "2023-11-14T22:13:20.000Z",
        "generatorURL": "http://rillet.example/",
    }


def test_tracker_fires_updates_and_resolves_with_the_first_start() -> None:
    tracker = AlertTracker()
    first = tracker.step(CRITICAL.evolve(state="warning", time=100), now=100)
    again = tracker.step(CRITICAL.evolve(state="critical", time=130), now=130)
    resolved = tracker.step(CRITICAL.evolve(state="ok", time=160, description="fine"), now=161)
    assert [a["annotations"]["state"] for a in first + again + resolved] == \
        ["warning", "critical", "ok"]
    assert {a["startsAt"] for a in first + again + resolved} == {iso_time(100)}
    assert [a.get("endsAt") for a in first + again + resolved] == [None, None, iso_time(160)]
    assert resolved[0]["labels"] == first[0]["labels"]
    assert len(tracker) == 0
    assert tracker.step(CRITICAL.evolve(state="ok"), now=170) == []  # nothing was firing


def test_tracker_resolves_on_the_index_expiry_and_reminds_of_the_rest() -> None:
    tracker = AlertTracker()
    tracker.step(Event(host="a", service="s", state="critical", time=0, ttl=10), now=0)
    tracker.step(Event(host="b", service="s", state="critical", time=0, ttl=100), now=0)
    tracker.step(Event(host="c", service="s", state="critical", time=0), now=0)
    [expired] = tracker.step(Event(host="c", service="s", state="expired", time=50), now=50)
    assert expired["endsAt"] == iso_time(50)
    # a's event outlived its ttl: the reminder resolves it at time + ttl
    reminders = {a["labels"]["host"]: a for a in tracker.firing(now=50)}
    assert reminders["a"]["endsAt"] == iso_time(10)
    assert reminders["a"]["annotations"]["state"] == "expired"
    assert "endsAt" not in reminders["b"]
    assert [a["labels"]["host"] for a in tracker.firing(now=60)] == ["b"]


def test_tracker_is_bounded_and_counts_what_it_forgets() -> None:
    tracker = AlertTracker(max_alerts=2)
    for host in "abc":
        tracker.step(Event(host=host, service="s", state="critical", time=0), now=0)
    assert [a["labels"]["host"] for a in tracker.firing(0)] == ["b", "c"]
    assert tracker.forgotten == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(events(states=["ok", "critical", "warning", "expired"]), max_size=30))
def test_tracker_never_resolves_what_is_not_firing(drawn: list[Event]) -> None:
    tracker = AlertTracker()
    firing: set[tuple[Any, Any]] = set()
    for event in drawn:
        alerts = tracker.step(event, now=100)
        key = (event.host, event.service)
        if event.state in ("ok", "expired"):
            assert len(alerts) == (1 if key in firing else 0)
            assert all("endsAt" in a for a in alerts)
            firing.discard(key)
        else:
            assert len(alerts) == 1 and "endsAt" not in alerts[0]
            firing.add(key)
    assert len(tracker) == len(firing)


# PagerDuty ------------------------------------------------------------------------------------


def test_pagerduty_trigger_matches_the_events_api() -> None:
    body = pagerduty_event(CRITICAL, routing_key=KEY, now=0)
    assert body == {
        "routing_key": KEY, "event_action": "trigger", "dedup_key": "web1 http req",
        "client": "rillet",
        "payload": {
            "summary": "web1 http req is critical (0.95)", "source": "web1",
            "severity": "critical", "timestamp": "2023-11-14T22:13:20.000Z",
            "component": "http req", "custom_details": event_json(CRITICAL),
        },
    }
    assert schema_errors(PAGERDUTY_EVENT, body) == []


@pytest.mark.parametrize(("state", "action", "severity"), [
    ("critical", "trigger", "critical"), ("warning", "trigger", "warning"),
    ("warn", "trigger", "warning"), ("error", "trigger", "error"), ("info", "trigger", "info"),
    ("down", "trigger", "critical"), (None, "trigger", "critical"),
    ("ok", "resolve", None), ("expired", "resolve", None),
])
def test_pagerduty_actions_and_severities(state: str | None, action: str,
                                          severity: str | None) -> None:
    body = pagerduty_event(CRITICAL.evolve(state=state), routing_key=KEY, now=0)
    assert body["event_action"] == action
    assert body.get("payload", {}).get("severity") == severity
    assert body["dedup_key"] == "web1 http req"


def test_pagerduty_limits_are_kept() -> None:
    long = Event(host="h" * 300, service="s" * 300, state="critical", description="d")
    body = pagerduty_event(long, routing_key=KEY, now=0)
    assert len(body["dedup_key"]) == 255 and len(body["payload"]["summary"]) == 616
    huge = pagerduty_event(long, routing_key=KEY, now=0, summary=lambda e: "x" * 5000)
    assert len(huge["payload"]["summary"]) == 1024
    assert schema_errors(PAGERDUTY_EVENT, huge) == []


@settings(max_examples=200, deadline=None)
@given(events(states=["ok", "critical", "warning", "expired", "weird", None],
              hosts=["a", "", "web 1"], services=["s", "", "http req"]))
def test_every_pagerduty_event_fits_the_schema(event: Event) -> None:
    assert schema_errors(PAGERDUTY_EVENT, pagerduty_event(event, routing_key=KEY, now=5)) == []


# Slack -----------------------------------------------------------------------------------------


def test_slack_default_message_escapes_control_characters() -> None:
    message = slack_message(CRITICAL.evolve(description="<b> & more"), text=slack_text,
                            channel="#ops", username="rillet", icon_emoji=":rotating_light:")
    assert message == {"text": "*web1 http req* is *critical* (0.95)\n&lt;b&gt; &amp; more\n"
                               "2023-11-14T22:13:20.000Z, tags: prod, web",
                       "channel": "#ops", "username": "rillet",
                       "icon_emoji": ":rotating_light:"}
    assert schema_errors(SLACK_MESSAGE, message) == []


def test_slack_default_text_leaves_out_what_the_event_lacks() -> None:
    assert slack_text(Event(host="a", service="b", state="ok")) == "*a b* is *ok*"


def test_slack_one_message_for_a_list_a_line_per_event() -> None:
    text = compile_template("{host} is {state}", "t")
    message = slack_message([Event(host="a", state="critical"), Event(host="b", state="ok")],
                            text=text)
    assert message == {"text": "a is critical\nb is ok"}


@settings(max_examples=200, deadline=None)
@given(st.lists(events(hosts=["a", "<b>", "&"]), min_size=1, max_size=5))
def test_every_slack_message_fits_the_schema(drawn: list[Event]) -> None:
    message = slack_message(drawn, text=slack_text)
    assert schema_errors(SLACK_MESSAGE, message) == []
    assert "<" not in message["text"] and ">" not in message["text"]


# Webhook ---------------------------------------------------------------------------------------


def test_webhook_default_body_is_the_event() -> None:
    assert webhook_body(CRITICAL) == {
        "host": "web1", "service": "http req", "state": "critical",
        "description": "5xx above 5 %", "metric": 0.95, "tags": ["prod", "web"],
        "time": "2023-11-14T22:13:20.000Z", "ttl": 60, "team": "ops"}
    assert schema_errors(EVENT_JSON, webhook_body(CRITICAL)) == []


def test_webhook_body_template_renders_nested_strings() -> None:
    body = compile_body({"title": "{host} {service}", "fields": ["{state}", 3, None],
                         "meta": {"source": "rillet"}}, "webhook(body=...)")
    assert webhook_body(CRITICAL, body) == {"title": "web1 http req",
                                            "fields": ["critical", 3, None],
                                            "meta": {"source": "rillet"}}
    assert webhook_body([CRITICAL, CRITICAL.evolve(host="web2")], body)[1]["title"] == \
        "web2 http req"


def test_webhook_body_template_mistakes_fail_at_load() -> None:
    with pytest.raises(ValueError, match=r"webhook\(body=...\): the template '\{host'"):
        compile_body({"a": ["{host"]}, "webhook(body=...)")


def test_json_carries_what_json_cannot() -> None:
    odd = Event(metric=float("nan"), tags=("a",), time=float("inf"))
    assert event_json(odd) == {"metric": "nan", "tags": ["a"],
                               "time": "1970-01-01T00:00:00.000Z"}


@settings(max_examples=200, deadline=None)
@given(events())
def test_every_default_webhook_body_fits_the_schema(event: Event) -> None:
    assert schema_errors(EVENT_JSON, webhook_body(event)) == []
