"""One name for a stream's place in the config (streams._nodes): what it is, the walk's
order (checkpoints store by it), and that the census, counters, replay, explain and reload
all give a stream that one name, the same in replay and live and across a reload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import (
    Event,
    bit_bucket,
    by,
    by_builder,
    by_fn,
    changed_state,
    index,
    rate,
    split,
    testing,
    throttle,
    where,
)
from streams._census import census
from streams._nodes import nodes
from streams.testing import Sink, replay
from transport import import_jsonl, why_not

T0 = 1_800_000_000.0


def test_a_stream_is_named_by_its_place_with_by_fields_and_numbered_siblings() -> None:
    page = Sink()
    config = [
        index,
        where("metric > 90", by(["host", "service"], throttle(1, 60, page)), index),
        print,  # a plain function holds a place among the top-level streams, and is no node
        split("metric > 1", where("metric > 5", page), where("metric > 2", page),
              rate(5, page)),
        by(lambda e: e.host, changed_state(bit_bucket())),
        by_builder("host", lambda host: rate(5, page)),
        by_fn(["host", lambda e: e.service], lambda: rate(5, page)),
    ]
    assert [node.id for node in nodes(config)] == [
        "streams[0]/index",
        "streams[1]/where",
        "streams[1]/where/by(['host', 'service'])",
        "streams[1]/where/by(['host', 'service'])/throttle",
        "streams[1]/where/by(['host', 'service'])/throttle/Sink",
        "streams[3]/split",
        "streams[3]/split/where",
        "streams[3]/split/where#2",
        "streams[3]/split/rate",
        "streams[4]/by(<lambda>)",
        "streams[4]/by(<lambda>)/changed_state",
        "streams[4]/by(<lambda>)/changed_state/bit_bucket",
        "streams[5]/by_builder('host')",
        "streams[6]/by_fn(['host', <lambda>])",
    ]
    # The index and the page are shared: each is walked once, at its first place.
    found = {node.id: node for node in nodes(config)}
    assert found["streams[1]/where/by(['host', 'service'])/throttle/Sink"].stream is page
    assert found["streams[3]/split/where#2"].parent is config[3]
    assert found["streams[0]/index"].parent is None


def test_the_walk_is_parents_first_in_argument_order_each_stream_once() -> None:
    # Checkpoint files store each stream's state by its position in this walk: a change
    # of order would put a stored state into another stream.
    page = Sink()
    inner = throttle(1, 60, page)
    outer = where("metric > 1", by("host", inner), page)
    second = split("metric > 5", rate(5, page), inner)
    walked = [node.stream for node in nodes([outer, second])]
    assert walked == [outer, outer.children[0], inner, page, second, second.children[0]]


@st.composite
def configs(draw: Any) -> list[Any]:
    """A config drawn as nested (kind, number, children) specs, built twice alike."""
    leaf = st.just(("sink", 0, ()))
    tree = st.recursive(leaf, lambda inner: st.tuples(
        st.sampled_from(["where", "by", "split", "throttle", "rate"]), st.integers(1, 9),
        st.lists(inner, min_size=1, max_size=3).map(tuple)), max_leaves=12)
    return draw(st.lists(tree, min_size=1, max_size=3))


def build(specs: list[Any], sink: Sink, shift: int = 0) -> list[Any]:
    def one(spec: Any) -> Any:
        kind, n, children = spec
        built = [one(c) for c in children]
        if kind == "sink":
            return sink
        if kind == "where":
            return where(f"metric > {n + shift}", *built)
        if kind == "by":
            return by("host" if n % 2 else ["host", "service"], *built)
        if kind == "split":
            return split(*[part for child in built for part in (f"metric > {n}", child)])
        if kind == "throttle":
            return throttle(n + shift, 60, *built)
        return rate(n + shift, *built)

    return [one(spec) for spec in specs]


@settings(max_examples=80, deadline=None)
@given(configs())
def test_ids_are_unique_parents_come_first_and_edits_of_thresholds_keep_them(
        specs: list[Any]) -> None:
    config = build(specs, Sink())
    walked = list(nodes(config))
    ids = [node.id for node in walked]
    assert len(set(ids)) == len(ids)
    position = {id(node.stream): i for i, node in enumerate(walked)}
    for i, node in enumerate(walked):
        assert node.parent is None or position[id(node.parent)] < i
        assert node.id.startswith("streams[")
    # The same rules built again, or with other thresholds: the same ids.
    assert [n.id for n in nodes(build(specs, Sink()))] == ids
    assert [n.id for n in nodes(build(specs, Sink(), shift=3))] == ids


def test_the_census_names_sibling_bys_apart_and_a_by_over_a_function_stably() -> None:
    top = split("metric > 5", by("host", bit_bucket()), by("host", bit_bucket()))
    keyed = by(lambda e: e.host, by("service", bit_bucket()))
    for host in "abc":
        top(Event(host=host, metric=9))
        keyed(Event(host=host, service="s"))
    top(Event(host="d", metric=1))
    assert census([top, keyed]).by_keys == {
        "streams[0]/split/by('host')": 3,
        "streams[0]/split/by('host')#2": 1,
        "streams[1]/by(<lambda>)": 3,
        "streams[1]/by(<lambda>)/by('service')": 3,
    }


RULES = """from streams import *
from transport import pagerduty, slack

