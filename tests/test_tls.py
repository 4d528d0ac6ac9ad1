"""TLS on the TCP protocol server (issue 10): certificates made in the test, our own client
over trio's SSL and Debian's riemann-c-client with its TLS options."""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from test_server import needs_riemann_client, read_reply, riemann_client, with_server

from streams import Event, Index
from transport import Running, tcp_server, tls
from transport._codec import encode_request

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.example")
    files = {name: folder / name for name in
             ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}
    ca.cert_pem.write_to_path(files["ca.pem"])
    for blob in server.cert_chain_pems:
        blob.write_to_path(files["server.pem"], append=True)
    server.private_key_pem.write_to_path(files["server.key"])
    for blob in client.cert_chain_pems:
        blob.write_to_path(files["client.pem"], append=True)
    client.private_key_pem.write_to_path(files["client.key"])
    return {"ca": ca, "client": client, **files}


def with_tls(context: ssl.SSLContext, body: Callable[[Running], Awaitable[None]]) -> Index:
    return with_server(body, tls=context)


def client_context(pki: dict[str, Any], *, certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    pki["ca"].configure_trust(context)
    if certificate:
        pki["client"].configure_cert(context)
    return context


async def ask(port: int, context: ssl.SSLContext, payload: bytes) -> Any:
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    async with stream:
        await stream.send_all(payload)
        return await read_reply(stream)  # type: ignore[arg-type]


def test_events_and_queries_over_tls(pki: dict[str, Any]) -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        context = client_context(pki, certificate=False)
        assert (await ask(port, context, encode_request([Event(host="a", service="tls",
                                                                time=1)]))).ok
        reply = await ask(port, context, encode_request(query='service = "tls"'))
        assert [e.host for e in reply.events] == ["a"]
        # Plain TCP on a TLS port gets no reply, and the server keeps serving.
        async with await trio.open_tcp_stream("127.0.0.1", port) as plain:
            await plain.send_all(encode_request(query="true"))
            with trio.fail_after(5):
                try:
                    while await plain.receive_some(100):
                        pass
                except trio.BrokenResourceError:
                    pass
        assert (await ask(port, context, encode_request(query="true"))).ok

    with_tls(tls(pki["server.pem"], pki["server.key"]), body)


def test_client_certificates_are_required_when_asked(pki: dict[str, Any]) -> None:
    async def body(running: Running) -> None:
        port = running.ports[0]
        with pytest.raises((trio.BrokenResourceError, ssl.SSLError)):
            await ask(port, client_context(pki, certificate=False), encode_request(query="true"))
        reply = await ask(port, client_context(pki, certificate=True),
                          encode_request(query="true"))
        assert reply.ok

    with_tls(tls(pki["server.pem"], pki["server.key"], cafile=pki["ca.pem"],
                 verify_clients=True), body)


@needs_riemann_client
def test_riemann_c_client_sends_and_queries_over_tls(pki: dict[str, Any]) -> None:
    async def body(running: Running) -> None:
        port = str(running.ports[0])
        options = ["-G", "-o", f"cafile={pki['ca.pem']}", "-o", f"certfile={pki['client.pem']}",
                   "-o", f"keyfile={pki['client.key']}"]
        await riemann_client("send", *options, "-h", "c-host", "-S", "c-tls", "-s", "ok",
                             "127.0.0.1", port)
        out = await riemann_client("query", *options, 'service = "c-tls"', "127.0.0.1", port)
        assert "c-host" in out

    with_tls(tls(pki["server.pem"], pki["server.key"], cafile=pki["ca.pem"],
                 verify_clients=True), body)


def test_tls_mistakes_fail_at_config_load(pki: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tls\(keyfile='nope.key'\): no such file"):
        tls(pki["server.pem"], "nope.key")
    with pytest.raises(ValueError, match=r"verify_clients=True\) needs cafile="):
        tls(pki["server.pem"], pki["server.key"], verify_clients=True)
    wrong_key = tmp_path / "other.key"
    trustme.CA().issue_cert("x").private_key_pem.write_to_path(wrong_key)
    with pytest.raises(ValueError, match="does the key belong to the certificate"):
        tls(pki["server.pem"], wrong_key)
    with pytest.raises(TypeError, match=r"tcp_server\(tls='yes'\)"):
        tcp_server(port=0, tls="yes")  # type: ignore[arg-type]


# The HTTP listeners: WebSocket (with the dashboard and the event input), SSE, Prometheus.


def http_services(context: ssl.SSLContext) -> list[Any]:
    """A WebSocket, an SSE server and a Prometheus endpoint, each on port 0 under ``context``."""
    from streams._config import Config, declaring
    from transport import prometheus_endpoint, sse_server, ws_server

    with declaring(Config()) as config:
        ws_server(port=0, tls=context)
        sse_server(port=0, tls=context)
        prometheus_endpoint(port=0, tls=context)
    return config.services


def with_https(context: ssl.SSLContext, body: Callable[[Running], Awaitable[None]]) -> None:
    """Run ``body`` against TCP (plain) and the HTTP listeners (TLS): ports [tcp, ws, sse, prom]."""
    from _helpers import run_serving

    from streams import Config
    from transport import TcpServer

    index = Index()
    run_serving(Config(streams=[index], services=[TcpServer(port=0), *http_services(context)]),
                index, body)


def https_get(url: str, verify: ssl.SSLContext, *, stream_until: bytes | None = None,
              **options: Any) -> tuple[int, bytes]:
    """httpx, as any HTTPS client: the status and the body (or the stream up to a needle)."""
    import httpx

    with httpx.Client(verify=verify, timeout=10, **options) as client:
        if stream_until is None:
            response = client.get(url)
            return response.status_code, response.content
        with client.stream("GET", url) as streamed:
            seen = b""
            for chunk in streamed.iter_raw():
                seen += chunk
                if stream_until in seen:
                    break
            return streamed.status_code, seen


def test_http_listeners_serve_https_and_wss(pki: dict[str, Any]) -> None:
    from trio_websocket import open_websocket_url

    async def body(running: Running) -> None:
        _, ws, sse, prom = running.ports
        trust = client_context(pki, certificate=False)
        base = f"https://127.0.0.1:{ws}"
        # The HTTP event input, then the same event read back over each listener.
        import httpx

        def post() -> httpx.Response:
            with httpx.Client(verify=trust, timeout=10) as client:
                return client.post(f"{base}/events", json={"host": "h1", "service": "tls in",
                                                           "metric": 4, "ttl": 300})

        posted = await trio.to_thread.run_sync(post)
        assert (posted.status_code, posted.json()) == (200, {"ok": True, "count": 1})
        status, page = await trio.to_thread.run_sync(https_get, f"{base}/", trust)
        assert status == 200 and b"<html" in page.lower()
        status, scraped = await trio.to_thread.run_sync(
            https_get, f"https://127.0.0.1:{prom}/metrics", trust)
        assert status == 200 and b'tls_in{host="h1",service="tls in"} 4' in scraped
        status, streamed = await trio.to_thread.run_sync(functools.partial(
            https_get, f"https://127.0.0.1:{sse}/index?query=true", trust,
            stream_until=b"\n\n"))
        assert status == 200 and b'"service":"tls in"' in streamed
        async with open_websocket_url(f"wss://127.0.0.1:{ws}/index?query=true",
                                      ssl_context=trust) as socket:
            assert json.loads(await socket.get_message())["service"] == "tls in"
        # A client that does not trust the certificate is refused by its own TLS.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await trio.to_thread.run_sync(https_get, f"{base}/", ssl.create_default_context())
        # Plain HTTP on a TLS port gets no HTTP answer, and the listener keeps serving.
        async with await trio.open_tcp_stream("127.0.0.1", prom) as plain:
            await plain.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            with trio.fail_after(5):
                try:
                    while data := await plain.receive_some(4096):
                        received += data
                except trio.BrokenResourceError:
                    pass
            assert b"HTTP/1.1 200" not in received
        status, _ = await trio.to_thread.run_sync(
            https_get, f"https://127.0.0.1:{prom}/metrics", trust)
        assert status == 200

    with_https(tls(pki["server.pem"], pki["server.key"]), body)


def test_http_listeners_refuse_clients_without_a_certificate_when_asked(
        pki: dict[str, Any]) -> None:
    import httpx

    async def body(running: Running) -> None:
        _, ws, sse, prom = running.ports
        trust = client_context(pki, certificate=False)
        for url in (f"https://127.0.0.1:{ws}/", f"https://127.0.0.1:{sse}/index?query=true",
                    f"https://127.0.0.1:{prom}/metrics"):
            # Under TLS 1.3 the refusal arrives after the client's handshake completes.
            with pytest.raises((httpx.ConnectError, httpx.ReadError,
                                httpx.RemoteProtocolError)):
                await trio.to_thread.run_sync(https_get, url, trust)
        status, page = await trio.to_thread.run_sync(functools.partial(
            https_get, f"https://127.0.0.1:{ws}/", client_context(pki, certificate=True)))
        assert status == 200 and b"<html" in page.lower()
        status, _ = await trio.to_thread.run_sync(functools.partial(
            https_get, f"https://127.0.0.1:{prom}/metrics",
            client_context(pki, certificate=True)))
        assert status == 200

    with_https(tls(pki["server.pem"], pki["server.key"], cafile=pki["ca.pem"],
                   verify_clients=True), body)


def test_http_listeners_refuse_a_tls_that_is_not_a_context() -> None:
    from transport import prometheus_endpoint, sse_server, ws_server

    for declare, name in ((ws_server, "ws_server"), (sse_server, "sse_server"),
                          (prometheus_endpoint, "prometheus_endpoint")):
        with pytest.raises(TypeError, match=rf"{name}\(tls='server.pem'\): tls must be a "
                                            r"context from transport.tls\(\)"):
            declare(port=0, tls="server.pem")


def spki_hash(certificate_pem: bytes) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: base64 SHA-256 of the key."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_chromium_shows_the_dashboard_over_https_and_wss(
        pki: dict[str, Any], tmp_path: Path) -> None:
    from _helpers import serving_in_thread
    from conftest import open_chromium
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from streams import Config
    from transport import Client, TcpServer, WsServer

    # Chromium trusts exactly this server key: the test CA is not installed anywhere.
    pin = spki_hash(pki["server.pem"].read_bytes())
    index = Index()
    config = Config(streams=[index], services=[
        TcpServer(port=0), WsServer(port=0, tls=tls(pki["server.pem"], pki["server.key"]))])
    driver = open_chromium(tmp_path / "profile", f"--ignore-certificate-errors-spki-list={pin}")
    try:
        with serving_in_thread(config, index) as running:
            tcp, ws = running.ports
            driver.get(f"https://127.0.0.1:{ws}/")
            wait = WebDriverWait(driver, 15, poll_frequency=0.05)
            wait.until(lambda d: d.find_element(By.ID, "status").text == "live",
                       message="the dashboard never went live over wss://")
            with Client("127.0.0.1", tcp) as client:
                client.send(Event(host="web1", service="over tls", state="ok", metric=1,
                                  time=time.time(), ttl=300))
            wait.until(lambda d: d.find_elements(
                By.CSS_SELECTOR, 'tr.row[data-host="web1"][data-service="over tls"]'),
                message="the event never reached the page over wss://")
            assert driver.execute_script("return location.protocol") == "https:"
    finally:
        driver.quit()
