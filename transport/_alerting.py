"""The alerting sinks: mailer, alertmanager, pagerduty, slack, webhook.

Each is a stream you put at the end of a rule, built on the delivery layer
(:mod:`transport._delivery`): calling it queues the event and returns at once;
a trio task started with the servers delivers. Their overflow policy is
``"drop_newest"``: when the peer has been down long enough for the queue to
fill, what is already queued goes out first, and every alert dropped is
logged with its host and service and counted in ``statistics()["dropped"]``.

What each sends is built by the pure functions of :mod:`transport._messages`.
One event or a list of events (what ``rollup`` and ``coalesce`` forward) makes
one mail, one Slack message, one webhook call; PagerDuty and Alertmanager get
one alert per event.

Mail and the HTTP sinks deliver one message per attempt (``batch_size=1``), so
a message the peer refuses for good is counted alone in ``failed``; with a
larger ``batch_size`` each delivered message leaves the batch at once, so a
retry never repeats one. Alertmanager takes a batch of alerts in one request.
Credentials (a password, the PagerDuty routing key, the token in a Slack URL,
a webhook's headers) never appear in a sink's repr, and so not in logs.
"""

from __future__ import annotations

import logging
import smtplib
import ssl as ssl_module
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from streams._clock import scheduler
from streams._validate import StreamArgumentError

from ._delivery import HttpSink, NetworkSink, Rejected
from ._messages import (
    DEFAULT_ANNOTATIONS,
    DEFAULT_SUMMARY,
    AlertTracker,
    compile_body,
    compile_template,
    email_message,
    flatten,
    mail_body,
    mail_subject,
    pagerduty_event,
    pagerduty_severity,
    slack_escape,
    slack_message,
    slack_text,
    webhook_body,
)

__all__ = ["alertmanager", "mailer", "pagerduty", "slack", "webhook"]

log = logging.getLogger("rillet.alerting")

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


def _one_message_per_call(options: dict[str, Any]) -> dict[str, Any]:
    options.setdefault("batch_size", 1)
    return options


def _events_template(template: str | Callable[[Any], str] | None,
                     default: Callable[[Any], str], caller: str, joiner: str
                     ) -> Callable[[Any], str]:
    """A function of an event or list: a template is rendered per event and joined."""
    if template is None:
        return default
    if isinstance(template, str):
        render = compile_template(template, caller)
        return lambda events: joiner.join(render(e) for e in flatten(events))
    if callable(template):
        return template
    raise StreamArgumentError(
        f"{caller}: give a str.format template such as '{{host}} {{service}} is "
        f"{{state}}' or a function of the events, got {template!r}")


