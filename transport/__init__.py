"""rillet's I/O: the Riemann wire codec, TCP and UDP servers, the client, the CLI.

A config declares its servers with ``tcp_server()`` and ``udp_server()``.
"""

from ._client import (
    Client,
    ClientError,
    RiemannConnectionError,
    RiemannError,
    RiemannTimeout,
    TrioBatcher,
    TrioClient,
    UdpClient,
)
from ._codec import (
    DEFAULT_MAX_FRAME,
    Decoded,
    FrameDecoder,
    ProtocolError,
    WireEvent,
    decode_message,
    encode_reply,
    encode_request,
    frame,
)
from ._instrumentation import instrumentation
from ._queue import async_queue
from ._run import Running, serve
from ._scheduler import TrioScheduler
from ._server import Core, Runtime, TcpServer, UdpServer, tcp_server, udp_server
from ._snapshot import index_snapshot
from ._tls import tls

__all__ = [
    "DEFAULT_MAX_FRAME", "Decoded", "FrameDecoder", "ProtocolError", "WireEvent",
    "decode_message", "encode_reply", "encode_request", "frame",
    "Running", "serve", "TrioScheduler", "async_queue",
    "Core", "Runtime", "TcpServer", "UdpServer", "tcp_server", "udp_server",
    "Client", "ClientError", "RiemannConnectionError", "RiemannError", "RiemannTimeout",
    "TrioBatcher", "TrioClient", "UdpClient",
    "index_snapshot", "instrumentation", "tls",
]
