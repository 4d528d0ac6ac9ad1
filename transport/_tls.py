"""TLS for every TCP listener: a checked ``ssl.SSLContext`` built at config load.

The same context serves the Riemann TCP server, the WebSocket and SSE
servers (with the dashboard and the HTTP event input) and the Prometheus
endpoint: each takes ``tls=tls(...)``, checks it with :func:`check_tls` and
wraps every accepted connection with :func:`server_stream`.

>>> tls(certfile="missing.pem", keyfile="missing.key")  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
streams.StreamArgumentError: tls(certfile='missing.pem'): no such file; give the server
certificate (PEM), e.g. tls(certfile="/etc/rillet/server.pem", keyfile="/etc/rillet/server.key")
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trio

from streams._validate import StreamArgumentError

__all__ = ["check_tls", "server_stream", "tls"]


def tls(certfile: str | Path, keyfile: str | Path | None = None, *,
        cafile: str | Path | None = None, verify_clients: bool = False) -> ssl.SSLContext:
    """A server-side TLS context for ``tls=`` of ``tcp_server``, ``ws_server``, ``sse_server``
    and ``prometheus_endpoint``.

    ``certfile`` holds the server's certificate chain (PEM) and ``keyfile``
    its private key (omit it when the key is in ``certfile``). With
    ``verify_clients=True`` every client must present a certificate signed
    by an authority in ``cafile``; without it, clients are not asked for one.
    TLS 1.2 is the oldest version accepted.
    """
    example = 'e.g. tls(certfile="/etc/rillet/server.pem", keyfile="/etc/rillet/server.key")'
    for name, path, what in (("certfile", certfile, "the server certificate (PEM)"),
                             ("keyfile", keyfile, "the server's private key (PEM)"),
                             ("cafile", cafile, "the client certificate authorities (PEM)")):
        if path is not None and not Path(path).is_file():
            raise StreamArgumentError(
                f"tls({name}={str(path)!r}): no such file; give {what}, {example}")
    if verify_clients and cafile is None:
        raise StreamArgumentError(
            "tls(verify_clients=True) needs cafile=, the authorities that sign "
            "client certificates, e.g. tls(..., cafile=\"/etc/rillet/clients-ca.pem\","
            " verify_clients=True)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
        if cafile is not None:
            context.load_verify_locations(str(cafile))
    except ssl.SSLError as error:
        raise StreamArgumentError(
            f"tls(certfile={str(certfile)!r}, keyfile={keyfile!r}): cannot load "
            f"the certificate and key ({error.reason or error}); are both PEM, "
            f"and does the key belong to the certificate?") from None
    context.verify_mode = ssl.CERT_REQUIRED if verify_clients else ssl.CERT_NONE
    return context


def check_tls(value: Any, caller: str) -> ssl.SSLContext | None:
    """``value`` if it is a context from :func:`tls` (or None); a TypeError naming ``caller``."""
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise StreamArgumentError(
            f"{caller}(tls={value!r}): tls must be a context from transport.tls(), "
            f"e.g. tls=tls(certfile=\"server.pem\", keyfile=\"server.key\")")
    return value


def server_stream(stream: Any, context: ssl.SSLContext | None, *,
                  http: bool = False) -> trio.abc.Stream:
    """``stream`` as the server side of TLS under ``context``, or as is without one.

    The handshake happens on the first read or write, so a listener's own
    timeouts bound a client that never completes it. ``http`` accepts a
    client that closes without TLS's close_notify, as browsers and HTTP
    clients do (RFC 2818 lets HTTP's own framing tell a truncated response).
    """
    if context is None:
        return stream  # type: ignore[no-any-return]
    return trio.SSLStream(stream, context, server_side=True, https_compatible=http)