def _building(what: str, build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Build a payload; a failure (a user's template) rejects this alert instead of retrying."""
    try:
        return build(*args, **kwargs)
    except Exception as error:
        raise Rejected(f"building the {what} failed: {type(error).__name__}: {error}") \
            from error


class _AlertSink:
    """Mixin: a list of events (a rollup) is one queued message, not one per event."""

    __slots__ = ()
    overflow = "drop_newest"

    def __call__(self, event: Any) -> None:
        self._put(event)  # type: ignore[attr-defined]


# Mail -------------------------------------------------------------------------------


class mailer(_AlertSink, NetworkSink):
    """Mail events through an SMTP server (Riemann's ``mailer``).

    Subject and body are Riemann's defaults (hosts, services and states; then
    each event's time, line, tags, attributes and description); give
    ``subject=`` or ``body=`` as a template or a function of the events to
    change them. A list of events (from ``rollup``) is one mail.
    ``starttls=True`` upgrades the connection (Riemann's ``:tls``), ``ssl=True``
    speaks TLS from the start (port 465, Riemann's ``:ssl``); ``user`` and
    ``password`` log in.

    >>> from streams import Config, Event
    >>> from streams._config import declaring
    >>> with declaring(Config()):
    ...     email = mailer("127.0.0.1", 25, from_="rillet@example.com", to=["ops@example.com"])
    >>> email(Event(host="web1", service="http", state="critical"))
    >>> email.statistics()["queued"]
    1
    """

    __slots__ = ("_body", "_context", "_smtp", "_subject", "from_", "host", "password", "port",
                 "ssl", "starttls", "to", "user")

    def __init__(self, host: str = "127.0.0.1", port: int = 25, *, from_: str,
                 to: str | Sequence[str], subject: Any = None, body: Any = None,
                 starttls: bool = False, ssl: bool = False, user: str | None = None,
                 password: str | None = None, ssl_context: ssl_module.SSLContext | None = None,
                 **options: Any) -> None:
        caller = "mailer(host, port, *, from_, to, ...)"
        if not isinstance(host, str) or not host:
            raise StreamArgumentError(
                f"{caller}: host must be the SMTP server's name, got {host!r}")
        _check_port(port, "mailer")
        recipients = [to] if isinstance(to, str) else list(to) if isinstance(
            to, (list, tuple)) else None
        if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
            raise StreamArgumentError(
                f"mailer(to={to!r}): to must be an address or a list of "
                f"addresses, e.g. to=['ops@example.com']")
        if not isinstance(from_, str) or not from_:
            raise StreamArgumentError(
                f"mailer(from_={from_!r}): from_ must be the sender's address, "
                f"e.g. from_='rillet@example.com'")
        if starttls and ssl:
            raise StreamArgumentError(
                "mailer(starttls=True, ssl=True): choose one: starttls=True "
                "upgrades a plain connection (port 25 or 587), ssl=True is TLS "
                "from the start (port 465)")
        if (user is None) != (password is None):
            raise StreamArgumentError(
                f"mailer(user={user!r}, password=...): give both user and "
                f"password to log in, or neither")
        self.host, self.port = host, port
        self.from_, self.to = from_, recipients
        self.starttls, self.ssl = bool(starttls), bool(ssl)
        self.user, self.password = user, password
        self._context = ssl_context
        self._subject = _events_template(subject, mail_subject, "mailer(subject=...)", ", ")
        self._body = _events_template(body, mail_body, "mailer(body=...)", "\n\n\n")
        self._smtp: smtplib.SMTP | None = None
        super().__init__(**_one_message_per_call(options))

    async def send_batch(self, batch: list[Any]) -> None:
        # smtplib blocks, so it runs in a worker thread; its socket timeout
        # bounds the thread even when the delivery layer gives up waiting.
        await trio.to_thread.run_sync(self._send, batch, abandon_on_cancel=True)

    def _send(self, batch: list[Any]) -> None:
        smtp = self._smtp or self._connect()
        while batch:
            message = _building("mail", email_message, batch[0], from_=self.from_, to=self.to,
                                subject=self._subject, body=self._body)
            try:
                refused = smtp.send_message(message, from_addr=self.from_, to_addrs=self.to)
                if refused:
                    log.warning("%r: the SMTP server took the mail %r but refused some "
                                "recipients: %s", self, message["Subject"], refused)
            except smtplib.SMTPRecipientsRefused as error:
                codes = [code for code, _ in error.recipients.values()]
                raise (Rejected if all(c >= 500 for c in codes) else ConnectionError)(
                    f"the SMTP server refused the recipients: {error.recipients}") from error
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
                kind = Rejected if error.smtp_code >= 500 else ConnectionError
                raise kind(f"the SMTP server answered {error.smtp_code} "
                           f"{error.smtp_error!r}") from error
            del batch[0]  # delivered: a retry resends only the rest
        # A connection is kept only while mails wait: servers drop idle ones.
        if not self._queue:
            self._close()

    def _connect(self) -> smtplib.SMTP:
        context = self._context or ssl_module.create_default_context()
        smtp: smtplib.SMTP
        if self.ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls:
                smtp.starttls(context=context)
            if self.user is not None and self.password is not None:
                try:
                    smtp.login(self.user, self.password)
                except smtplib.SMTPAuthenticationError as error:
                    raise Rejected(f"the SMTP server refused user {self.user!r}: "
                                   f"{error.smtp_code} {error.smtp_error!r}") from error
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    async def disconnect(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


def _check_port(port: Any, caller: str) -> None:
    from ._server import _check_port as check

    check(port, caller)


# Alertmanager -----------------------------------------------------------------------


class alertmanager(_AlertSink, HttpSink):
    """Post alerts to a Prometheus Alertmanager (API v2, ``/api/v2/alerts``).

    An event whose state is not ok fires the alert of its host and service
    (labels ``alertname`` = the service, ``host``, ``service`` and ``labels``);
    state "ok" or "expired" (the index's expiry) resolves it. Firing alerts
    are sent again every ``resend`` seconds, as Prometheus does, so
    Alertmanager keeps them while no new event comes (a ``changed_state`` in
    front sends only changes); one whose latest event outlived its ttl is
    resolved then. ``annotations`` maps names to templates, added to the
    defaults: ``summary`` ("host service is state (metric)"), ``description``
    and the state.

    >>> from streams import Config, Event
    >>> from streams._config import declaring
    >>> with declaring(Config()):
    ...     alerts = alertmanager("http://127.0.0.1:9093", labels={"team": "ops"})
    >>> alerts(Event(host="web1", service="http", state="critical", time=0))
    >>> alerts.statistics()["queued"], alerts.statistics()["firing"]
    (1, 1)
    """

    __slots__ = ("_tracker", "resend")

    def __init__(self, url: str = "http://127.0.0.1:9093", *,
                 labels: Mapping[str, Any] | None = None,
                 annotations: Mapping[str, Any] | None = None,
                 generator_url: str | None = None, resend: float = 60,
                 max_alerts: int = 10_000, **options: Any) -> None:
        if labels is not None and not (isinstance(labels, Mapping) and all(
                isinstance(k, str) and (isinstance(v, str) or callable(v))
                for k, v in labels.items())):
            raise StreamArgumentError(
                f"alertmanager(labels={labels!r}): labels map names to a constant "
                f"string or a function of the event, e.g. labels={{'team': 'ops', "
                f"'env': lambda e: e.get('env')}}")
        if annotations is not None and not isinstance(annotations, Mapping):
            raise StreamArgumentError(
                f"alertmanager(annotations={annotations!r}): annotations map "
                f"names to templates, e.g. annotations={{'summary': "
                f"'{{host}} {{service}} is {{state}}'}}")
        if isinstance(resend, bool) or not isinstance(resend, (int, float)) or \
                not 0 < resend < float("inf"):
            raise StreamArgumentError(
                f"alertmanager(resend={resend!r}): resend must be a positive "
                f"number of seconds, e.g. resend=60")
        compiled = {str(name): compile_template(template, f"alertmanager(annotations="
                                                          f"{{{name!r}: ...}})")
                    for name, template in {**DEFAULT_ANNOTATIONS, **(annotations or {})}.items()}
        self.resend = resend
        self._tracker = AlertTracker(labels=labels, annotations=compiled,
                                     generator_url=generator_url, max_alerts=max_alerts)
        super().__init__(url.rstrip("/"), **options)

    def __call__(self, event: Any) -> None:
        for one in flatten(event):
            try:
                alerts = self._tracker.step(one, scheduler().now())
            except Exception as error:  # a user's label function or template
                self.failed += 1
                log.error("%r: could not build the alert for %r: %s", self, one, error)
                continue
            for alert in alerts:
                self._put(alert)

    async def send_batch(self, batch: list[Any]) -> None:
        await self.post(f"{self.url}/api/v2/alerts", json=list(batch))

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._remind)
            await super().serve(runtime, task_status=task_status)

    async def _remind(self) -> None:
        while True:
            await trio.sleep(self.resend)
            if self._queue or self._batch:
                # Still delivering (or the peer is down): reminders would only
                # pile up ahead of new alerts; the next round sends them.
                continue
            for alert in self._tracker.firing(scheduler().now())[:self.queue_size]:
                self._put(alert)

    def statistics(self) -> dict[str, Any]:
        return {**super().statistics(), "firing": len(self._tracker),
                "forgotten": self._tracker.forgotten}


# PagerDuty --------------------------------------------------------------------------------


class pagerduty(_AlertSink, HttpSink):
    """Trigger and resolve PagerDuty alerts (Events API v2).

    A state other than ok triggers; "ok" or "expired" resolves. The dedup
    key is "host service", so a resolve closes what the trigger opened. The
    summary is a template (default "host service is state (metric)"); the
    severity is the state when PagerDuty knows it (critical, error, warning,
    info), else critical; give ``severity=`` a function of the event to map
    your states. A list of events sends each.

    >>> from streams import Config
    >>> from streams._config import declaring
    >>> with declaring(Config()):
    ...     pager = pagerduty("0123456789abcdef0123456789abcdef")
    >>> pager  # the routing key is a credential
    pagerduty('<hidden>')
    """

    __slots__ = ("_dedup_key", "_severity", "_summary", "routing_key")

    def __init__(self, routing_key: str, *, url: str = PAGERDUTY_URL,
                 summary: str | Callable[[Any], str] = DEFAULT_SUMMARY,
                 severity: Callable[[Any], str] | None = None,
                 dedup_key: Callable[[Any], str] | None = None, **options: Any) -> None:
        if not isinstance(routing_key, str) or len(routing_key) != 32:
            raise StreamArgumentError(
                f"pagerduty(routing_key={routing_key!r}): the routing key is the "
                f"32-character Integration Key of an Events API v2 integration "
                f"(the service's Integrations tab)")
        for name, value in (("severity", severity), ("dedup_key", dedup_key)):
            if value is not None and not callable(value):
                raise StreamArgumentError(
                    f"pagerduty({name}={value!r}): {name} must be a function of "
                    f"the event")
        self.routing_key = routing_key
        self._summary = compile_template(summary, "pagerduty(summary=...)")
        self._severity = severity or (lambda event: pagerduty_severity(event.state))
        self._dedup_key = dedup_key
        super().__init__(url, **_one_message_per_call(options))

    async def send_batch(self, batch: list[Any]) -> None:
        now = scheduler().now()
        while batch:
            for event in flatten(batch[0]):
                body = _building("PagerDuty event", pagerduty_event, event,
                                 routing_key=self.routing_key, now=now, summary=self._summary,
                                 severity=self._severity, dedup_key=self._dedup_key)
                await self.post(json=body)
            del batch[0]

    def __repr__(self) -> str:
        # The routing key lets anyone page the service: keep it out of logs.
        return super().__repr__().replace(repr(self.routing_key), "'<hidden>'", 1)


# Slack ---------------------------------------------------------------------------------------


class slack(_AlertSink, HttpSink):
    """Post to a Slack channel through an incoming webhook.

    ``text`` is a template (Slack's mrkdwn: &, < and > in the event's values
    are escaped, the template's own markup is kept) or a function of the
    event, which escapes with ``slack_escape`` itself; by default what
    happened in bold, the description, the time and the tags. A list of
    events is one message.
    ``channel``, ``username`` and ``icon_emoji`` are sent when given (legacy
    webhooks honour them).

    >>> from streams import Config
    >>> from streams._config import declaring
    >>> with declaring(Config()):
    ...     chat = slack("https://hooks.slack.com/services/T000/B000/XXXX", channel="#ops")
    >>> chat, chat.statistics()["overflow"]
    (slack('https://hooks.slack.com/services/T000/B000/<hidden>', channel='#ops'), 'drop_newest')
    """

    __slots__ = ("_text", "channel", "icon_emoji", "username")

    def __init__(self, webhook_url: str, *, text: str | Callable[[Any], str] = slack_text,
                 channel: str | None = None, username: str | None = None,
                 icon_emoji: str | None = None, **options: Any) -> None:
        for name, value in (("channel", channel), ("username", username),
                            ("icon_emoji", icon_emoji)):
            if value is not None and not isinstance(value, str):
                raise StreamArgumentError(
                    f"slack({name}={value!r}): {name} must be a string")
        if icon_emoji is not None and not (icon_emoji.startswith(":")
                                           and icon_emoji.endswith(":")):
            raise StreamArgumentError(
                f"slack(icon_emoji={icon_emoji!r}): write the emoji between "
                f"colons, e.g. icon_emoji=':rotating_light:'")
        self._text = compile_template(text, "slack(text=...)", escape=slack_escape)
        self.channel, self.username, self.icon_emoji = channel, username, icon_emoji
        super().__init__(webhook_url, **_one_message_per_call(options))

    async def send_batch(self, batch: list[Any]) -> None:
        while batch:
            message = _building("Slack message", slack_message, batch[0], text=self._text,
                                channel=self.channel, username=self.username,
                                icon_emoji=self.icon_emoji)
            await self.post(json=message)
            del batch[0]

    def __repr__(self) -> str:
        # The webhook URL is the credential: show where it goes, not its token.
        return super().__repr__().replace(repr(self.url), repr(_without_token(self.url)), 1)


# Webhook --------------------------------------------------------------------------------------


class webhook(_AlertSink, HttpSink):
    """POST each event as JSON to ``url``; ``body`` shapes the JSON.

    By default the body is the event (its fields and attributes, the time in
    ISO 8601). ``body`` may be a dict (or list) whose strings are templates,
    or a function of the event returning JSON-able data. A list of events
    posts a JSON array. ``headers`` are sent with every request (a token).

    >>> from streams import Config
    >>> from streams._config import declaring
    >>> with declaring(Config()):
    ...     hook = webhook("http://127.0.0.1:8080/alerts", body={"text": "{host} is {state}"})
    >>> hook
    webhook('http://127.0.0.1:8080/alerts', body={'text': '{host} is {state}'})
    """

    __slots__ = ("_body",)
    secret_options = frozenset({"headers", "token", "password"})  # headers carry tokens

    def __init__(self, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
                 **options: Any) -> None:
        self._body = None if body is None else compile_body(body, "webhook(body=...)")
        super().__init__(url, headers=headers, **_one_message_per_call(options))

    async def send_batch(self, batch: list[Any]) -> None:
        while batch:
            document = _building("webhook body", webhook_body, batch[0], self._body)
            await self.post(json=document)
            del batch[0]


def _without_token(url: str) -> str:
    """A Slack webhook URL with its secret (the last path segment) hidden."""
    head, _, _ = url.rpartition("/")
    return f"{head}/<hidden>" if head.count("/") > 2 else url
