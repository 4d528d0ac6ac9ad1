"""A pytest plugin (loaded by the ``rillet`` entry point): replay recorded traffic in tests.

A user's test says what must hold when a recording of production replays
through the config, for example that no page disappears with the change::

    # test_rules.py
    def test_no_page_disappears(rillet_diff):
        report = rillet_diff("git:main", "monitoring.py")
        assert not report.of("gone", sink="pagerduty"), report.text()

and runs with ``pytest --rillet-recording prod.rrec`` (or ``rillet_recording
= prod.rrec`` in the ``[pytest]`` ini section). Fixtures:

- ``rillet_recording``: the recording's path; a test asking for it fails
  with how to give one when there is none;
- ``rillet_replay(config, recording=None, fidelity=None)``: the replay
  result (``.alerts``, ``.digest``), of the recording by default; a config
  and recording replay once per session, however many tests ask;
- ``rillet_diff(a, b, recording=None, tolerance="5m", key="host,service,state",
  warmup="0", explain=True)``: the diff report of two configs (``a`` may be
  ``"git:REV"``: the config ``b`` as it is at that revision); ``report.of(kind,
  sink=None)`` lists its same / moved / changed / gone / new items, each gone
  and new one with its why-not (``explain=False`` skips them).

The replay itself is the transport package's; this module imports it only
when a fixture runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["pytest_addoption", "rillet_diff", "rillet_recording", "rillet_replay"]

_OPTION = "--rillet-recording"
_INI = "rillet_recording"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rillet", "rillet: replay recorded traffic through configs")
    group.addoption(_OPTION, metavar="PATH", default=None,
                    help="the recording (a .rrec file or a directory of them) that the "
                         "rillet_replay and rillet_diff fixtures replay")
    parser.addini(_INI, "the default of --rillet-recording", default="")


@pytest.fixture(scope="session")
def rillet_recording(request: pytest.FixtureRequest) -> Path:
    """The recording given by ``--rillet-recording`` or the ``rillet_recording`` ini."""
    given = request.config.getoption(_OPTION) or request.config.getini(_INI)
    if not given:
        pytest.fail(f"no recording to replay: run pytest {_OPTION} prod.rrec (a file from "
                    f"'rillet run --record DIR' or 'rillet record import'), or set "
                    f"{_INI} = prod.rrec in the [pytest] ini section", pytrace=False)
    path = Path(str(given))
    if not path.is_absolute():
        path = Path(str(request.config.rootpath)) / path
    if not path.exists():
        pytest.fail(f"{_OPTION} {given}: no such recording ({path})", pytrace=False)
    return path


@pytest.fixture(scope="session")
def _rillet_replays() -> dict[Any, Any]:
    return {}


@pytest.fixture
def rillet_replay(request: pytest.FixtureRequest,
                  _rillet_replays: dict[Any, Any]) -> Callable[..., Any]:
    """``rillet_replay(config, recording=None, fidelity=None)``: the replay result."""

    def run(config: str | Path, recording: str | Path | None = None,
            fidelity: str | None = None) -> Any:
        from transport._replay import replay

        if recording is None:
            recording = request.getfixturevalue("rillet_recording")
        key = (hashlib.sha256(Path(config).read_bytes()).hexdigest(),
               str(Path(recording).resolve()), fidelity)
        if key not in _rillet_replays:
            _rillet_replays[key] = replay(config, recording, fidelity=fidelity)
        return _rillet_replays[key]

    return run


@pytest.fixture
def rillet_diff(request: pytest.FixtureRequest,
                rillet_replay: Callable[..., Any]) -> Callable[..., Any]:
    """``rillet_diff(a, b, ...)``: the diff report of configs ``a`` and ``b``."""

    def run(a: str | Path, b: str | Path, recording: str | Path | None = None, *,
            tolerance: str = "5m", key: str = "host,service,state", warmup: str = "0",
            explain: bool = True) -> Any:
        from transport._cli_replay import _git_config
        from transport._diff import diff_alerts
        from transport._recording import parse_duration

        if recording is None:
            recording = request.getfixturevalue("rillet_recording")
        made = None
        a_path = str(a)
        if a_path.startswith("git:"):
            a_path = made = _git_config(a_path, str(b))
        try:
            report = diff_alerts(
                rillet_replay(a_path, recording), rillet_replay(b, recording),
                tolerance=parse_duration(tolerance, "tolerance"),
                key_fields=tuple(k.strip() for k in key.split(",") if k.strip()),
                warmup=parse_duration(warmup, "warmup"))
            if explain and any(c.kind in ("gone", "new") for c in report.changes):
                from transport._explain import explain_changes

                explain_changes(report, str(b), a_path, recording)
        finally:
            if made is not None:
                Path(made).unlink(missing_ok=True)
        return report

    return run
