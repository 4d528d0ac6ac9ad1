"""TLS for the TCP protocol server: a checked ``ssl.SSLContext`` built at config load.

>>> tls(certfile="missing.pem", keyfile="missing.key")
Traceback (most recent call last):
...
ValueError: tls(certfile='missing.pem'): no such file; give the server certificate (PEM), \
e.g. tls(certfile="/etc/rillet/server.pem", keyfile="/etc/rillet/server.key")
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["tls"]


def tls(certfile: str | Path, keyfile: str | Path | None = None, *,
        cafile: str | Path | None = None, verify_clients: bool = False) -> ssl.SSLContext:
    """A server-side TLS context for ``tcp_server(tls=...)``.

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
            raise ValueError(f"tls({name}={str(path)!r}): no such file; give {what}, {example}")
    if verify_clients and cafile is None:
        raise ValueError("tls(verify_clients=True) needs cafile=, the authorities that sign "
                         "client certificates, e.g. tls(..., cafile=\"/etc/rillet/clients-ca.pem\","
                         " verify_clients=True)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
        if cafile is not None:
            context.load_verify_locations(str(cafile))
    except ssl.SSLError as error:
        raise ValueError(f"tls(certfile={str(certfile)!r}, keyfile={keyfile!r}): cannot load "
                         f"the certificate and key ({error.reason or error}); are both PEM, "
                         f"and does the key belong to the certificate?") from None
    context.verify_mode = ssl.CERT_REQUIRED if verify_clients else ssl.CERT_NONE
    return context
