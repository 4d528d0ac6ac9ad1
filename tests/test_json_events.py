"""Events as JSON: Riemann's output shape and the input rules of its common_test."""

from __future__ import annotations

import json
import math

import pytest

from streams import Event
from transport._json import JsonEventError, event_from_json, event_json, iso_time


def test_riemann_transport_test_shape() -> None:
    text = event_json(Event(host="h1", service="s", metric=-6, time=0))
    assert text == ('{"host":"h1","service":"s","state":null,"description":null,"metric":-6,'
                    '"tags":null,"time":"1970-01-01T00:00:00.000Z","ttl":null}')


def test_attributes_tags_and_unusual_values() -> None:
    data = json.loads(event_json(Event(host="é", tags=("a", "b"), metric=math.nan, ttl=5.0,
                                       time=1.9999, env="prod", count=3)))
    assert data["host"] == "é" and data["tags"] == ["a", "b"] and data["metric"] is None
    assert data["time"] == "1970-01-01T00:00:01.999Z"
    assert (data["env"], data["count"]) == ("prod", "3")
    assert iso_time(math.inf) is None and iso_time(1e20) is None


@pytest.mark.parametrize(("text", "seconds"), [
    ("2013-04-15T18:06:58-07:00", 1366074418),
    ("2013-04-15T18:06:58.123+11:00", 1366009618),
    ("2013-04-15", 1365984000),
    ("2013-04-15T18:06:58.999Z", 1366049218),
])
def test_iso_times_become_whole_seconds_as_riemann(text: str, seconds: int) -> None:
    assert event_from_json({"time": text}, 0, now=0).time == seconds


def test_missing_time_is_now_and_nulls_are_absent() -> None:
    event = event_from_json({"host": "a", "state": None, "extra": None, "n": 2}, 0, now=42.5)
    assert event == Event(host="a", time=42.5, n="2")


@pytest.mark.parametrize(("data", "message"), [
    ({"metric": True}, 'event 4: field "metric" must be a number'),
    ({"ttl": "5"}, 'field "ttl" must be a number'),
    ({"time": "xkcd"}, 'field "time": Invalid format'),
    ({"time": math.inf}, 'field "time" must be finite'),
    ({"time": [1]}, 'field "time" must be an ISO-8601 string'),
    ({"tags": [1]}, 'field "tags" must be a list of strings'),
    ({"env": {"a": 1}}, 'attribute "env" must be a string'),
    ("text", "event 4: must be a JSON object"),
])
def test_bad_values_name_the_field_and_the_position(data: object, message: str) -> None:
    with pytest.raises(JsonEventError, match=message.replace("(", r"\(")):
        event_from_json(data, 4, now=0)
