"""Events: immutable value objects with base fields and attributes (spec §2)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import DEFAULT_TTL, FIELDS, Event
from streams.testing import events


def test_base_fields_default_to_none_and_tags_to_empty_tuple() -> None:
    e = Event()
    assert [getattr(e, f) for f in FIELDS] == [None, None, None, None, None, (), None, None]
    assert e.attributes == {}
    assert DEFAULT_TTL == 60


def test_unknown_keywords_become_attributes_and_none_attributes_are_dropped() -> None:
    e = Event(host="h", region="eu", team=None)
    assert e.attributes == {"region": "eu"}
    assert e.get("region") == "eu"
    assert e.get("team", "nobody") == "nobody"


def test_tags_are_stored_as_a_tuple() -> None:
    assert Event(tags=["a", "b"]).tags == ("a", "b")
    assert Event(tags=None).tags == ()  # type: ignore[arg-type]


def test_a_string_as_tags_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"tags=\('web',\)"):
        Event(tags="web")


def test_events_are_immutable_and_the_error_suggests_evolve() -> None:
    e = Event(metric=1)
    with pytest.raises(AttributeError, match=r"evolve\(metric=2\)"):
        e.metric = 2
    with pytest.raises(AttributeError):
        del e.metric


def test_evolve_changes_fields_sets_and_removes_attributes() -> None:
    e = Event(host="h", metric=1, env="prod")
    changed = e.evolve(metric=2, env=None, owner="ops", tags=["x"])
    assert changed == Event(host="h", metric=2, owner="ops", tags=("x",))
    assert e == Event(host="h", metric=1, env="prod")  # the original is untouched


def test_evolve_can_clear_a_base_field() -> None:
    assert Event(metric=1, state="ok").evolve(metric=None).metric is None


def test_get_treats_empty_tags_as_absent() -> None:
    assert Event().get("tags", "none") == "none"
    assert Event(tags=("a",)).get("tags") == ("a",)


def test_as_dict_lists_only_present_fields() -> None:
    assert Event(host="h", time=3, env="x").as_dict() == {"host": "h", "time": 3, "env": "x"}


def test_repr_reads_like_the_constructor_call() -> None:
    e = Event(service="cpu", metric=0.5, tags=("a",), region="eu")
    assert repr(e) == "Event(service='cpu', metric=0.5, tags=('a',), region='eu')"
    assert eval(repr(e)) == e


def test_equality_follows_python_numbers() -> None:
    # Riemann (Clojure) says 1 != 1.0; rillet follows Python.
    assert Event(metric=1) == Event(metric=1.0)
    assert hash(Event(metric=1)) == hash(Event(metric=1.0))
    assert Event(metric=1) != Event(metric=2)
    assert Event() != "not an event"


@settings(deadline=None)
@given(events())
def test_pickle_round_trips(event: Event) -> None:
    assert pickle.loads(pickle.dumps(event)) == event


@settings(deadline=None)
@given(events(), st.dictionaries(st.sampled_from(["host", "state", "metric", "env"]),
                                 st.one_of(st.none(), st.text(max_size=3))))
def test_evolve_matches_the_dict_model(event: Event, changes: dict[str, object]) -> None:
    expected = event.as_dict()
    for key, value in changes.items():
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
    assert event.evolve(**changes).as_dict() == expected


@settings(deadline=None)
@given(events())
def test_equal_events_hash_equal(event: Event) -> None:
    copy = Event(**event.as_dict())
    assert copy == event and hash(copy) == hash(event)
