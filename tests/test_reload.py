"""State survives a reload where the rule did not change (streams.Runtime.swap).

Every stateful family is reloaded mid-window with an unchanged definition and
must produce exactly what an uninterrupted run produces; a changed rule
starts fresh; services are matched by definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams import (
    Config,
    Event,
    Runtime,
    Stream,
    VirtualClock,
    apdex,
    batch,
    by,
    by_builder,
    changed,
    changed_state,
    clock_skew,
    coalesce,
    counter,
    ddt_real,
    ewma,
    ewma_timeless,
    fill_in_last,
    fixed_event_window,
    fixed_time_window,
    fold_interval,
    interpolate_constant,
    mean_over_time,
    moving_event_window,
    moving_time_window,
    percentiles,
    predict_linear,
    rate,
    rollup,
    runs,
    sreduce,
    stable,
    sum_over_time,
    testing,
    throttle,
    top,
    where,
)
from streams.testing import Sink

Build = Callable[[Sink], Any]


def carry_over(old: list[Any], old_services: list[Any], new: list[Any],
               new_services: list[Any]) -> Any:
    """What a reload from ``old`` to ``new`` keeps, through the public Runtime.swap."""
    runtime = Runtime()
    runtime.start(Config(streams=old, services=old_services))
    return runtime.swap(Config(streams=new, services=new_services))

FAMILIES: dict[str, Build] = {
    "rate": lambda sink: rate(5, sink),
    "throttle": lambda sink: throttle(2, 10, sink),
    "by keys": lambda sink: by("host", rate(5, sink)),
    "by_builder": lambda sink: by_builder("host", lambda host: sum_over_time(sink)),
    "moving_time_window": lambda sink: moving_time_window(10, sink),
    "fixed_time_window": lambda sink: fixed_time_window(10, sink),
    "moving_event_window": lambda sink: moving_event_window(4, sink),
    "fixed_event_window": lambda sink: fixed_event_window(4, sink),
    "changed_state": lambda sink: changed_state(sink),
    "changed": lambda sink: changed("state", sink),
    "stable": lambda sink: stable(3, "state", sink),
    "runs": lambda sink: runs(2, "state", sink),
    "coalesce": lambda sink: coalesce(5, sink),
    "rollup": lambda sink: rollup(2, 10, sink),
    "batch": lambda sink: batch(3, 10, sink),
    "percentiles": lambda sink: percentiles(10, [0.5, 0.99], sink),
    "fold_interval": lambda sink: fold_interval(10, "metric", max, sink),
    "apdex": lambda sink: apdex(10, 'state = "ok"', 'state = "warning"', sink),
    "counter": lambda sink: counter(sink),
    "mean_over_time": lambda sink: mean_over_time(sink),
    "ewma_timeless": lambda sink: ewma_timeless(0.5, sink),
    "ewma": lambda sink: ewma(5, sink),
    "ddt_real": lambda sink: ddt_real(5, sink),
    "predict_linear": lambda sink: predict_linear(5, 10, sink),
    "sreduce": lambda sink: sreduce(lambda acc, e: e.evolve(metric=acc.metric + e.metric), sink),
    "top": lambda sink: top(2, "metric", sink),
    "clock_skew": lambda sink: clock_skew(sink),
    "fill_in_last": lambda sink: fill_in_last(4, {"state": "filled"}, sink),
    "interpolate_constant": lambda sink: interpolate_constant(4, sink),
}

STATES = ["ok", "warning", "critical", "critical", "ok", "ok", "warning"]
EVENTS = [Event(host="ab"[i % 2], service="s", state=STATES[i % 7], metric=(i * 7) % 11,
                time=i * 1.5, ttl=300)
          for i in range(28)]
RELOAD_AT = 13.0  # inside the second 10 s window, between two events
UNTIL = 60


def uninterrupted(build: Build) -> tuple[list[Any], int]:
    runtime = Runtime(VirtualClock())
    out = testing.run(build, EVENTS, until=UNTIL, runtime=runtime)
    return out, len(runtime.clock)


def reloaded(build: Build, rebuild: Build | None = None) -> tuple[list[Any], int, Any]:
    sink = Sink()
    runtime = Runtime(VirtualClock())
    clock = runtime.clock
    assert isinstance(clock, VirtualClock)
    with runtime:
        runtime.start(Config(streams=[build(sink)]))
        carried = None
        for event in EVENTS:
            if carried is None and event.time > RELOAD_AT:
                clock.advance(RELOAD_AT)
                # A fresh load builds new objects, here at the reload time.
                carried = runtime.swap(Config(streams=[(rebuild or build)(sink)]))
            clock.advance(event.time)
            runtime.stream([event])
        clock.advance(UNTIL)
    return sink.events, len(clock), carried


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_an_unchanged_stream_keeps_its_state_across_a_reload(family: str) -> None:
    expected, timers = uninterrupted(FAMILIES[family])
    assert expected, f"{family}: the scenario must produce output to compare"
    got, leftover, carried = reloaded(FAMILIES[family])
    assert got == expected
    # The freshly built copy was retired: no timer of it keeps running.
    assert leftover == timers
    assert len(carried.kept) == 1 and not carried.fresh


@pytest.mark.parametrize("family", ["rate", "by keys", "moving_event_window", "changed_state"])
def test_a_changed_stream_starts_fresh(family: str) -> None:
    def changed_rule(sink: Sink) -> Any:
        return where(lambda e: True, FAMILIES[family](sink))

    expected, _ = uninterrupted(FAMILIES[family])
    got, _, carried = reloaded(lambda sink: FAMILIES[family](sink), changed_rule)
    # The `where` is new, but the unchanged stream below it is the running one.
    assert got == expected
    assert carried.kept and carried.fresh

    def other(sink: Sink) -> Any:
        return {"rate": lambda: rate(6, sink), "by keys": lambda: by("host", rate(6, sink)),
                "moving_event_window": lambda: moving_event_window(5, sink),
                "changed_state": lambda: changed_state(sink, init="critical")}[family]()

    got, _, carried = reloaded(FAMILIES[family], other)
    assert not carried.kept and got != expected


def test_lambdas_that_print_alike_are_compared_by_code_and_closure() -> None:
    def above(limit: float) -> Callable[[Any], bool]:
        return lambda e: e.metric > limit

    sink = Sink()
    running = where(above(5), rate(5, sink))
    carried = carry_over([running], [], [where(above(5), rate(5, sink))], [])
    assert carried.streams[0] is running
    carried = carry_over([running], [], [where(above(6), rate(5, sink))], [])
    assert carried.streams[0] is not running
    assert carried.streams[0].children[0] is running.children[0]  # the rate below is kept
    assert repr(where(above(5), sink)) == repr(where(above(6), sink))
    assert carry_over([running], [], [where(lambda e: e.metric >= 5, rate(5, sink))],
                      []).streams[0] is not running


def test_a_function_reading_a_changed_global_is_changed(tmp_path: Path) -> None:
    rule = ("from streams import *\nfrom streams.testing import tap\nLIMIT = {}\n"
            "def hot(e):\n    return e.metric > LIMIT\n"
            "streams(by('host', where(hot, moving_event_window(3, tap('w')))))\n")
    path = tmp_path / "monitoring.py"
    path.write_text(rule.format(5))
    config = testing.load(path)
    testing.inject(config, [Event(host="a", metric=9, time=1)])
    path.write_text("# a comment moves every line down\n" + rule.format(5))
    config = testing.reload(config)
    assert [len(e) for e in testing.inject(config, [Event(host="a", metric=9, time=2)])["w"]] \
        == [2]
    path.write_text(rule.format(6))
    config = testing.reload(config)
    assert [len(e) for e in testing.inject(config, [Event(host="a", metric=9, time=3)])["w"]] \
        == [1]


def test_a_rule_module_next_to_the_config_is_imported_and_reloaded(tmp_path: Path) -> None:
    (tmp_path / "myrules.py").write_text(
        "from streams import *\nfrom streams.testing import tap\n"
        "def rule():\n    return throttle(1, 60, tap('paged'))\n")
    path = tmp_path / "monitoring.py"
    path.write_text("from streams import *\nfrom myrules import rule\nstreams(rule())\n")
    config = testing.load(path)
    assert len(testing.inject(config, [Event(time=1), Event(time=2)])["paged"]) == 1
    config = testing.reload(config)  # unchanged: the throttle still holds its window
    assert testing.inject(config, [Event(time=3)])["paged"] == []
    (tmp_path / "myrules.py").write_text(
        "from streams import *\nfrom streams.testing import tap\n"
        "def rule():\n    return throttle(2, 60, tap('paged'))\n")
    config = testing.reload(config)
    assert len(testing.inject(config, [Event(time=4), Event(time=5)])["paged"]) == 2


@dataclass
class Listener:
    host: str
    port: int
    served: int = field(default=0, repr=False)


def test_services_are_kept_started_and_stopped_by_definition() -> None:
    sink = Sink()
    old = [Listener("127.0.0.1", 5555, served=7), Listener("127.0.0.1", 5556)]
    new = [Listener("127.0.0.1", 5555), Listener("127.0.0.1", 6000)]
    carried = carry_over([rate(5, sink)], old, [rate(5, sink)], new)
    assert carried.kept_services == [old[0]] and carried.kept_services[0].served == 7
    assert carried.started_services == [new[1]]
    assert carried.stopped_services == [old[1]]
    assert carried.services == [old[0], new[1]]


def test_a_broken_reload_leaves_the_running_config_alone(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.py"
    path.write_text("from streams import *\nfrom streams.testing import tap\n"
                    "streams(throttle(1, 60, tap('paged')))\n")
    config = testing.load(path)
    testing.inject(config, [Event(time=1)])
    path.write_text("from streams import *\nstreams(throttle(1, 60, tap('paged'))\n")
    with pytest.raises(Exception, match=r"monitoring.py:2: syntax error"):
        testing.reload(config)
    assert config.runtime.config is config
    assert testing.inject(config, [Event(time=2)])["paged"] == []


def test_a_reload_failing_half_way_leaves_no_timer_of_itself(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.py"
    path.write_text("from streams import *\nfrom streams.testing import tap\n"
                    "streams(throttle(1, 60, tap('paged')))\n")
    config = testing.load(path)
    clock = config.runtime.clock
    testing.inject(config, [Event(time=1)])
    timers = len(clock)
    path.write_text("from streams import *\nfrom streams.testing import tap\n"
                    "gaps = fill_in(1, {'service': 'gap'}, tap('filled'))\n"
                    "streams(gaps)\n"
                    "1 / 0\n")
    with pytest.raises(Exception, match=r"monitoring.py:5: ZeroDivisionError"):
        testing.reload(config)
    assert len(clock) == timers
    assert testing.inject(config, [], until=10) == {"paged": []}


def test_a_stream_class_of_the_config_is_compared_by_its_code(tmp_path: Path) -> None:
    rule = ("from streams import *\nfrom streams.testing import tap\n"
            "class counting(Stream):\n"
            "    def __init__(self, *children):\n"
            "        super().__init__(*children)\n"
            "        self.n = 0\n"
            "    def __call__(self, event):\n"
            "        self.n += {}\n"
            "        self._out(event.evolve(metric=self.n))\n"
            "streams(counting(tap('n')))\n")
    path = tmp_path / "monitoring.py"
    path.write_text(rule.format(1))
    config = testing.load(path)
    testing.inject(config, [Event(time=1)])
    config = testing.reload(config)
    assert [e.metric for e in testing.inject(config, [Event(time=2)])["n"]] == [2]
    path.write_text(rule.format(10))
    config = testing.reload(config)
    assert [e.metric for e in testing.inject(config, [Event(time=3)])["n"]] == [10]


def test_an_unchanged_queue_keeps_its_queued_events_across_a_reload(tmp_path: Path) -> None:
    source = ("from streams import *\nfrom transport import async_queue, tcp_server\n"
              "tcp_server(port={port})\n"
              "mail = async_queue('mail', print, size={size})\n"
              "streams(where('state = \"critical\"', mail))\n")
    path = tmp_path / "monitoring.py"
    path.write_text(source.format(port=5999, size=10))
    runtime = Runtime()
    runtime.start(runtime.load(path))
    queue, server = runtime.services[1], runtime.services[0]
    with runtime:
        runtime.stream([Event(state="critical", time=1), Event(state="critical", time=2)])
    runtime.swap(runtime.load(path))
    assert runtime.services[1] is queue and queue.statistics()["queued"] == 2
    assert runtime.services[0] is server
    path.write_text(source.format(port=6000, size=20))
    carried = runtime.swap(runtime.load(path))
    assert carried.stopped_services == [server, queue]
    assert [repr(s) for s in carried.started_services] == [
        "TcpServer(host='127.0.0.1', port=6000, max_frame=67108864, max_connections=4096, "
        "idle_timeout=3600.0, max_buffered=268435456, max_events=100000)",
        "async_queue('mail', print, size=20)"]
    with runtime:
        runtime.stream([Event(state="critical", time=3)])
    assert runtime.services[1].statistics()["queued"] == 1


def test_a_running_stream_serves_one_place_only() -> None:
    sink = Sink()

    def rules() -> list[Any]:
        return [where(lambda e: e.metric > 1, rate(5, sink)), rate(5, sink), rate(5, sink)]

    old = rules()
    carried = carry_over(old, [], rules(), [])
    assert [a is b for a, b in zip(carried.streams, old, strict=True)] == [True, True, True]
    carried = carry_over(old, [], [rate(5, sink), *rules()], [])
    # Matched greedily in order of appearance, and never one running stream in two places.
    places: list[int] = []

    def visit(stream: Any) -> None:
        if isinstance(stream, Stream) and not stream.shared:
            places.append(id(stream))
            for child in stream.children:
                visit(child)

    for declared in carried.streams:
        visit(declared)
    assert len(places) == len(set(places)) == 5
    assert len(carried.kept) == 3 and {id(s) for s in carried.kept} <= {
        id(old[0]), id(old[0].children[0]), id(old[1]), id(old[2])}


class _Fragile(Stream):
    def close(self) -> None:
        raise RuntimeError("cannot close")


def test_a_stream_that_fails_to_close_does_not_undo_the_reload(
        caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    runtime = Runtime()
    old = rate(5, sink)
    runtime.start(Config(streams=[_Fragile(sink), old]))
    new = Config(streams=[rate(6, sink)])
    runtime.swap(new)
    assert runtime.config is new and "closing _Fragile" in caplog.text
    assert len(runtime.clock) == 0 and old.children == (sink,)


def test_what_a_rule_reads_through_a_module_of_the_config_is_part_of_the_rule(
        tmp_path: Path) -> None:
    checks = tmp_path / "checks.py"
    checks.write_text("LIMIT = 5\ndef hot(e):\n    return e.metric > LIMIT\n")
    path = tmp_path / "monitoring.py"
    path.write_text("from streams import *\nfrom streams.testing import tap\nimport checks\n"
                    "streams(by('host', where(lambda e: checks.hot(e),\n"
                    "                         moving_event_window(3, tap('w')))))\n")
    config = testing.load(path)
    testing.inject(config, [Event(host="a", metric=9, time=1)])
    config = testing.reload(config)
    [window] = testing.inject(config, [Event(host="a", metric=9, time=2)])["w"]
    assert len(window) == 2
    checks.write_text("LIMIT = 8\ndef hot(e):\n    return e.metric > LIMIT\n")
    config = testing.reload(config)
    [window] = testing.inject(config, [Event(host="a", metric=9, time=3)])["w"]
    assert len(window) == 1  # the rule reads the new LIMIT, with fresh state
    assert testing.inject(config, [Event(host="a", metric=7, time=4)])["w"] == []
