"""The built-in dashboard in a real browser: headless Chromium against a running rillet.

rillet runs in a thread (its own trio loop) with TCP and the WebSocket server
(tokens on, so the page must carry its token to the socket); events are sent
with rillet's blocking client, and selenium reads the page as a user sees it.
Set RILLET_SCREENSHOT=path to keep the screenshot (docs/dashboard.png is one).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import serving_in_thread

from streams import Config, Event
from streams._index import Index
from transport import Client, Running, TcpServer, WsServer

pytestmark = pytest.mark.network

TOKEN = "dashboard-test-token"
WAIT = 15  # seconds any one thing may take to show up in the page


@pytest.fixture()
def rillet() -> Iterator[Running]:
    """rillet serving in a background thread; yields once every server listens."""
    index = Index()
    config = Config(streams=[index], services=[
        TcpServer(port=0), WsServer(port=0, tokens={TOKEN: "true"})])
    with serving_in_thread(config, index) as running:
        yield running


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page redraws its rows (ages move on every second), so an element
    # found a moment ago may be gone: such a read is simply tried again.
    return WebDriverWait(driver, WAIT, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: condition(d), message=f"the dashboard never showed {what}")


ROWS = """return [...document.querySelectorAll("tr.row")].map(r => ({
    host: r.dataset.host, service: r.dataset.service,
    colour: getComputedStyle(r.querySelector("td.state")).backgroundColor,
    cells: [...r.cells].map(c => c.textContent)}));"""


def rows(driver: Any) -> list[dict[str, Any]]:
    """What the table shows, read in one go."""
    return list(driver.execute_script(ROWS))


def row(driver: Any, host: str, service: str) -> dict[str, Any] | None:
    for found in rows(driver):
        if (found["host"], found["service"]) == (host, service):
            return found
    return None


def state_colour(driver: Any, host: str, service: str) -> str:
    found = row(driver, host, service)
    return "" if found is None else str(found["colour"])


def visible_hosts(driver: Any) -> list[str]:
    return sorted(r["host"] for r in rows(driver))


def click_row(driver: Any, host: str, service: str) -> bool:
    from selenium.webdriver.common.by import By

    selector = f'tr.row[data-host="{host}"][data-service="{service}"]'
    driver.find_element(By.CSS_SELECTOR, selector).click()
    return True


def test_dashboard_shows_recolours_filters_and_plots_live_events(
        chromium: Any, rillet: Running, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    tcp, ws = rillet.ports
    driver = chromium
    driver.get(f"http://127.0.0.1:{ws}/?token={TOKEN}")
    wait_for(driver, lambda d: d.find_element(By.ID, "status").text == "live", "'live'")
    assert visible_hosts(driver) == []

    now = time.time()
    with Client("127.0.0.1", tcp) as client:
        # Sent after the page subscribed: it must appear, green.
        client.send(Event(host="web1", service="api latency", state="ok", metric=120,
                          description="p99 in ms", time=now, ttl=300))
        wait_for(driver, lambda d: row(d, "web1", "api latency") is not None, "the event")
        ok_colour = state_colour(driver, "web1", "api latency")
        assert ok_colour == "rgb(46, 157, 78)"  # --ok

        # A state change recolours the same row.
        client.send(Event(host="web1", service="api latency", state="critical", metric=950,
                          description="p99 in ms", time=now + 1, ttl=300))
        wait_for(driver, lambda d: state_colour(d, "web1", "api latency")
                 == "rgb(211, 58, 44)", "the critical colour")
        shown = row(driver, "web1", "api latency")
        assert shown is not None
        assert shown["cells"][:5] == ["web1", "api latency", "critical", "950", "p99 in ms"]

        for i, (host, service, state, metric) in enumerate([
                ("web1", "cpu", "ok", 0.31), ("web2", "cpu", "warning", 0.87),
                ("web2", "api latency", "ok", 140), ("db1", "disk /var", "critical", 0.97),
                ("db1", "cpu", "ok", 0.12)]):
            client.send(Event(host=host, service=service, state=state, metric=metric,
                              time=now + 2 + i, ttl=300))
        wait_for(driver, lambda d: len(visible_hosts(d)) == 6, "six rows")

        # A query filters what the page shows.
        box = driver.find_element(By.ID, "query")
        box.clear()
        box.send_keys('host = "db1"\n')
        wait_for(driver, lambda d: visible_hosts(d) == ["db1", "db1"], "only db1")
        # A bad query is reported inline.
        box.clear()
        box.send_keys("host = \n")
        error = wait_for(driver, lambda d: d.find_element(By.ID, "error").is_displayed()
                         and d.find_element(By.ID, "error").text, "the query error")
        assert "host = " in error or "expect" in error.lower()
        box.clear()
        box.send_keys("true\n")
        wait_for(driver, lambda d: len(visible_hosts(d)) == 6, "every row again")
        assert not driver.find_element(By.ID, "error").is_displayed()

        # Group by host, pick a row: its metric is plotted from the live stream.
        Select(driver.find_element(By.ID, "group")).select_by_value("host")
        groups = driver.execute_script(
            'return [...document.querySelectorAll("tr.group")].map(g => g.textContent)')
        assert groups == ["host: db1", "host: web1", "host: web2"]
        wait_for(driver, lambda d: click_row(d, "web1", "api latency"), "a clickable row")
        for i, metric in enumerate([700, 540, 610, 480, 390, 420, 300]):
            client.send(Event(host="web1", service="api latency", state="warning"
                              if metric > 400 else "ok", metric=metric, time=now + 10 + i,
                              description="p99 in ms", ttl=300))
        wait_for(driver, lambda d: d.find_element(By.ID, "plot-box").is_displayed()
                 and (row(d, "web1", "api latency") or {}).get("cells", [""] * 4)[3] == "300",
                 "the plot")
        assert driver.find_element(By.ID, "plot-title").text == "web1 api latency: metric"

    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("RILLET_SCREENSHOT"):
        shutil.copy(shot, os.environ["RILLET_SCREENSHOT"])


def test_dashboard_page_needs_its_token(chromium: Any, rillet: Running) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium
    driver.get(f"http://127.0.0.1:{rillet.ports[1]}/")
    assert "a token is required" in driver.find_element(By.TAG_NAME, "body").text
