"""The runtime: one object per running config, put in effect by ``with``, and
configs in virtual time with index expiry (streams.testing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import streams
import streams.testing
import transport
from streams import (
    Config,
    Event,
    Runtime,
    VirtualClock,
    current_index,
    current_runtime,
    index,
    rate,
    testing,
)
from streams.testing import Sink, run

CONFIG = """\
from streams import *
from streams.testing import tap

periodically_expire(5)
streams(
    index,
    where('state = "expired"', tap("expired")),
    where('service = "requests"', by("host", rate(10, tap("rate")))),
    where('service = "requests"', throttle(1, 30, tap("first per 30 s"))),
)
"""


def events() -> list[Event]:
    return [Event(host=h, service="requests", metric=m, time=t, ttl=12)
            for t, h, m in [(0, "a", 10), (1, "b", 5), (4, "a", 20), (11, "a", 1), (31, "b", 2)]]


def test_two_configs_run_side_by_side_in_one_process(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(CONFIG)
    (tmp_path / "two.py").write_text(CONFIG.replace("rate(10", "rate(3").replace(
        "periodically_expire(5)", "periodically_expire(2)"))
    alone = {}
    for name in ("one", "two"):
        config = testing.load(tmp_path / f"{name}.py")
        alone[name] = testing.inject(config, events(), until=60)
    # The same events, interleaved one by one between the two configs.
    one, two = testing.load(tmp_path / "one.py"), testing.load(tmp_path / "two.py")
    together: dict[str, dict[str, list[Any]]] = {"one": {}, "two": {}}
    for event in [*events(), Event(service="tick", time=60, ttl=0)]:
        for name, config in (("one", one), ("two", two)):
            for tap_name, seen in testing.inject(config, [event]).items():
                together[name].setdefault(tap_name, []).extend(seen)
    for name in ("one", "two"):
        seen = together[name]
        # The extra tick event only moved the clock: drop what it did itself.
        seen["expired"] = [e for e in seen["expired"] if e.service != "tick"]
        assert seen == alone[name], name
    assert alone["one"]["rate"] != alone["two"]["rate"]
    assert [e.time for e in alone["one"]["expired"]] != [e.time for e in alone["two"]["expired"]]
    assert one.runtime is not two.runtime and one.runtime.index is not two.runtime.index
    assert one.runtime.index.lookup("a", "requests") is None  # expired in both by t=60


def test_with_runtime_puts_it_in_effect_and_restores_the_previous_one(runtime: Runtime) -> None:
    outer, inner = Runtime(), Runtime()
    assert current_runtime() is runtime
    with outer:
        assert current_runtime() is outer and current_index() is outer.index
        with inner, outer:  # re-entering is allowed
            assert current_runtime() is outer
        assert current_runtime() is outer
    assert current_runtime() is runtime
    with pytest.raises(ValueError, match="already belongs to another runtime"):
        Runtime(outer.clock)
    with pytest.raises(TypeError, match="must be a Scheduler"):
        Runtime(clock=lambda: 0.0)  # type: ignore[arg-type]


def test_timers_run_in_their_own_runtime_whoever_advances_the_clock() -> None:
    sink = Sink()
    mine = Runtime(VirtualClock())
    with mine:
        stream = rate(1, index, sink)
        stream(Event(host="x", metric=3, time=0))
    # Advanced outside `with mine`: the rate's tick still reads mine's clock and index.
    mine.clock.advance(1)  # type: ignore[attr-defined]
    assert [(e.time, e.metric) for e in sink.events] == [(1, 3.0)]
    assert mine.index.lookup("x", None) is not None
    assert current_runtime() is not mine and len(current_runtime().index) == 0


def test_the_runtimes_exception_stream_gets_failures_nothing_else_catches() -> None:
    errors = Sink()

    def broken(event: Any) -> None:
        raise RuntimeError("boom")

    with Runtime(exception_stream=errors) as mine:
        mine.start(Config(streams=[broken, index]))
        failure = mine.stream([Event(host="a", time=1)])
    assert isinstance(failure, RuntimeError)
    assert [e.service for e in errors.events] == ["rillet exception"]
    assert mine.index.lookup("a", None) is not None and mine.events == 1


def test_reinject_feeds_the_running_config_of_the_runtime_in_effect() -> None:
    seen = Sink()
    with Runtime() as mine:
        with pytest.raises(RuntimeError, match="no config is running"):
            streams.reinject()(Event())
        mine.start(Config(streams=[seen]))
        streams.reinject()(Event(service="again"))
    assert [e.service for e in seen.events] == ["again"]


def test_run_leaves_the_runtime_in_effect_untouched(runtime: Runtime) -> None:
    run(lambda sink: rate(1, sink), [Event(metric=1, time=100)])
    assert current_runtime() is runtime
    assert runtime.clock.now() == 0 and len(runtime.clock) == 0  # type: ignore[arg-type]


def test_expiry_in_virtual_time_reaches_the_streams(tmp_path: Path) -> None:
    (tmp_path / "monitoring.py").write_text(
        "from streams import *\n"
        "from streams.testing import tap\n"
        "periodically_expire(10)\n"
        "streams(index, where('state = \"expired\"', tap('gone')))\n")
    config = testing.load(tmp_path / "monitoring.py")
    seen = testing.inject(config, [Event(host="web1", service="ping", time=0, ttl=30),
                                   Event(host="web2", service="ping", time=0, ttl=60)])
    assert seen["gone"] == [] and len(config.runtime.index) == 2
    seen = testing.inject(config, [], until=45)
    # Swept every 10 s: web1 (time 0 + ttl 30) is found gone at the sweep of t=40.
    assert seen["gone"] == [Event(host="web1", service="ping", state="expired", time=40)]
    assert [e.host for e in config.runtime.index] == ["web2"]


def test_every_public_name_is_exported_once() -> None:
    homes: dict[str, list[str]] = {}
    for module in (streams, streams.testing, transport):
        assert len(module.__all__) == len(set(module.__all__)), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
            homes.setdefault(name, []).append(module.__name__)
    twice = {name: where for name, where in homes.items() if len(where) > 1}
    assert not twice, f"exported from more than one package: {twice}"
    assert streams.Runtime is Runtime and "Runtime" not in transport.__all__


def test_no_test_or_doc_installs_a_clock_through_a_private_module() -> None:
    root = Path(__file__).resolve().parents[1]
    pattern = ("_clock import install", "install_index", "install_reinject")
    offenders = [
        f"{path.relative_to(root)}: {needle}"
        for path in [*root.glob("tests/**/*.py"), *root.glob("docs/**/*.md"),
                     *root.glob("examples/*.py")]
        if path.name != "test_runtime.py"
        for needle in pattern if needle in path.read_text()
    ]
    assert not offenders, offenders



def test_the_expiry_example_of_the_testing_docs_passes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "testing-rules.md").read_text()
    section = page[page.index("## Expiry in tests"):]
    config, test = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[:2]
    assert config.startswith("# monitoring.py") and test.startswith("# test_monitoring.py")
    (tmp_path / "monitoring.py").write_text(config)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(test, "test_monitoring.py", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()


def test_each_runtime_rate_limits_its_own_failure_log_and_keeps_it_across_a_swap(
        caplog: pytest.LogCaptureFixture) -> None:
    # Two configs side by side (replay runs two) fail alike: each runtime logs
    # its first failure and counts its own repeats; neither silences the other.
    import logging

    def broken(event: Any) -> None:
        raise RuntimeError("boom")

    one, two = Runtime(), Runtime()
    one.start(Config(streams=[broken]))
    two.start(Config(streams=[broken]))
    with caplog.at_level(logging.ERROR, logger="rillet.streams"):
        for _ in range(3):
            with one:
                one.stream([Event(host="a", time=0)])
        with two:
            two.stream([Event(host="b", time=0)])
        logged = [r.getMessage() for r in caplog.records if r.name == "rillet.streams"]
        assert logged == ["stream failed on Event(host='a', time=0)",
                          "stream failed on Event(host='b', time=0)"]
        failures = logging.getLogger("rillet.streams")
        assert one.limited_log(failures).suppressed == 2
        assert two.limited_log(failures).suppressed == 0
        assert one.limited_log(failures) is not two.limited_log(failures)
        # A reload keeps the runtime, so the same failure stays held back.
        with one:
            one.swap(Config(streams=[broken, index]))
            one.stream([Event(host="c", time=0)])
        assert len([r for r in caplog.records if r.name == "rillet.streams"]) == 2
        assert one.limited_log(failures).suppressed == 3