page = pagerduty(routing_key="0123456789abcdef0123456789abcdef")
chat = slack("https://hooks.slack.com/services/T/B/X")
streams(where(lambda e: e.metric > 90, by("host", throttle(1, 60, page))),
        where(lambda e: e.metric > 90, changed_state(chat)))
"""


def _recording(tmp_path: Path) -> Path:
    events = [{"host": h, "service": "disk", "metric": m, "state": s, "time": T0 + i}
              for i, (h, m, s) in enumerate([("a", 95, "critical"), ("b", 91, "critical"),
                                             ("a", 10, "ok"), ("a", 99, "critical")])]
    import_jsonl([json.dumps(e) for e in events], tmp_path / "r.rrec")
    return tmp_path / "r.rrec"


def test_replay_counters_explain_and_reload_use_the_same_ids(tmp_path: Path) -> None:
    config = tmp_path / "rules.py"
    config.write_text(RULES)
    recording = _recording(tmp_path)
    loaded = testing.load(config)
    ids = [node.id for node in nodes(loaded.streams)]
    assert ids == ["streams[0]/where", "streams[0]/where/by('host')",
                   "streams[0]/where/by('host')/throttle",
                   "streams[0]/where/by('host')/throttle/pagerduty",
                   "streams[1]/where", "streams[1]/where/changed_state",
                   "streams[1]/where/changed_state/slack"]
    # A reload of the unchanged file keeps the running streams, and their ids.
    testing.inject(loaded, [Event(host="a", service="disk", metric=95, time=1)])
    kept = {node.id: node.stream for node in nodes(loaded.streams)}
    reloaded = testing.reload(loaded)
    after = {node.id: node.stream for node in nodes(reloaded.streams)}
    assert list(after) == ids
    assert after["streams[0]/where/by('host')"] is kept["streams[0]/where/by('host')"]
    # A replay's alert log names each sink by the id the loaded config gives it.
    alerts = replay(config, recording).alerts
    assert {a.node for a in alerts} == {"streams[0]/where/by('host')/throttle/pagerduty",
                                       "streams[1]/where/changed_state/slack"}
    # The counters print the same ids, and so does explain.
    done = subprocess.run([sys.executable, "-m", "transport._cli", "replay", str(config),
                           "--recording", str(recording), "--counts"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    table = done.stderr.split("replayed ")[0].splitlines()
    assert table[0].split() == ["in", "out", "stream"]
    printed = [line[23:] for line in table[1:]]  # after the in and out columns
    assert printed == ids


def test_explain_tells_apart_streams_that_print_alike(tmp_path: Path) -> None:
    # Both wheres print as where(<lambda>, ...): the answers were merged under that
    # text; each is its own node now, with its own counts.
    config = tmp_path / "rules.py"
    config.write_text(RULES)
    answer = why_not(config, _recording(tmp_path), {"host": "a"}).text()
    stopped = [line for line in answer.splitlines() if "stopped at" in line]
    # a's 10 stopped at each where; its second critical at the throttle (one page a
    # minute) and at changed_state's changed (no change of state)
    assert sorted(line.split("  [")[1].split("]   ")[0] for line in stopped) == [
        "streams[0]/where/by('host')/throttle: 3 in, 2 out",
        "streams[0]/where: 4 in, 3 out",
        "streams[1]/where/changed_state/changed",
        "streams[1]/where: 4 in, 3 out"], answer
    assert all(line.startswith("  1 stopped at rules.py:") for line in stopped), answer
