"""rillet's I/O: the Riemann wire codec, TCP and UDP servers, the client, the CLI, sinks.

A config declares its servers with ``tcp_server()`` and ``udp_server()``, the
live view and other inputs with ``ws_server()``, ``sse_server()`` and
``graphite_server()``, and its network sinks (``graphite``, ``influxdb``,
``forward``, ...) by building them.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._alerting import alertmanager, mailer, pagerduty, slack, webhook
    from ._checkpoint import CheckpointReader, CheckpointWriter
    from ._client import (
        Client,
        ClientError,
        RiemannConnectionError,
        RiemannError,
        RiemannTimeout,
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
    from ._diff import diff_alerts
    from ._explain import explain_alert, why_not
    from ._forward import forward
    from ._graphing import graphite, graphite_annotations, graphite_path, influxdb
    from ._graphite_input import GraphiteServer, graphite_server
    from ._http import SseServer, WsServer, sse_server, ws_server
    from ._instrumentation import instrumentation
    from ._messages import slack_escape, slack_text
    from ._prometheus import prometheus_endpoint
    from ._queue import async_queue
    from ._recording import RecordingReader, RecordingWriter, import_jsonl
    from ._run import Running, serve
    from ._scheduler import TrioScheduler
    from ._server import TcpServer, UdpServer, tcp_server, udp_server
    from ._snapshot import index_snapshot
    from ._tls import tls
    from ._trio_client import TrioBatcher, TrioClient

__all__ = [
    "DEFAULT_MAX_FRAME", "Decoded", "FrameDecoder", "ProtocolError", "WireEvent",
    "decode_message", "encode_reply", "encode_request", "frame",
    "Running", "serve", "TrioScheduler", "async_queue",
    "TcpServer", "UdpServer", "tcp_server", "udp_server",
    "Client", "ClientError", "RiemannConnectionError", "RiemannError", "RiemannTimeout",
    "TrioBatcher", "TrioClient", "UdpClient",
    # sinks and the delivery layer they share
    "NetworkSink", "HttpSink", "Rejected",
    "forward", "graphite", "graphite_annotations", "graphite_path", "influxdb",
    "prometheus_endpoint",
    "mailer", "alertmanager", "pagerduty", "slack", "slack_escape", "slack_text",
    "webhook",
    # the live view and the other inputs
    "GraphiteServer", "SseServer", "WsServer", "graphite_server", "sse_server", "ws_server",
    # operations: persistence, TLS, self-instrumentation
    "index_snapshot", "instrumentation", "tls",
    # recordings: replay, diff, why-not
    "RecordingReader", "import_jsonl", "diff_alerts", "why_not",
    "RecordingWriter", "CheckpointReader", "CheckpointWriter", "explain_alert",
]

# The modules behind __all__, imported on first use of any public name (PEP 562):
# `rillet send` imports transport._client alone, without trio and the servers.
_PUBLIC_MODULES = ("_alerting", "_client", "_codec", "_delivery", "_forward", "_graphing",
                   "_instrumentation", "_messages", "_prometheus", "_queue", "_run", "_scheduler",
                   "_server", "_snapshot", "_tls", "_trio_client", "_graphite_input", "_http",
                   "_recording", "_replay", "_diff", "_explain", "_checkpoint")


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    exported = set(__all__)
    for module_name in _PUBLIC_MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        for public in exported.intersection(vars(module)):
            globals()[public] = getattr(module, public)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
