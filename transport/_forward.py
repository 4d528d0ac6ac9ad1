"""``forward``: events to another Riemann-compatible server, through the delivery layer."""

from __future__ import annotations

from typing import Any

from streams._validate import StreamArgumentError

from ._client import RiemannError
from ._delivery import NetworkSink, Rejected
from ._graphing import _check_address
from ._trio_client import TrioClient

__all__ = ["forward"]


class forward(NetworkSink):
    """Send events to another Riemann or rillet over TCP (Riemann's ``forward``).

    The stream queues and returns; a trio task sends each batch as requests
    of up to ``request_size`` events, pipelined ``window`` requests deep on
    one connection, and waits for every ack. A lost connection is reopened
    and the batch sent again (at least once). A request the peer answers with
    an error (a stream failed there) is not retried: its batch counts as
    ``failed``. Overflow: drops the oldest queued event.

    Riemann's ``forward`` takes a client and blocks the stream until the
    peer acks; this one takes the peer's address and never blocks.

    >>> from streams._config import Config, declaring
    >>> with declaring(Config()):
    ...     upstream = forward("riemann.example.com", 5555, batch_size=1000)
    >>> upstream
    forward('riemann.example.com', 5555, batch_size=1000)
    """

    __slots__ = ("_client", "host", "port", "request_size", "window")
    default_linger = 0.1  # events can wait 100 ms to go out in fewer requests

    def __init__(self, host: str = "127.0.0.1", port: int = 5555, *, request_size: int = 100,
                 window: int = 16, **options: Any) -> None:
        _check_address("forward", host, port)
        for name, value in (("request_size", request_size), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise StreamArgumentError(
                    f"forward({name}={value!r}): {name} must be an int >= 1")
        self.host = host
        self.port = port
        self.request_size = request_size
        self.window = window
        self._client: TrioClient | None = None
        super().__init__(**options)

    async def send_batch(self, batch: list[Any]) -> None:
        client = self._client
        if client is None:
            # One connect attempt per delivery attempt: the delivery layer backs off.
            client = self._client = TrioClient(self.host, self.port, timeout=self.timeout,
                                               connect_attempts=1)
        size = self.request_size
        requests = [batch[i:i + size] for i in range(0, len(batch), size)]
        try:
            await client.send_many(requests, window=self.window)
        except RiemannError as error:
            raise Rejected(f"{self.host}:{self.port} answered: {error.message}") from error

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
