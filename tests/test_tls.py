"""TLS on the TCP protocol server (issue 10): certificates made in the test, our own client
over trio's SSL and Debian's riemann-c-client with its TLS options."""

from __future__ import annotations

import ssl
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
