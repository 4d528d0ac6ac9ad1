"""Field transformers (spec §3.3): with_, default, tag."""

from __future__ import annotations

from typing import Any

import pytest
from _helpers import relaxed, through
from hypothesis import given
from hypothesis import strategies as st

from streams import Event, default, tag, with_
from streams.testing import events

# with_ -----------------------------------------------------------------------------

WITH_TABLE = [
    (({"service": "foo"},), {}, Event(service="bar", test="baz"),
     Event(service="foo", test="baz")),
    ((None,), {"service": "foo"}, [Event(service="bar", test="baz")],
     [Event(service="foo", test="baz")]),
    (({},), {}, Event(service="bar"), Event(service="bar")),  # nothing to set
    (({"test": None},), {}, Event(service="bar", test="baz"), Event(service="bar")),
    ((None,), {"metric": None, "state": "ok"}, Event(metric=3), Event(state="ok")),
    (({"state": "ok"},), {"state": "warning"}, Event(), Event(state="warning")),  # keywords win
    ((None,), {"tags": ["a"]}, (Event(), Event(tags=("b",))),
     (Event(tags=("a",)), Event(tags=("a",)))),
]


@pytest.mark.parametrize(("args", "keywords", "given_", "expected"), WITH_TABLE)
def test_with_table(args: tuple[Any, ...], keywords: dict[str, Any], given_: Any,
                    expected: Any) -> None:
    assert through(lambda sink: with_(*args, sink, **keywords), [given_]) == [expected]


@relaxed
@given(st.lists(events()), st.sampled_from(["ok", "critical"]), st.text(max_size=4))
def test_with_sets_exactly_the_given_fields(inputs: list[Event], state: str, team: str) -> None:
    out = through(lambda sink: with_({"state": state}, sink, team=team or None), inputs)
    assert out == [e.evolve(state=state, team=team or None) for e in inputs]
    assert all(o.state == state and o.host == e.host for o, e in zip(out, inputs, strict=True))


# default ---------------------------------------------------------------------------

DEFAULT_TABLE = [
    ({"ttl": 60, "state": "ok"}, Event(state="critical"), Event(state="critical", ttl=60)),
    ({"ttl": 3}, Event(service="test", time=1), Event(service="test", time=1, ttl=3)),
    ({"ttl": 3}, Event(ttl=10), Event(ttl=10)),
    ({"team": "ops"}, Event(team="db"), Event(team="db")),
    ({"team": "ops"}, Event(), Event(team="ops")),
    # Python difference: an empty tag tuple counts as absent.
    ({"tags": ("x",)}, Event(), Event(tags=("x",))),
    # Python difference: a None default leaves the attribute absent (events hold no None).
    ({"team": None}, Event(), Event()),
]


@pytest.mark.parametrize(("defaults", "given_", "expected"), DEFAULT_TABLE)
def test_default_table(defaults: dict[str, Any], given_: Event, expected: Event) -> None:
    assert through(lambda sink: default(defaults, sink), [given_]) == [expected]
    assert through(lambda sink: default(None, sink, **defaults), [[given_]]) == [[expected]]


@relaxed
@given(st.lists(events()))
def test_default_never_overrides_a_present_value(inputs: list[Event]) -> None:
    out = through(lambda sink: default({"state": "ok", "ttl": 30.0, "team": "ops"}, sink), inputs)
    for before, after in zip(inputs, out, strict=True):
        assert after.state == (before.state or "ok")
        assert after.ttl == (30.0 if before.ttl is None else before.ttl)
        assert after.get("team") == "ops"
        assert (after.host, after.metric, after.time) == (before.host, before.metric, before.time)


# tag -------------------------------------------------------------------------------

TAG_TABLE = [
    (["foo", "bar"], ("foo", "baz"), ("foo", "bar", "baz")),
    ("a", ("b", "a"), ("a", "b")),  # an existing tag being added moves to the front
    ("a", (), ("a",)),
    ([], ("x",), ("x",)),
]


@pytest.mark.parametrize(("tags", "existing", "expected"), TAG_TABLE)
def test_tag_table(tags: Any, existing: tuple[str, ...], expected: tuple[str, ...]) -> None:
    [out] = through(lambda sink: tag(tags, sink), [Event(tags=existing)])
    assert out.tags == expected
    [[listed]] = through(lambda sink: tag(tags, sink), [[Event(tags=existing)]])
    assert listed.tags == expected


@relaxed
@given(st.lists(events()), st.lists(st.sampled_from(["web", "db", "new"]), max_size=4))
def test_tag_puts_new_tags_first_each_once(inputs: list[Event], tags: list[str]) -> None:
    out = through(lambda sink: tag(tags, sink), inputs)
    for before, after in zip(inputs, out, strict=True):
        assert len(set(after.tags)) == len(after.tags)
        assert set(after.tags) == set(tags) | set(before.tags)
        assert after.tags[: len(set(tags))] == tuple(dict.fromkeys(tags))


def test_with_keywords_override_the_mapping() -> None:
    out = through(lambda sink: with_({"service": "a", "state": "ok"}, sink, service="b"),
                  [Event(host="h")])
    assert [(e.host, e.service, e.state) for e in out] == [("h", "b", "ok")]
