"""What the alerting sinks say, and in which shape: templates and payloads, no I/O.

Every function here is pure: an event (or a list of events, as ``rollup``
forwards) in, a message out. The sinks in :mod:`transport._alerting` only
deliver what these build, so everything a provider will see is tested here
without a network.

Templates are ``str.format`` strings over the event's fields and attributes,
or functions of the event returning text:

>>> from streams import Event
>>> text = compile_template("{host} {service} is {state} ({metric})", "example")
>>> text(Event(host="web1", service="http", state="critical", metric=0.5))
'web1 http is critical (0.5)'
>>> text(Event(service="http"))            # absent fields render empty
' http is  ()'
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from streams._core import is_expired
from streams._event import Event, effective_ttl
from streams._validate import StreamArgumentError

__all__ = [
    "DEFAULT_ANNOTATIONS", "DEFAULT_SUMMARY", "AlertTracker", "alertmanager_alert",
    "compile_template", "email_message", "event_json", "iso_time", "mail_body",
    "mail_subject", "pagerduty_event", "pagerduty_severity", "resolves", "slack_message",
    "slack_escape", "slack_text",
    "webhook_body",
]

#: One line naming what happened, as Riemann's PagerDuty sink writes it.
DEFAULT_SUMMARY = "{host} {service} is {state} ({metric})"
#: Alertmanager's default annotations, beside the state (receivers' templates read them).
DEFAULT_ANNOTATIONS = {"summary": DEFAULT_SUMMARY, "description": "{description}"}
#: States that end an alert: back to normal, or gone from the index.
RESOLVING_STATES = frozenset({"ok", "expired"})

Template = str | Callable[[Any], str]
Events = Any  # one event, or a list of them (rollup, coalesce)

_SAMPLE = Event(host="web1", service="http req", state="critical", metric=1.5, time=0,
                description="sample", tags=("a",), ttl=60)


# Templates -------------------------------------------------------------------


class _EventFormatter(string.Formatter):
    """``str.format`` over an event: fields by name, absent ones empty, times ISO 8601.

    ``escape`` applies to the values only, so a template's own markup (a
    Slack mention) stays as written.
    """

    def __init__(self, escape: Callable[[str], str] | None = None) -> None:
        self.escape = escape

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        event = kwargs["event"]
        if not isinstance(key, str):
            raise ValueError("positional fields ({} or {0}) have no meaning in an event "
                             "template; name a field, e.g. {host}")
        if key == "time":
            return None if event.time is None else iso_time(event.time)
        if key == "tags":
            return ", ".join(event.tags) if event.tags else None
        return event.get(key)

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
                  ) -> Any:
        if "." in field_name or "[" in field_name:
            raise ValueError(f"{{{field_name}}} reaches inside a value; name a field or an "
                             f"attribute only")
        return super().get_field(field_name, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        # An absent field is empty whatever its format: "{metric:.1f}" of an
        # event without a metric must not fail the alert.
        if value is None:
            return ""
        text = super().format_field(value, format_spec)
        return text if self.escape is None else self.escape(text)


_FORMATTER = _EventFormatter()


def compile_template(template: Template, caller: str,
                     escape: Callable[[str], str] | None = None) -> Callable[[Any], str]:
    """A function of one event returning text, checked now so a mistake fails at load.

    >>> compile_template("{host", "slack(text=...)")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    streams.StreamArgumentError: slack(text=...): the template '{host' is not a valid
    str.format template (expected '}' before end of string); write fields as {host}, ...
    """
    if callable(template):
        return template
    if not isinstance(template, str):
        raise StreamArgumentError(
            f"{caller}: the template must be a str.format string or a function "
            f"of the event returning text, got {template!r}")
    try:
        _FORMATTER.vformat(template, (), {"event": _SAMPLE})
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as error:
        raise StreamArgumentError(
            f"{caller}: the template {template!r} is not a valid str.format template "
            f"({error}); write fields as {{host}}, {{service}}, {{state}}, {{metric}}, "
            f"{{description}}, {{time}}, {{tags}} or an attribute name, and double braces "
            f"({{{{ }}}}) for literal ones"
        ) from None

    formatter = _FORMATTER if escape is None else _EventFormatter(escape)

    def render(event: Any) -> str:
        return formatter.vformat(template, (), {"event": event})

    render.__qualname__ = f"template({template!r})"
    return render


def iso_time(time: float) -> str:
    """RFC 3339 / ISO 8601 UTC time with milliseconds, as Alertmanager and PagerDuty take it.

    >>> iso_time(0), iso_time(1700000000.25)
    ('1970-01-01T00:00:00.000Z', '2023-11-14T22:13:20.250Z')
    """
    return datetime.fromtimestamp(time, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _valid_time(time: Any, now: float) -> float:
    """The event's time when a calendar can show it, else ``now``."""
    if isinstance(time, (int, float)) and math.isfinite(time) and -62135596800 < time \
            < 253402300799:
        return float(time)
    return now


