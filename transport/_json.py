"""Events as JSON, the way Riemann's WebSocket and SSE servers write and read them (spec §1.8).

Output: every base field (``null`` when unset), then the attributes, with
``time`` as an ISO-8601 UTC string with milliseconds.

>>> event_json(Event(host="h1", service="s", metric=-6, time=0))
'{"host":"h1","service":"s","state":null,"description":null,"metric":-6,"tags":null,\
"time":"1970-01-01T00:00:00.000Z","ttl":null}'

Input: an object with Riemann's field names; ``time`` an ISO-8601 string
(Riemann) or a number of seconds (rillet also accepts it). A bad value fails
with a message naming the field and the event's position.

>>> event_from_json({"host": "a", "metric": 2, "time": "2013-04-15T18:06:58-07:00"}, 0, now=0)
Event(host='a', metric=2, time=1366074418)
>>> event_from_json({"metric": "high"}, 3, now=0)
Traceback (most recent call last):
...
transport._json.JsonEventError: event 3: field "metric" must be a number or null, got 'high'
"""

from __future__ import annotations

import datetime
import json
import math
import time as _time
from typing import Any

from streams import Event

__all__ = ["JsonEventError", "event_from_json", "event_json", "events_from_json_body",
           "iso_time"]

_STRING_FIELDS = ("host", "service", "state", "description")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class JsonEventError(ValueError):
    """A JSON event that cannot become an Event; the message names field and position."""


def iso_time(seconds: float | None) -> str | None:
    """Riemann's ``yyyy-MM-ddTHH:mm:ss.SSSZ`` (UTC, milliseconds truncated).

    >>> iso_time(1366074418.9999), iso_time(None)
    ('2013-04-16T01:06:58.999Z', None)
    """
    if seconds is None:
        return None
    try:
        whole = math.floor(seconds)
        millis = min(999, math.floor((seconds - whole) * 1000))
        return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(whole)) + f".{millis:03d}Z"
    except (TypeError, ValueError, OverflowError, OSError):
        return None  # a time no calendar holds (inf, NaN, year 10000): shown as unknown


def event_json(event: Event) -> str:
    """The JSON text of ``event`` as Riemann's subscriptions send it."""
    metric = event.metric
    if isinstance(metric, float) and not math.isfinite(metric):
        metric = None  # JSON has no NaN or infinity; browsers reject them
    out: dict[str, Any] = {
        "host": event.host, "service": event.service, "state": event.state,
        "description": event.description, "metric": metric,
        "tags": list(event.tags) if event.tags else None,
        "time": iso_time(event.time), "ttl": event.ttl,
    }
    for key, value in event.attributes.items():
        out[str(key)] = value if isinstance(value, str) else str(value)
    try:
        return _encode(out)
    except (TypeError, ValueError):
        # A stream put something JSON cannot hold in a base field (a NaN ttl,
        # an object as host): its text form is sent rather than nothing.
        return json.dumps({k: v if v is None or isinstance(v, (str, int, list)) else str(v)
                           for k, v in out.items()}, separators=(",", ":"))


def _parse_time(value: Any, position: int, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, bool):
        raise JsonEventError(f"event {position}: field \"time\" must be an ISO-8601 string or "
                             f"a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise JsonEventError(f"event {position}: field \"time\" must be finite, "
                                 f"got {value!r}")
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise JsonEventError(
                f"event {position}: field \"time\": Invalid format: {value!r}; write ISO-8601 "
                f"such as \"2024-05-01T12:00:00Z\" or a number of seconds"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        # Riemann keeps whole seconds of an ISO time.
        return math.floor(parsed.timestamp())
    raise JsonEventError(f"event {position}: field \"time\" must be an ISO-8601 string or a "
                         f"number of seconds, got {value!r}")


def event_from_json(data: Any, position: int, *, now: float) -> Event:
    """An Event from one decoded JSON object (``position`` names it in errors)."""
    if not isinstance(data, dict):
        raise JsonEventError(f"event {position}: must be a JSON object such as "
                             f"{{\"service\": \"cpu\", \"metric\": 0.5}}, got {data!r:.80}")
    fields: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    for key, value in data.items():
        if key in _STRING_FIELDS:
            if value is not None and not isinstance(value, str):
                raise JsonEventError(f"event {position}: field {json.dumps(key)} must be a "
                                     f"string or null, got {value!r:.80}")
            fields[key] = value
        elif key == "metric":
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))):
                raise JsonEventError(f"event {position}: field \"metric\" must be a number or "
                                     f"null, got {value!r:.80}")
            fields[key] = value
        elif key == "ttl":
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise JsonEventError(f"event {position}: field \"ttl\" must be a number of "
                                     f"seconds or null, got {value!r:.80}")
            fields[key] = value
        elif key == "tags":
            if value is not None and (not isinstance(value, list)
                                      or not all(isinstance(t, str) for t in value)):
                raise JsonEventError(f"event {position}: field \"tags\" must be a list of "
                                     f"strings or null, got {value!r:.80}")
            fields[key] = tuple(value or ())
        elif key == "time":
            fields[key] = _parse_time(value, position, now)
        elif value is None:
            continue
        elif isinstance(value, (dict, list)):
            raise JsonEventError(f"event {position}: attribute {json.dumps(key)} must be a "
                                 f"string, got {value!r:.80}")
        else:
            attributes[key] = value if isinstance(value, str) else json.dumps(value)
    fields.setdefault("time", now)
    return Event(**fields, attributes=attributes)


def events_from_json_body(body: bytes, *, now: float) -> list[Event]:
    """The events of an HTTP body: one object, a list of objects, or one object per line.

    >>> [e.service for e in events_from_json_body(b'[{"service":"a"},{"service":"b"}]', now=1)]
    ['a', 'b']
    >>> [e.service for e in events_from_json_body(b'{"service":"a"}\\n{"service":"b"}\\n', now=1)]
    ['a', 'b']
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JsonEventError(f"the body is not UTF-8: {error}") from None
    try:
        documents = [json.loads(text)]
    except ValueError as whole_error:
        # Riemann's /events takes one object per line.
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise JsonEventError(f"event 0: bad JSON: {whole_error}") from None
        documents = []
        for position, line in enumerate(lines):
            try:
                documents.append(json.loads(line))
            except ValueError as error:
                raise JsonEventError(f"event {position}: bad JSON: {error}") from None
    if len(documents) == 1 and isinstance(documents[0], list):
        documents = documents[0]
    return [event_from_json(data, position, now=now) for position, data in enumerate(documents)]
