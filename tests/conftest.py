"""Fixtures and helpers shared by the whole suite.

Real peers (riemann-c-client, carbon, InfluxDB, Prometheus, Alertmanager, an
SMTP server, Chromium, ...) are found or started here. Outside CI a test whose
peer is missing is skipped with the reason; under CI (``CI=true``) it fails
with the same reason, so a missing install step can never pass silently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from streams import Runtime, VirtualClock

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def peer_unavailable(reason: str) -> NoReturn:
    """Skip (locally) or fail (under CI) a test whose real peer cannot be had."""
    if UNDER_CI:
        pytest.fail(f"peer unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_extension(built: object, source: str) -> None:
    """Go on when the C extension compiled from ``source`` is loaded (``built`` is
    not None); else skip when RILLET_PURE_PYTHON asks for none, or skip/fail as
    for a missing peer."""
    from streams._compiled import PURE_PYTHON_VARIABLE

    if built is not None:
        return
    if os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0"):
        pytest.skip(f"{PURE_PYTHON_VARIABLE} asks for the pure-Python code")
    peer_unavailable(f"{source} is not built: pip install -e . builds it (it needs gcc and "
                     f"the Python headers, python3-dev)")


def require_binary(name: str, package: str) -> str:
    """The path of executable ``name``, or skip/fail naming the Debian ``package``."""
    path = shutil.which(name)
    if path is None:
        peer_unavailable(f"{name} not found; install Debian's {package} (see .ci/run)")
    return path


@pytest.fixture(scope="session")
def riemann_client() -> str:
    """Debian's riemann-c-client command line tool."""
    return require_binary("riemann-client", "riemann-c-client")


@pytest.fixture(autouse=True)
def runtime() -> Iterator[Runtime]:
    """Every test starts in its own runtime: a virtual clock at 0, an empty index."""
    with Runtime() as fresh:
        yield fresh


@pytest.fixture
def clock(runtime: Runtime) -> VirtualClock:
    """The test's runtime clock: virtual, at 0."""
    assert isinstance(runtime.clock, VirtualClock)
    return runtime.clock


def open_chromium(profile: Path, *flags: str) -> Any:
    """A headless Debian Chromium driven by selenium, with ``flags`` added."""
    browser = require_binary("chromium", "chromium")
    driver_path = require_binary("chromedriver", "chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        peer_unavailable("selenium is not installed: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--window-size=1100,760", f"--user-data-dir={profile}", *flags):
        options.add_argument(flag)
    try:
        # An explicit driver path: selenium never looks for (or downloads) one.
        return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as error:
        peer_unavailable(f"headless chromium did not start: {error}")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Debian Chromium for the whole session, driven by selenium."""
    driver = open_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(params=["c", "python"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once with the C parser and once with the pure-Python codec."""
    from transport import _codec

    if request.param == "python":
        monkeypatch.setattr(_codec, "_fast_decode", None)
        monkeypatch.setattr(_codec, "_fast_encode", None)
    else:
        require_extension(_codec._fast_decode, "transport/_fastwire.c")
    return str(request.param)


@pytest.fixture
def pure_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode with the pure-Python codec: for tests of WireEvent itself."""
    from transport import _codec

    monkeypatch.setattr(_codec, "_fast_decode", None)