def flatten(events: Events) -> list[Any]:
    """A list of events, whether one event or a (nested) list came in."""
    if isinstance(events, (list, tuple)):
        out: list[Any] = []
        for item in events:
            out.extend(flatten(item))
        return out
    return [events]


def _json_value(value: Any) -> Any:
    """A value JSON can carry: tuples as lists, non-finite floats as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def event_json(event: Any) -> dict[str, Any]:
    """The event as a JSON object: its non-empty fields and attributes, time in ISO 8601.

    >>> event_json(Event(host="a", metric=1, tags=["x"], time=0, team="ops"))
    {'host': 'a', 'metric': 1, 'tags': ['x'], 'time': '1970-01-01T00:00:00.000Z', 'team': 'ops'}
    """
    out = {k: _json_value(v) for k, v in event.as_dict().items()}
    if "time" in out:
        out["time"] = iso_time(_valid_time(event.time, 0))
    return out


# Mail: Riemann's subject and body ----------------------------------------------


def _human_uniq(values: Iterable[Any], kind: str) -> str | None:
    # Riemann's human-uniq: one, "a and b", up to four listed, then a count.
    distinct = list(dict.fromkeys(values))
    if not distinct:
        return None
    if len(distinct) == 1:
        return str(distinct[0])
    if len(distinct) == 2:
        return f"{distinct[0]} and {distinct[1]}"
    if len(distinct) <= 4:
        return ", ".join(str(v) for v in distinct)
    return f"{len(distinct)} {kind}"


def mail_subject(events: Events) -> str:
    """Riemann's default subject: the hosts, services and states, summarised.

    >>> mail_subject(Event(host="web1", service="http", state="critical"))
    'web1 http critical'
    >>> mail_subject([Event(host=h, service="http", state="critical") for h in "abcde"])
    '5 hosts http critical'
    """
    events = flatten(events)
    parts = [
        _human_uniq((e.host for e in events if e.host is not None), "hosts"),
        _human_uniq((e.service for e in events if e.service is not None), "services"),
        _human_uniq((e.state for e in events if e.state is not None), "states"),
    ]
    return " ".join(p for p in parts if p is not None)


def _riemann_date(time: float) -> str:
    # java.util.Date's toString, which Riemann's body prints; rillet says UTC.
    return datetime.fromtimestamp(time, UTC).strftime("%a %b %d %H:%M:%S UTC %Y")


def _clojure(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def mail_body(events: Events) -> str:
    """Riemann's default body: for each event its time, line, tags, attributes, description.

    >>> print(mail_body(Event(host="web1", service="http", state="critical", metric=0.5,
    ...                       time=0, tags=["prod"], team="ops", description="500s")))
    At Thu Jan 01 00:00:00 UTC 1970
    web1 http critical (0.5)
    Tags: [prod]
    Custom Attributes: {:team "ops"}
    <BLANKLINE>
    500s
    """
    parts = []
    for event in flatten(events):
        attributes = ", ".join(f":{k} {_clojure(v)}" for k, v in event.attributes.items())
        time = _valid_time(event.time, 0)
        parts.append(
            f"At {_riemann_date(time)}\n"
            f"{_text(event.host)} {_text(event.service)} {_text(event.state)} "
            f"({_text(event.metric)})\n"
            f"Tags: [{', '.join(event.tags)}]\n"
            f"Custom Attributes: {{{attributes}}}\n\n"
            f"{_text(event.description)}"
        )
    return "\n\n\n".join(parts)


def _text(value: Any) -> str:
    # Clojure's str of nil is the empty string.
    return "" if value is None else str(value)


def email_message(events: Events, *, from_: str, to: Sequence[str],
                  subject: Callable[[Any], str] = mail_subject,
                  body: Callable[[Any], str] = mail_body) -> EmailMessage:
    """The mail for an event or a list of events (one mail either way).

    >>> m = email_message(Event(host="a", service="b", state="c", time=0),
    ...                   from_="rillet@example.com", to=["ops@example.com"])
    >>> m["From"], m["To"], m["Subject"]
    ('rillet@example.com', 'ops@example.com', 'a b c')
    """
    message = EmailMessage()
    message["From"] = from_
    message["To"] = ", ".join(to)
    message["Subject"] = subject(events)
    message.set_content(body(events))
    return message


# Alertmanager API v2 ------------------------------------------------------------


def resolves(event: Any) -> bool:
    """Does this event end its alert? State "ok", or "expired" (the index's expiry).

    Decided by the state alone, when the event arrives: an alert queued while
    the peer is down must not turn into a resolve because it waited.
    """
    return event.state in RESOLVING_STATES


def _label_value(value: Any) -> str:
    return "" if value is None else str(value)


def alertmanager_alert(event: Any, *, now: float, ends_at: float | None = None,
                       starts_at: float | None = None,
                       labels: Mapping[str, Any] | None = None,
                       annotations: Mapping[str, Callable[[Any], str]] | None = None,
                       generator_url: str | None = None) -> dict[str, Any]:
    """One postable alert of Alertmanager's API v2 (``POST /api/v2/alerts``).

    Labels (the alert's identity) are alertname, host and service plus
    ``labels`` (each a constant or a function of the event); the state goes to
    the annotations, so a change of state updates the alert instead of
    starting another. A resolved alert has an ``ends_at``.

    >>> a = alertmanager_alert(Event(host="web1", service="http", state="critical", time=0),
    ...                        now=10)
    >>> a["labels"], a["startsAt"], "endsAt" in a
    ({'alertname': 'http', 'host': 'web1', 'service': 'http'}, '1970-01-01T00:00:00.000Z', False)
    """
    all_labels = {"alertname": _label_value(event.service) or "rillet",
                  "host": _label_value(event.host), "service": _label_value(event.service)}
    for name, value in (labels or {}).items():
        all_labels[name] = _label_value(value(event) if callable(value) else value)
    rendered = {"state": _label_value(event.state)}
    for name, template in (annotations or {}).items():
        rendered[name] = template(event)
    start = _valid_time(starts_at if starts_at is not None else event.time, now)
    alert: dict[str, Any] = {
        "labels": {k: v for k, v in all_labels.items() if v != ""},
        "annotations": {k: v for k, v in rendered.items() if v != ""},
        "startsAt": iso_time(start),
    }
    if ends_at is not None:
        # Alertmanager refuses an alert that ends before it starts (a resolve
        # stamped earlier than the event that fired).
        alert["endsAt"] = iso_time(max(_valid_time(ends_at, now), start))
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


class AlertTracker:
    """Which alerts are firing, so a resolve carries the labels and start of its alert.

    The pure part of the ``alertmanager`` sink: ``step(event, now)`` returns
    the postable alerts the event causes (none for a resolve of an alert that
    is not firing); ``firing(now)`` lists every firing alert to send again, as
    Alertmanager resolves an alert it is not reminded of, and resolves those
    whose latest event outlived its ttl. At most ``max_alerts`` are tracked;
    beyond, the oldest is forgotten (and counted).

    >>> t = AlertTracker()
    >>> [a["annotations"]["state"] for a in t.step(Event(host="a", service="s",
    ...                                                   state="critical", time=0), now=0)]
    ['critical']
    >>> [("endsAt" in a) for a in t.step(Event(host="a", service="s", state="ok", time=5), 5)]
    [True]
    >>> t.step(Event(host="a", service="s", state="ok", time=6), 6)
    []
    """

    def __init__(self, *, labels: Mapping[str, Any] | None = None,
                 annotations: Mapping[str, Callable[[Any], str]] | None = None,
                 generator_url: str | None = None, max_alerts: int = 10_000) -> None:
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.generator_url = generator_url
        self.max_alerts = max_alerts
        # (host, service) -> (first firing time, latest firing event)
        self._firing: dict[tuple[Any, Any], tuple[float, Any]] = {}
        self.forgotten = 0

    def _alert(self, event: Any, now: float, ends_at: float | None, starts_at: float | None
               ) -> dict[str, Any]:
        return alertmanager_alert(event, now=now, ends_at=ends_at, starts_at=starts_at,
                                  labels=self.labels, annotations=self.annotations,
                                  generator_url=self.generator_url)

    def step(self, event: Any, now: float) -> list[dict[str, Any]]:
        key = (event.host, event.service)
        firing = self._firing
        if resolves(event):
            previous = firing.pop(key, None)
            if previous is None:
                return []
            starts_at, fired = previous
            # The resolve carries the firing alert's labels: Alertmanager
            # matches alerts by their label set.
            resolved = fired.evolve(state=event.state, description=event.description)
            return [self._alert(resolved, now, _valid_time(event.time, now), starts_at)]
        starts_at = firing[key][0] if key in firing else _valid_time(event.time, now)
        firing.pop(key, None)
        firing[key] = (starts_at, event)
        if len(firing) > self.max_alerts:
            del firing[next(iter(firing))]
            self.forgotten += 1
        return [self._alert(event, now, None, starts_at)]

    def firing(self, now: float) -> list[dict[str, Any]]:
        alerts = []
        for key, (starts_at, event) in list(self._firing.items()):
            if is_expired(event, now):
                del self._firing[key]
                ends_at = _valid_time(event.time, now) + effective_ttl(event.ttl)
                alerts.append(self._alert(event.evolve(state="expired"), now, ends_at,
                                          starts_at))
            else:
                alerts.append(self._alert(event, now, None, starts_at))
        return alerts

    def __len__(self) -> int:
        return len(self._firing)


# PagerDuty Events API v2 -----------------------------------------------------------

_PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")


def pagerduty_severity(state: Any) -> str:
    """PagerDuty's severity for a state: the state itself when PagerDuty knows it, else critical.

    >>> pagerduty_severity("warning"), pagerduty_severity("warn"), pagerduty_severity("down")
    ('warning', 'warning', 'critical')
    """
    if state in _PAGERDUTY_SEVERITIES:
        return str(state)
    return "warning" if state == "warn" else "critical"


def pagerduty_event(event: Any, *, routing_key: str, now: float,
                    summary: Callable[[Any], str] | None = None,
                    severity: Callable[[Any], str] = lambda e: pagerduty_severity(e.state),
                    dedup_key: Callable[[Any], str] | None = None) -> dict[str, Any]:
    """An Events API v2 event: trigger, or resolve when the state is ok or expired.

    The dedup key is "host service" (Riemann's incident key), so the resolve
    closes the alert the trigger opened.

    >>> e = pagerduty_event(Event(host="web1", service="http", state="ok", time=0),
    ...                     routing_key="k" * 32, now=0)
    >>> e["event_action"], e["dedup_key"], "payload" in e
    ('resolve', 'web1 http', False)
    """
    key = (dedup_key(event) if dedup_key else f"{_text(event.host)} {_text(event.service)}")
    body: dict[str, Any] = {"routing_key": routing_key,
                            "event_action": "resolve" if resolves(event) else "trigger",
                            "dedup_key": key[:255]}
    if body["event_action"] == "trigger":
        text = (summary or _DEFAULT_SUMMARY)(event)
        body["payload"] = {
            "summary": text[:1024] or "rillet alert",
            "source": _text(event.host) or "rillet",
            "severity": severity(event),
            "timestamp": iso_time(_valid_time(event.time, now)),
            "custom_details": event_json(event),
        }
        if event.service is not None:
            body["payload"]["component"] = str(event.service)
        body["client"] = "rillet"
    return body


_DEFAULT_SUMMARY = compile_template(DEFAULT_SUMMARY, "DEFAULT_SUMMARY")


# Slack incoming webhooks -------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's message formatting treats &, < and > as control characters.

    >>> slack_escape("a<b> & c")
    'a&lt;b&gt; &amp; c'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(event: Any) -> str:
    """Slack's default text: what happened in bold, the description, then time and tags.

    >>> print(slack_text(Event(host="web1", service="http", state="critical", metric=0.5,
    ...                        time=0, tags=["prod"], description="5xx")))
    *web1 http* is *critical* (0.5)
    5xx
    1970-01-01T00:00:00.000Z, tags: prod
    """
    metric = "" if event.metric is None else f" ({event.metric})"
    lines = [f"*{_text(event.host)} {_text(event.service)}* is *{_text(event.state)}*{metric}"]
    if event.description:
        lines.append(str(event.description))
    details = [] if event.time is None else [iso_time(_valid_time(event.time, 0))]
    if event.tags:
        details.append(f"tags: {', '.join(event.tags)}")
    if details:
        lines.append(", ".join(details))
    return slack_escape("\n".join(lines))


def slack_message(events: Events, *, text: Callable[[Any], str],
                  channel: str | None = None, username: str | None = None,
                  icon_emoji: str | None = None) -> dict[str, Any]:
    """An incoming-webhook message: a block of text per event (a rollup gives several).

    >>> text = compile_template("<!here> {host} is {state}", "t", escape=slack_escape)
    >>> slack_message(Event(host="a<b", service="s", state="ok"), text=text)
    {'text': '<!here> a&lt;b is ok'}
    """
    message: dict[str, Any] = {
        "text": "\n".join(text(e).strip() for e in flatten(events))[:40_000]
        or "(empty alert)",
    }
    for name, value in (("channel", channel), ("username", username),
                        ("icon_emoji", icon_emoji)):
        if value is not None:
            message[name] = value
    return message


# Generic webhook ------------------------------------------------------------------------


def webhook_body(events: Events, body: Callable[[Any], Any] | Mapping[str, Any] | None = None
                 ) -> Any:
    """The JSON a webhook posts: ``body`` rendered for the event, or a list for a list.

    ``body`` is a function of the event returning JSON-able data, or a dict
    whose string values are templates; by default the event itself.

    >>> webhook_body(Event(host="a", state="critical"), {"text": "{host} is {state}", "n": 1})
    {'text': 'a is critical', 'n': 1}
    """
    build: Callable[[Any], Any]
    if body is None:
        build = event_json
    elif callable(body):
        build = body
    else:
        build = compile_body(body, "webhook(body=...)")
    if isinstance(events, (list, tuple)):
        return [_json_value(build(e)) for e in flatten(events)]
    return _json_value(build(events))


def compile_body(template: Any, caller: str) -> Callable[[Any], Any]:
    """A function building JSON from a nested dict/list whose strings are templates."""
    if isinstance(template, str):
        return compile_template(template, caller)
    if callable(template):
        return template  # type: ignore[no-any-return]
    if isinstance(template, Mapping):
        parts = {str(k): compile_body(v, caller) for k, v in template.items()}
        return lambda event: {k: part(event) for k, part in parts.items()}
    if isinstance(template, (list, tuple)):
        items = [compile_body(v, caller) for v in template]
        return lambda event: [item(event) for item in items]
    constant = _json_value(template)
    return lambda event: constant
