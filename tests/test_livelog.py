"""The live alert log: a recorded `rillet run` writes what each sink received (ALERT frames),
and `rillet replay --check-live` says whether a replay sends exactly that.

The first half drives it as an operator would: a real `rillet run --record` paging a local
PagerDuty and webhook peer, events from a real client, then the CLI. The second half checks
the format (cut, merge, lineage through sampling and gaps) on recordings written directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _alert_peers import ProviderPeer, peers_fixture
from _helpers import rillet_listening

from streams import Event
from transport import Client
from transport._codec import encode_request
from transport._livelog import UNRECORDED, check_live, read_live
from transport._recording import (
    ALERT,
    BY_LAST_REQUEST,
    BY_TIMER,
    BY_UNRECORDED_REQUEST,
    MSG,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    Sampler,
    WireRecorder,
    alert_fields,
    config_sha256,
    cut,
    merge,
    recording_files,
)

KEY = "0123456789abcdef0123456789abcdef"

RULES = "THRESHOLD = 90\n"

CONFIG = """
from streams import *
from transport import async_queue, pagerduty, tcp_server, webhook

from rules import THRESHOLD

tcp_server(port=0)
pager = pagerduty("{key}", url="{url}/v2/enqueue")
hook = webhook("{url}/hooks/live")
periodically_expire(0.2)
streams(
    where(lambda e: e.metric is not None and e.metric > THRESHOLD,
          by("host", throttle(2, 60, pager))),
    where(lambda e: e.service == "health", by("host", stable(0.3, "state", hook))),
    where(lambda e: e.state == "expired", hook),
    where(lambda e: e.service == "deploy", async_queue("notify", webhook("{url}/hooks/queue"))),
    index,
)
"""


def rillet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transport._cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _until(condition: Any, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def provider() -> Iterator[ProviderPeer]:
    yield from peers_fixture(ProviderPeer)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, provider: ProviderPeer) -> dict[str, Any]:
    """One recorded `rillet run`: pages, a stable health check, an expiry, a queued hook."""
    tmp = tmp_path_factory.mktemp("livelog")
    (tmp / "rules.py").write_text(RULES)
    config = tmp / "monitoring.py"
    config.write_text(CONFIG.format(key=KEY, url=provider.url))
    record = tmp / "rec"

    def hooks(path: str) -> list[dict[str, Any]]:
        return [r for r in provider.of("webhook") if r["path"] == path]

    with rillet_listening(config, "--record", str(record), "--pid-file", str(tmp / "pid"),
                          kinds=("TCP",)) as ports, Client("127.0.0.1", ports["TCP"]) as client:
        for metric in (99.0, 99.1, 99.2):  # throttle(2, 60): the third is not paged
            client.send(Event(host="db", service="disk", metric=metric))
        client.send(Event(host="db2", service="disk", metric=99.5))
        client.send(Event(host="web", service="disk", metric=12.0))  # below the threshold
        client.send(Event(host="w", service="health", state="critical"))
        client.send(Event(host="tmp", service="scratch", metric=1.0, ttl=0.3))
        client.send(Event(host="ci", service="deploy", description="v2"))
        _until(lambda: len(provider.of("pagerduty")) >= 3, "3 pages")
        _until(lambda: hooks("/hooks/queue"), "the queued webhook")
        _until(lambda: any(r["json"].get("state") == "expired" for r in hooks("/hooks/live")),
               "the expiry's webhook")
        _until(lambda: any(r["json"].get("service") == "health" for r in hooks("/hooks/live")),
               "stable's webhook")
    # Stopping the server closed the recording; what the peer got is final.
    return {"tmp": tmp, "config": config, "record": record, "pages": provider.of("pagerduty"),
            "live_hooks": hooks("/hooks/live"), "queued": hooks("/hooks/queue")}


@pytest.mark.network
def test_the_recording_holds_what_each_sink_received(live: dict[str, Any]) -> None:
    log = read_live(live["record"])
    assert log.recorded and not log.gaps and log.missing_ids() == 0
    assert log.configs == {config_sha256(live["config"])}
    by_sink: dict[str, list[Any]] = {}
    for alert in log.alerts:
        by_sink.setdefault(alert.sink, []).append(alert)
    # The names are a replay's: the first webhook, the queue (whose own webhook is not
    # reported: a replay never drains it either).
    assert set(by_sink) == {"pagerduty", "webhook", "async_queue"}
    pages = [(a.event["host"], a.event["metric"]) for a in by_sink["pagerduty"]]
    assert pages == [(p["json"]["payload"]["source"], p["json"]["payload"]["custom_details"]
                      ["metric"]) for p in live["pages"]]
    assert pages == [("db", 99.0), ("db", 99.1), ("db2", 99.5)]
    assert len(by_sink["webhook"]) == len(live["live_hooks"])
    assert [a.event["host"] for a in by_sink["async_queue"]] == ["ci"] and live["queued"]
    # Lineage: a page was sent while its request was streamed; the expiry ran on a timer.
    assert all(isinstance(a.ordinal, int) for a in by_sink["pagerduty"])
    assert [a.ordinal for a in by_sink["pagerduty"]] == sorted({a.ordinal for a in
                                                                by_sink["pagerduty"]})
    expired = [a for a in by_sink["webhook"] if a.event["state"] == "expired"]
    assert expired and all(a.ordinal is None for a in expired)
    assert [a.id for a in log.alerts] == list(range(len(log.alerts)))
    done = rillet("recording", "info", str(live["record"]))
    assert done.returncode == 0 and f"alert {len(log.alerts)}" in done.stdout
    assert f"live alerts {len(log.alerts)} (what the sinks received" in done.stdout
    assert "--check-live'), of every sink\n" in done.stdout


@pytest.mark.network
def test_check_live_passes_for_the_config_that_ran(live: dict[str, Any]) -> None:
    done = rillet("replay", str(live["config"]), "--recording", str(live["record"]),
                  "--check-live")
    assert done.returncode == 0, done.stdout + done.stderr
    count = len(read_live(live["record"]).alerts)
    assert f"{count} live alerts, {count} replayed, {count} the same" in done.stdout
    assert "the replay sends exactly what the sinks received live" in done.stdout


@pytest.mark.network
def test_explain_a_live_alert_by_its_id(live: dict[str, Any]) -> None:
    page = next(a for a in read_live(live["record"]).alerts if a.sink == "pagerduty")
    done = rillet("explain", str(live["config"]), "--recording", str(live["record"]),
                  "--alert", str(page.id), "--live")
    assert done.returncode == 0, done.stdout + done.stderr
    head, *path = done.stdout.splitlines()
    assert head.startswith(f"LIVE ALERT #{page.id} pagerduty host='db'")
    assert f"<- input #{page.ordinal}; replayed as seq" in head
    assert any("throttle" in line for line in path)
    done = rillet("explain", str(live["config"]), "--recording", str(live["record"]),
                  "--alert", "999", "--live")
    assert done.returncode == 2 and "has no live alert 999" in done.stderr


@pytest.mark.network
def test_a_changed_rule_module_fails_the_check_naming_the_lost_pages(
        live: dict[str, Any]) -> None:
    # Same config file (same sha256), but the module it imports moved the threshold: what
    # a replay cannot see from the digest, the comparison finds.
    moved = live["tmp"] / "moved"
    moved.mkdir()
    (moved / "rules.py").write_text("THRESHOLD = 99.05\n")
    config = moved / "monitoring.py"
    config.write_bytes(live["config"].read_bytes())
    done = rillet("replay", str(config), "--recording", str(live["record"]), "--check-live")
    assert done.returncode == 1, done.stdout + done.stderr
    lost = [line for line in done.stdout.splitlines() if line.startswith("LIVE ONLY")]
    assert len(lost) == 1 and "pagerduty host='db' service='disk' metric=99.0" in lost[0]
    assert "the sink got it live, the replay does not send it" in lost[0]
    assert "MISMATCH: 1 live only, 1 replay only" in done.stdout  # db 99.2 is paged instead


@pytest.mark.network
def test_another_config_is_refused_with_the_reason(live: dict[str, Any]) -> None:
    other = live["tmp"] / "other.py"
    other.write_text(live["config"].read_text().replace("THRESHOLD,", "THRESHOLD + 5,"))
    done = rillet("replay", str(other), "--recording", str(live["record"]), "--check-live")
    assert done.returncode == 2
    recorded = config_sha256(live["config"])[:16]
    assert f"was recorded running config sha256:{recorded}, not {other}" in done.stderr
    assert "rillet diff OLD.py" in done.stderr
    done = rillet("replay", str(live["config"]), "--recording", str(live["record"]),
                  "--check-live", "--from", "0")
    assert done.returncode == 2 and "compares the whole recording" in done.stderr
    done = rillet("replay", str(live["config"]), "--recording", str(live["record"]),
                  "--check-live", "--check", "--alerts", str(live["tmp"] / "a.jsonl"))
    assert done.returncode == 2 and "leave out --alerts, --check" in done.stderr


# The format, on recordings written directly ----------------------------------------------

REPLAYED = """
from streams import *
from transport import webhook

