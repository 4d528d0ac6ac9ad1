"""The peers the alerting sinks talk to in the tests.

- :class:`SmtpPeer`: a real SMTP server (aiosmtpd, in-process, its own
  thread and port), with STARTTLS (a certificate from trustme) and AUTH LOGIN.
- :class:`AlertmanagerPeer`: Debian's prometheus-alertmanager, started on a
  free port; its API v2 is read back.
- :class:`ProviderPeer`: a local HTTP server (the standard library's) that
  answers as PagerDuty's Events API v2, a Slack incoming webhook and a
  generic webhook would, and validates every payload against the provider's
  documented schema, written down below from the providers' public API docs.

Each can be told to fail: refuse, answer slowly, answer 5xx.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from _peers import Process, free_port
from conftest import peer_unavailable, require_binary

# Provider schemas ------------------------------------------------------------------
#
# PagerDuty Events API v2, "Send an alert event" (developer.pagerduty.com, and the
# OpenAPI document PagerDuty publishes in its api-schema repository,
# reference/events-v2/openapiv3.json): routing_key and event_action are required;
# event_action is trigger, acknowledge or resolve; dedup_key (at most 255
# characters) is required unless the action is trigger; a trigger needs a payload
# with summary (at most 1024 characters), source and severity (critical, error,
# warning or info); timestamp is ISO 8601; custom_details is an object. The
# routing key is the 32-character integration key (a wrong length is the API's own
# 400 example).
PAGERDUTY_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "additionalProperties": False,
    "properties": {
        "routing_key": {"type": "string", "minLength": 32, "maxLength": 32},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "client": {"type": "string"},
        "client_url": {"type": "string"},
        "links": {"type": "array", "items": {"type": "object", "required": ["href"]}},
        "images": {"type": "array", "items": {"type": "object", "required": ["src"]}},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "additionalProperties": False,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string", "minLength": 1},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
        },
    },
    "if": {"properties": {"event_action": {"const": "trigger"}}},
    "then": {"required": ["payload"]},
    "else": {"required": ["dedup_key"]},
}

# Slack incoming webhooks (api.slack.com/messaging/webhooks and the message
# payload reference): a JSON body with text, or blocks (at most 50, each with a
# type), or legacy attachments; text is cut beyond 40,000 characters; channel,
# username, icon_emoji and icon_url are honoured by legacy webhooks; mrkdwn is a
# boolean. Errors are plain-text codes such as invalid_payload and no_text.
SLACK_MESSAGE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["text"]}, {"required": ["blocks"]}, {"required": ["attachments"]}],
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 40_000},
        "blocks": {"type": "array", "maxItems": 50,
                   "items": {"type": "object", "required": ["type"]}},
        "attachments": {"type": "array", "items": {"type": "object"}},
        "mrkdwn": {"type": "boolean"},
        "thread_ts": {"type": "string"},
        "channel": {"type": "string"},
        "username": {"type": "string"},
        "icon_emoji": {"type": "string", "pattern": "^:[^:\\s]+:$"},
        "icon_url": {"type": "string"},
    },
}

# rillet's default webhook body: the event as JSON (fields, attributes, ISO time).
EVENT_JSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "host": {"type": "string"}, "service": {"type": "string"},
        "state": {"type": "string"}, "description": {"type": "string"},
        "metric": {"type": "number"}, "ttl": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "time": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": {"type": "string"},
}

_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_iso_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value


def schema_errors(schema: dict[str, Any], document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, format_checker=_FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(document)]


# The provider server -------------------------------------------------------------------


class ProviderPeer:
    """PagerDuty, Slack and a webhook on one local HTTP server that checks every payload.

    Paths: ``/v2/enqueue`` (PagerDuty), ``/services/...`` (Slack), anything
    else is a webhook whose schema is ``webhook_schema``. ``fail_with`` makes
    every answer that status; ``delay`` answers late.
    """

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.generation = 0
        self.fail_with: int | None = None
        self.delay = 0.0
        self.webhook_schema: dict[str, Any] = EVENT_JSON
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                generation = peer.generation
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if peer.delay:
                    time.sleep(peer.delay)
                status, reply, content_type = peer.answer(self.path, dict(self.headers), raw,
                                                          generation)
                body = reply.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, path: str, headers: dict[str, str], raw: bytes, generation: int
               ) -> tuple[int, str, str]:
        errors: list[str] = []
        content_type = headers.get("Content-Type", "")
        try:
            document = json.loads(raw)
        except ValueError:
            document, errors = None, ["the body is not JSON"]
        if not content_type.startswith("application/json"):
            errors.append(f"Content-Type is {content_type!r}, not application/json")
        if path == "/v2/enqueue":
            kind, schema = "pagerduty", PAGERDUTY_EVENT
        elif path.startswith("/services/"):
            kind, schema = "slack", SLACK_MESSAGE
        else:
            kind, schema = "webhook", self.webhook_schema
        if document is not None:
            errors += schema_errors(schema, document)
        with self.lock:
            # A request that came in before reset() (a slow answer to an earlier
            # test) is not this test's.
            if generation == self.generation:
                self.requests.append({"kind": kind, "path": path, "headers": headers,
                                      "json": document, "errors": errors})
        if self.fail_with is not None:
            return self.fail_with, "server error", "text/plain"
        if kind == "pagerduty":
            if errors:
                return 400, json.dumps({"status": "invalid event",
                                        "message": "Event object is invalid",
                                        "errors": errors}), "application/json"
            return 202, json.dumps({"status": "success", "message": "Event processed",
                                    "dedup_key": document.get("dedup_key", "generated")}), \
                "application/json"
        if kind == "slack":
            return (400, "invalid_payload", "text/plain") if errors else (200, "ok",
                                                                           "text/plain")
        return (400, "; ".join(errors), "text/plain") if errors else (200, "{}",
                                                                       "application/json")

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["kind"] == kind]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.generation += 1
        self.fail_with = None
        self.delay = 0.0
        self.webhook_schema = EVENT_JSON

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# SMTP -------------------------------------------------------------------------------------


class SmtpPeer:
    """aiosmtpd on a free port: records every mail; STARTTLS and AUTH LOGIN on demand."""

    USER, PASSWORD = "rillet", "s3cret"

    def __init__(self, *, tls: bool = False, auth: bool = False, implicit_tls: bool = False,
                 port: int = 0) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[dict[str, Any]] = []
        self.reply = "250 OK"
        self.delay = 0.0
        self.logins: list[str] = []
        peer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if peer.delay:
                    await asyncio.sleep(peer.delay)
                if peer.reply.startswith("250"):
                    peer.messages.append({
                        "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                        "content": envelope.content,
                        "tls": server.transport.get_extra_info("ssl_object") is not None,
                        "login": getattr(session, "auth_data", None),
                    })
                return peer.reply

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> Any:
            ok = isinstance(auth_data, LoginPassword) and \
                auth_data.login == self.USER.encode() and \
                auth_data.password == self.PASSWORD.encode()
            if ok:
                peer.logins.append(mechanism)
            return AuthResult(success=ok, handled=False)

        kwargs: dict[str, Any] = {}
        self.ca: Any = None
        if tls or implicit_tls:
            import trustme

            self.ca = trustme.CA()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
            if implicit_tls:  # TLS from the first byte, as on port 465
                kwargs.update(ssl_context=context)
            else:
                kwargs.update(tls_context=context, require_starttls=True)
        if auth:
            kwargs.update(authenticator=authenticator, auth_require_tls=tls,
                          auth_exclude_mechanism=["PLAIN"])
        self.port = port or free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     ready_timeout=10, **kwargs)
        try:
            self.controller.start()
        except Exception as error:
            peer_unavailable(f"aiosmtpd could not start on 127.0.0.1:{self.port}: {error}")

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this server's test CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def reset(self) -> None:
        self.messages.clear()
        self.logins.clear()
        self.reply = "250 OK"
        self.delay = 0.0

    def close(self) -> None:
        self.controller.stop()


# Alertmanager ---------------------------------------------------------------------------

_ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1h
receivers:
  - name: "null"
"""


class AlertmanagerPeer(Process):
    """Debian's prometheus-alertmanager on a free port, with its own storage directory."""

    def __init__(self, port: int = 0) -> None:
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        self.directory = tempfile.TemporaryDirectory(prefix="rillet-alertmanager-")
        root = Path(self.directory.name)
        (root / "alertmanager.yml").write_text(_ALERTMANAGER_CONFIG)
        self.port = port or free_port()
        super().__init__(
            "prometheus-alertmanager",
            [binary, f"--config.file={root / 'alertmanager.yml'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             f"--storage.path={root / 'data'}"],
            root / "log", [self.port], env={"HOME": str(root)})
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """The active alerts Alertmanager holds whose labels match."""
        filters = [f'{k}="{v}"' for k, v in labels.items()]
        reply = httpx.get(f"{self.url}/api/v2/alerts", params={"filter": filters}, timeout=5)
        reply.raise_for_status()
        return list(reply.json())

    def close(self) -> None:
        self.stop()
        self.directory.cleanup()


def peers_fixture(factory: Any) -> Iterator[Any]:
    peer = factory()
    try:
        yield peer
    finally:
        peer.close()
