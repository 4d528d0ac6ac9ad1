"""Every example config loads, and a broken config fails with file, line and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import ConfigError, Event, Runtime, VirtualClock, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "examples").glob("*.py")
                 if not p.name.startswith("test_") and not p.name.endswith("rules.py"))
CONFIGS.append(ROOT / "transport" / "default_config.py")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_loads_and_streams_events(path: Path) -> None:
    runtime = Runtime(VirtualClock(100))
    config = runtime.load(path)
    assert config.streams
    runtime.start(config)
    with runtime:
        runtime.stream([Event(host="web1", service="cpu", metric=0.5, state="ok", time=100)])
    assert runtime.index.lookup("web1", "cpu") is not None
    runtime.stop()


def test_monitoring_example_pages_once_per_minute(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    runtime = Runtime(clock)
    runtime.start(runtime.load(ROOT / "examples" / "monitoring.py"))
    caplog.set_level("INFO")
    with runtime:
        for t in range(0, 120, 10):
            clock.advance(t)
            runtime.stream([Event(host="web1", service="http req", state="critical", time=t,
                                  description="500s")])
    pages = [r for r in caplog.records if "PAGE" in r.getMessage()]
    assert len(pages) == 2
    runtime.stop()


def test_config_error_names_file_line_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("from streams import *\n\nstreams(rate('five', print))\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert f"{path}:3" in message
    assert "rate(interval, *children)" in message and "'five'" in message


def test_config_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "syntax.py"
    path.write_text("from streams import *\nstreams(where(lambda e: e.metric >, index))\n")
    with pytest.raises(ConfigError, match=r"syntax.py:2: syntax error"):
        load_config(path)


def test_config_without_streams_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("from streams import *\n")
    with pytest.raises(ConfigError, match="declares no streams"):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.py")


def test_a_config_file_tested_the_riemann_test_way(tmp_path: Path) -> None:
    from streams import testing

    path = tmp_path / "monitoring.py"
    path.write_text(
        "from streams import *\n"
        "from streams.testing import tap\n"
        "streams(default({'ttl': 3}, where('not service =~ \"riemann %\"',\n"
        "                                tap('index', index))),\n"
        "        where('service = \"derived\"', tap('derived')),\n"
        "        where('service = \"source\"', with_({'service': 'derived'}, reinject())))\n"
    )
    config = testing.load(path)
    seen = testing.inject(config, [Event(service="test", time=1),
                                   Event(service="source", metric=2, time=2)])
    assert seen["index"][0] == Event(service="test", time=1, ttl=3)
    assert [e.service for e in seen["derived"]] == ["derived"]
    assert testing.inject(config, []) == {"derived": [], "index": []}


def test_the_example_rule_tests_pass() -> None:
    """examples/test_*.py are what users copy: they run, in their own pytest."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-W", "error", *sorted(str(p) for p in (ROOT / "examples").glob("test_*.py"))],
        cwd=ROOT / "examples", capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