hook = webhook("http://127.0.0.1:9/never")
streams(where(lambda e: e.metric is not None and e.metric > 90, hook))
"""


def _msg(host: str, metric: int) -> bytes:
    return encode_request([Event(host=host, service="s", metric=metric, time=1.0)],
                          framed=False)


def _alerts(path: Path) -> list[tuple[int, int]]:
    return [(f.conn, f.n) for f in RecordingReader(path).frames() if f.kind == ALERT]


def _recorded(tmp_path: Path, feed: Any, config: str = "c" * 64, **options: Any) -> Path:
    """A recording made by the live recorder (its writer thread) from ``feed(recorder)``."""
    directory = tmp_path / "rec"
    # The config's digest from the start: the writer thread writes the header at once.
    recorder = WireRecorder(directory, alerts=True, config_sha256=config, **options)
    try:
        feed(recorder)
    finally:
        recorder.close()
    return directory


def test_the_writer_thread_works_out_each_alerts_lineage(tmp_path: Path) -> None:
    def feed(recorder: WireRecorder) -> None:
        recorder.message(_msg("b", 95), 100.0, 1)
        recorder.alert(100.0, "webhook", Event(host="b", metric=95.0))
        recorder.tick(100.5)
        recorder.alert(100.5, "webhook", Event(host="b", state="expired"))
        recorder.message(_msg("a", 5), 101.0, 1)  # sampled out below
        recorder.alert(101.0, "webhook", Event(host="a", metric=5.0))

    sample = Sampler(("host",), 50.0)
    assert sample.kept(Event(host="b")) and not sample.kept(Event(host="a"))
    config = tmp_path / "config.py"
    config.write_text(REPLAYED)
    directory = _recorded(tmp_path, feed, sample=sample)
    [path] = recording_files(directory)
    assert _alerts(path) == [(0, BY_LAST_REQUEST), (1, BY_TIMER), (2, BY_UNRECORDED_REQUEST)]
    log = read_live(directory)
    assert [a.ordinal for a in log.alerts] == [0, None, UNRECORDED]
    assert log.alerts[1].event["state"] == "expired" and log.alerts[1].t == 100.5
    assert RecordingReader(path).header["alerts"] is True
    assert RecordingReader(path).header["config_sha256"] == "c" * 64
    with pytest.raises(RecordingError, match=r"is sampled \(host:50%\)"):
        check_live(config, directory)


def test_a_full_queue_leaves_holes_in_the_alert_ids_and_the_check_refuses(
        tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(REPLAYED)

    def feed(recorder: WireRecorder) -> None:
        recorder.message(_msg("a", 95), 100.0, 1)
        recorder.alert(100.0, "webhook", Event(host="a", metric=95.0))
        recorder.flush()
        recorder._queue_chunks = 0  # the writer falls behind: the next chunk is dropped
        recorder.alert(100.2, "webhook", Event(host="a", metric=96.0))
        recorder.flush()
        recorder._queue_chunks = 64
        recorder.alert(100.4, "webhook", Event(host="a", metric=97.0))

    directory = _recorded(tmp_path, feed, config_sha256(config))
    log = read_live(directory)
    assert [a.id for a in log.alerts] == [0, 2] and log.missing_ids() == 1
    with pytest.raises(RecordingError, match="lost 0 requests and 1 live alerts"):
        check_live(config, directory)


def test_cut_keeps_alerts_and_forgets_the_lineage_it_cut_off_merge_drops_them(
        tmp_path: Path) -> None:
    source = tmp_path / "in.rrec"
    writer = RecordingWriter(source, start_us=0, alerts=True, config="d" * 64)
    for second in range(1, 4):
        writer.message(second * 1_000_000, 1, _msg("a", 95))
        writer.alert(second * 1_000_000 + 10, second, BY_LAST_REQUEST, b"{}")
    writer.close()
    out = tmp_path / "cut.rrec"
    # From just after the second request: its alert stays, naming no request of the cut.
    assert cut(source, out, start=2.000005) == 1
    assert _alerts(out) == [(2, BY_UNRECORDED_REQUEST), (3, BY_LAST_REQUEST)]
    assert RecordingReader(out).header["alerts"] is True
    assert RecordingReader(out).header["config_sha256"] == "d" * 64
    merged = tmp_path / "merged.rrec"
    assert merge([source, out], merged) == 4
    kinds = [f.kind for f in RecordingReader(merged).frames()]
    assert ALERT not in kinds and kinds.count(MSG) == 4


def test_a_recording_without_live_alerts_says_which_recordings_have_them(
        tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(REPLAYED)
    old = tmp_path / "old.rrec"
    writer = RecordingWriter(old, start_us=0)  # what 'record import' and older rillets write
    writer.message(1_000_000, 1, _msg("a", 95))
    writer.close()
    with pytest.raises(RecordingError, match="holds no live alerts: only 'rillet run --record'"):
        check_live(config, old)
    done = rillet("replay", str(config), "--recording", str(old), "--check-live")
    assert done.returncode == 2 and "holds no live alerts" in done.stderr


def test_check_live_in_process_reports_each_kind_of_difference(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(REPLAYED)
    source = tmp_path / "r.rrec"
    digest = config_sha256(config)

    def alert(host: str, metric: int) -> bytes:
        event = alert_fields(Event(host=host, service="s", metric=metric, time=1.0))
        return json.dumps({"sink": "webhook", "config_sha256": digest, "event": event}).encode()

    writer = RecordingWriter(source, start_us=0, alerts=True, config=digest)
    writer.message(1_000_000, 1, _msg("a", 95))
    writer.alert(1_000_100, 0, BY_LAST_REQUEST, alert("a", 95))
    writer.message(2_000_000, 1, _msg("b", 96))
    writer.alert(4_000_000, 1, BY_LAST_REQUEST, alert("b", 96))  # 2 s late
    writer.message(3_000_000, 1, _msg("c", 97))  # the replay pages c; live did not
    writer.message(5_000_000, 1, _msg("d", 5))
    writer.alert(5_000_000, 2, BY_LAST_REQUEST, alert("d", 5))  # live only
    writer.close()
    check = check_live(config, source, tolerance=1.0)
    assert not check.ok
    assert [a.id for a in check.live_only] == [2]
    assert [(r.input, r.event.host) for r in check.replay_only] == [(2, "c")]
    assert [(a.id, round(apart, 3)) for a, _r, apart in check.apart] == [(1, 2.0)]
    text = check.text()
    assert "LIVE ONLY    #2 webhook host='d'" in text and "<- input #3" in text
    assert "REPLAY ONLY  seq 2 webhook host='c'" in text
    assert "TIME         #1 webhook host='b'" in text and "2.000000 s apart" in text
    assert check_live(config, source, tolerance=3.0).apart == []


def test_record_alerts_keeps_the_named_sinks_and_check_live_compares_those(
        tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(REPLAYED + 'streams(webhook("http://127.0.0.1:9/other"))\n')
    digest = config_sha256(config)
    source = tmp_path / "r.rrec"
    writer = RecordingWriter(source, start_us=0, alerts=True, alert_sinks=["webhook"],
                             config=digest)
    writer.message(1_000_000, 1, _msg("a", 95))
    event = alert_fields(Event(host="a", service="s", metric=95, time=1.0))
    writer.alert(1_000_000, 0, BY_LAST_REQUEST, json.dumps(
        {"sink": "webhook", "config_sha256": digest, "event": event}).encode())
    writer.close()
    check = check_live(config, source)
    # webhook#2 got the event in the replay too, but its deliveries were not recorded.
    assert check.ok and [r.sink for r in check.replayed] == ["webhook"]
    assert "1 live alerts, 1 replayed (sinks webhook, as recorded), 1 the same" in check.text()


def test_record_alerts_naming_no_sink_of_the_config_stops_rillet_run(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(REPLAYED + 'from transport import tcp_server\ntcp_server(port=0)\n')
    done = rillet("run", str(config), "--record", str(tmp_path / "rec"), "--record-alerts",
                  "pagerduty,webhook", "--pid-file", str(tmp_path / "pid"))
    assert done.returncode == 2
    assert ("--record-alerts 'pagerduty,webhook': the config declares no sink named "
            "pagerduty; its sinks, as a replay names them: webhook") in done.stderr


def test_a_reload_is_noted_and_the_check_refuses_to_replay_across_it(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from transport._livelog import note_config
    from transport._tap import TapRecorder, Tee

    config, reloaded = tmp_path / "config.py", tmp_path / "reloaded.py"
    config.write_text(REPLAYED)
    reloaded.write_text(REPLAYED + "# edited\n")

    def feed(recorder: WireRecorder) -> None:
        recorder.message(_msg("a", 95), 100.0, 1)
        recorder.alert(100.0, "webhook", Event(host="a", metric=95.0))
        runtime = SimpleNamespace(recorder=Tee(recorder, TapRecorder()))
        recorder.mark(101.0, f"reload {reloaded}")  # what Running.reload does
        note_config(runtime, reloaded)
        recorder.message(_msg("a", 96), 102.0, 1)
        recorder.alert(102.0, "webhook", Event(host="a", metric=96.0))

    directory = _recorded(tmp_path, feed, config_sha256(config))
    log = read_live(directory)
    assert [a.config for a in log.alerts] == [config_sha256(config), config_sha256(reloaded)]
    with pytest.raises(RecordingError, match=r"reloaded during .* \(reload .*reloaded\.py\)"):
        check_live(config, directory)


@pytest.mark.network
def test_record_alerts_names_the_recorded_sinks_in_the_header(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(REPLAYED + 'from transport import tcp_server\ntcp_server(port=0)\n'
                      'streams(webhook("http://127.0.0.1:9/other"))\n')
    with rillet_listening(config, "--record", str(tmp_path / "rec"), "--record-alerts",
                          "webhook#2", "--pid-file", str(tmp_path / "pid"), kinds=("TCP",)):
        pass
    [path] = recording_files(tmp_path / "rec")
    header = RecordingReader(path).header
    assert header["alerts"] is True and header["alert_sinks"] == ["webhook#2"]
    assert header["config_sha256"] == config_sha256(config)
    done = rillet("recording", "info", str(tmp_path / "rec"))
    assert "live alerts 0 (what the sinks received, for 'rillet replay --check-live'), of " \
           "webhook#2" in done.stdout
