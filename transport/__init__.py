"""rillet's I/O: the Riemann wire codec, TCP and UDP servers, the client, the CLI, sinks.

A config declares its servers with ``tcp_server()`` and ``udp_server()``, and
its network sinks (``graphite``, ``influxdb``, ``forward``, ...) by building them.
"""

from ._alerting import alertmanager, mailer, pagerduty, slack, webhook
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
from ._delivery import HttpSink, NetworkSink, Rejected
from ._forward import forward
from ._graphing import graphite, graphite_annotations, graphite_path, influxdb
from ._messages import slack_escape, slack_text
from ._prometheus import prometheus_endpoint
from ._queue import async_queue
from ._run import Running, serve
from ._scheduler import TrioScheduler
from ._server import Core, Runtime, TcpServer, UdpServer, tcp_server, udp_server

__all__ = [
    "DEFAULT_MAX_FRAME", "Decoded", "FrameDecoder", "ProtocolError", "WireEvent",
    "decode_message", "encode_reply", "encode_request", "frame",
    "Running", "serve", "TrioScheduler", "async_queue",
    "Core", "Runtime", "TcpServer", "UdpServer", "tcp_server", "udp_server",
    "Client", "ClientError", "RiemannConnectionError", "RiemannError", "RiemannTimeout",
    "TrioBatcher", "TrioClient", "UdpClient",
    # sinks and the delivery layer they share
    "NetworkSink", "HttpSink", "Rejected",
    "forward", "graphite", "graphite_annotations", "graphite_path", "influxdb",
    "prometheus_endpoint",
    "mailer", "alertmanager", "pagerduty", "slack", "slack_escape", "slack_text",
    "webhook",
]
