"""The delivery layer: how a sink hands events to the network without holding up the streams.

A network sink is two halves in one object:

- a synchronous stream: ``sink(event)`` (or ``sink([e1, e2])``) appends to a
  bounded queue and returns. It never blocks and never raises into the
  streams. When the queue is full the sink's overflow policy decides:
  ``"drop_oldest"`` (metrics: the newest value matters most; drops are
  counted, and logged at 1, 2, 4, 8, ... drops) or ``"drop_newest"`` (alerts:
  what is queued goes out first; every drop is logged with the event and
  counted);
- a trio task, ``serve``, declared as a service of the config being loaded
  (like ``tcp_server``) and started with the servers. It drains the queue in
  batches of up to ``batch_size`` through :meth:`NetworkSink.send_batch` (after
  waiting ``linger`` seconds for a fuller batch when one is not full),
  retrying a failed batch with capped exponential backoff and jitter (after
  :meth:`NetworkSink.disconnect`, so the retry reconnects). When the config
  stops (the nursery is cancelled) it keeps delivering for at most
  ``flush_timeout`` seconds (and never past the deadline of a graceful stop,
  ``rillet run --stop-within``), then logs how many events it dropped.

Delivery is at least once: a batch that failed half-way is sent again whole.

API for sink authors (the alerting and graphing sinks are built on it)::

    class NetworkSink(Stream):                    # shared: one queue whatever forks feed it
        overflow: ClassVar[str] = "drop_oldest"   # the sink's default policy
        default_linger: ClassVar[float] = 0.0     # the sink's default linger
        secret_options: ClassVar[frozenset[str]]  # keyword options the repr hides
                                                  # (default: token, password)
        def __init__(self, *, queue_size=10_000, batch_size=500, overflow=None,
                     timeout=10.0, backoff=0.5, max_backoff=30.0, flush_timeout=5.0,
                     linger=None)
        async def send_batch(self, batch: list[Any]) -> None   # override: deliver or raise;
                                      # may delete delivered events from the front of batch,
                                      # so that a retry resends only the rest
        async def disconnect(self) -> None                     # override: drop a connection
        def statistics(self) -> dict[str, Any]
        async def serve(self, runtime, *, task_status=trio.TASK_STATUS_IGNORED) -> None

    class Rejected(Exception)     # raise from send_batch: the peer refused this batch for
                                  # good (e.g. HTTP 400); it is counted in "failed", not retried
    class HttpSink(NetworkSink)   # send_batch implementations call `await self.post(...)`
        def __init__(self, url: str, *, headers=None, **delivery_options)
        async def post(self, url=None, *, json=None, content=None, headers=None,
                       params=None) -> httpx.Response    # url defaults to the sink's
    def backoff_delays(backoff, max_backoff) -> Iterator[float]   # capped, jittered
    def field_names(caller, name, value) -> tuple[str, ...]      # validates a names option

A subclass validates its own configuration, then calls
``super().__init__(**delivery_options)``; the arguments it was called with
make its repr (``graphite(host='graphite', port=2003)``). ``send_batch`` runs
under ``timeout``; any exception other than :class:`Rejected` (a refused
connection, a reset, a timeout, HTTP 5xx/429) is retried. Payload building is
kept out of ``send_batch`` in pure functions, tested without a network.

``statistics()`` returns ``queued`` (waiting, including a batch being
retried), ``size``, ``overflow``, ``sent`` (events delivered), ``failed``
(events the peer rejected for good), ``dropped`` (events dropped by the
overflow policy or at shutdown), ``retries`` (attempts repeated after a
failure), ``last_error`` (text or None) and ``last_success`` (Unix time or
None).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from streams import Stream
from streams._config import service
from streams._core import _describe
from streams._validate import StreamArgumentError

from ._watchdog import stop_deadline

if TYPE_CHECKING:
    import httpx

__all__ = ["OVERFLOW_POLICIES", "HttpSink", "NetworkSink", "Rejected", "backoff_delays",
           "field_names"]

log = logging.getLogger("rillet.delivery")

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")


class Rejected(Exception):
    """The peer refused a batch for good (bad request, bad credentials): do not retry it."""


def backoff_delays(backoff: float, max_backoff: float,
                   uniform: Any = random.uniform) -> Iterator[float]:
    """Capped exponential backoff with jitter: each delay drawn from [d/2, d].

    Jitter keeps many rillets (or many sinks) that lost the same peer from
    reconnecting in lockstep when it comes back.

    >>> list(zip(range(5), backoff_delays(1, 4, uniform=lambda low, high: high)))
    [(0, 1), (1, 2), (2, 4), (3, 4), (4, 4)]
    >>> all(0.5 <= d <= 1 for _, d in zip(range(20), backoff_delays(1, 1)))
    True
    """
    delay = backoff
    while True:
        yield uniform(delay / 2, delay)
        delay = min(delay * 2, max_backoff)


def _number(caller: str, name: str, value: Any, *, minimum: float = 0,
            integer: bool = False, example: str = "") -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or math.isnan(value) \
            or value < minimum or math.isinf(value):
        kind = "an int" if integer else "a number"
        raise StreamArgumentError(
            f"{caller}({name}={value!r}): {name} must be {kind} >= {minimum}"
            f"{', e.g. ' + example if example else ''}")


def field_names(caller: str, name: str, value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of field names, or a TypeError naming the argument.

    >>> field_names("influxdb", "tag_fields", ["host", "env"])
    ('host', 'env')
    """
    if isinstance(value, str) or not isinstance(value, tuple | list) or \
            not all(isinstance(n, str) for n in value):
        raise StreamArgumentError(
            f"{caller}({name}={value!r}): {name} must be a tuple of field names, "
            f"e.g. {name}=('host', 'region')")
    return tuple(value)


class NetworkSink(Stream):
    """Base of the sinks that deliver events over the network (see the module docs)."""

    __slots__ = ("_batch", "_queue", "_waiting", "_wakeup", "backoff", "batch_size",
                 "dropped", "failed", "flush_timeout", "last_error", "last_success",
                 "linger", "max_backoff", "overflow_policy", "queue_size", "retries", "sent",
                 "timeout")
    shared = True
    overflow: ClassVar[str] = "drop_oldest"
    default_linger: ClassVar[float] = 0.0
    #: Keyword options shown as <hidden> in the repr, which log lines quote.
    secret_options: ClassVar[frozenset[str]] = frozenset({"token", "password"})

    def __init__(self, *, queue_size: int = 10_000, batch_size: int = 500,
                 overflow: str | None = None, timeout: float = 10.0, backoff: float = 0.5,
                 max_backoff: float = 30.0, flush_timeout: float = 5.0,
                 linger: float | None = None) -> None:
        caller = type(self).__name__
        _number(caller, "queue_size", queue_size, minimum=1, integer=True,
                example="queue_size=10000")
        _number(caller, "batch_size", batch_size, minimum=1, integer=True,
                example="batch_size=500")
        for name, value in (("timeout", timeout), ("flush_timeout", flush_timeout)):
            _number(caller, name, value, example=f"{name}=5")
        if timeout == 0:
            raise StreamArgumentError(
                f"{caller}(timeout=0): timeout must be > 0 seconds, e.g. timeout=10")
        _number(caller, "backoff", backoff, example="backoff=0.5")
        linger = self.default_linger if linger is None else linger
        _number(caller, "linger", linger, example="linger=0.1")
        _number(caller, "max_backoff", max_backoff, minimum=backoff,
                example=f"max_backoff={max(30, backoff)}")
        policy = self.overflow if overflow is None else overflow
        if policy not in OVERFLOW_POLICIES:
            raise StreamArgumentError(
                f"{caller}(overflow={overflow!r}): the overflow policy must be "
                f"one of {OVERFLOW_POLICIES}, e.g. overflow='drop_oldest'")
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.overflow_policy = policy
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.flush_timeout = flush_timeout
        self.linger = linger
        self._queue: deque[Any] = deque()
        self._batch: list[Any] = []
        self._wakeup = trio.Event()
        self._waiting = False
        self.sent = self.failed = self.dropped = self.retries = 0
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._set_children(())
        service(self)

    def __repr__(self) -> str:
        hidden = self.secret_options
        parts = [_describe(a) for a in self._args]
        parts += [f"{k}={'<hidden>' if k in hidden else _describe(v)}"
                  for k, v in self._kwargs.items()]
        return f"{type(self).__name__}({', '.join(parts)})"

    # The stream half: synchronous, never blocks, never raises -------------

    def __call__(self, event: Any) -> None:
        kind = type(event)
        if kind is list or kind is tuple:
            for one in event:
                self._put(one)
            return
        # The common case inlined: this line runs for every event a sink gets.
        queue = self._queue
        if len(queue) < self.queue_size:
            queue.append(event)
            if self._waiting:
                self._waiting = False
                self._wakeup.set()
        else:
            self._put(event)

    def _put(self, event: Any) -> None:
        queue = self._queue
        if len(queue) >= self.queue_size:
            self._overflowed(event)
            if self.overflow_policy == "drop_newest":
                return
            queue.popleft()
        queue.append(event)
        if self._waiting:
            self._waiting = False
            self._wakeup.set()

    def _overflowed(self, event: Any) -> None:
        self.dropped += 1
        try:
            if self.overflow_policy == "drop_newest":
                log.error("%r: queue full (%d), dropped %s (%d dropped so far); the peer is "
                          "down or slow: see statistics()['last_error']", self,
                          self.queue_size, _summary(event), self.dropped)
            elif self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8, ...
                log.warning("%r: queue full (%d), dropped the oldest event (%d so far)",
                            self, self.queue_size, self.dropped)
        except Exception:  # a broken repr or handler must not reach the streams
            pass

    # What subclasses provide --------------------------------------------

    async def send_batch(self, batch: list[Any]) -> None:
        """Deliver ``batch`` or raise (:class:`Rejected` for a refusal that retrying won't fix)."""
        raise NotImplementedError(f"{type(self).__name__} must implement send_batch")

    async def disconnect(self) -> None:
        """Drop the connection, if any: called after a failure and at shutdown."""

    # The trio half ------------------------------------------------------

    async def serve(self, runtime: Any, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver queued events until cancelled, then flush within ``flush_timeout``."""
        task_status.started(0)
        try:
            while True:
                if not self._batch:
                    await self._next_batch()
                await self._deliver()
        finally:
            stopping = trio.current_time()
            with trio.CancelScope(shield=True) as scope:
                # No later than a graceful stop's deadline (SIGTERM), whatever flush_timeout.
                scope.deadline = min(trio.current_time() + self.flush_timeout, stop_deadline())
                if self._batch:
                    # Cancelled mid-attempt: the connection may hold half a batch.
                    await self._disconnect_quietly()
                while self._batch or self._queue:
                    if not self._batch:
                        self._take()
                    await self._deliver()
            left = len(self._batch) + len(self._queue)
            if left:
                self.dropped += left
                self._batch.clear()
                self._queue.clear()
                log.error("%r: shutting down, dropped %d undelivered events after trying "
                          "for %.2g s (flush_timeout=%s, or the stop deadline; last error: %s)",
                          self, left, trio.current_time() - stopping, self.flush_timeout,
                          self.last_error)
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + 1
                await self._disconnect_quietly()

    async def _next_batch(self) -> None:
        while not self._queue:
            self._wakeup = trio.Event()
            self._waiting = True
            await self._wakeup.wait()
        if self.linger and len(self._queue) < self.batch_size:
            # Wait a little for more: one write of many lines costs about what
            # one write of a single line does.
            await trio.sleep(self.linger)
        self._take()

    def _take(self) -> None:
        queue = self._queue
        count = min(len(queue), self.batch_size)
        self._batch = [queue.popleft() for _ in range(count)]

    async def _deliver(self) -> None:
        """Deliver the batch in hand, retrying until it is sent, rejected, or cancelled."""
        batch = self._batch
        size = len(batch)  # send_batch may remove what it delivered from the front
        delays: Iterator[float] | None = None
        while True:
            try:
                with trio.fail_after(self.timeout):
                    await self.send_batch(batch)
            except Rejected as error:
                self.failed += len(batch)
                self.sent += size - len(batch)
                self.last_error = f"rejected: {error}"
                log.error("%r: the peer rejected %d events, not retrying them: %s",
                          self, len(batch), error)
                break
            except Exception as error:
                if isinstance(error, trio.TooSlowError):
                    error = TimeoutError(f"no answer within timeout={self.timeout} s")
                if delays is None:
                    log.warning("%r: delivery failed, retrying with backoff: %s: %s",
                                self, type(error).__name__, error)
                    delays = backoff_delays(self.backoff, self.max_backoff)
                self.last_error = f"{type(error).__name__}: {error}"
                await self._disconnect_quietly()
                await trio.sleep(next(delays))
                self.retries += 1
                continue
            self.sent += size
            self.last_success = time.time()
            if delays is not None:
                log.warning("%r: delivering again after %s", self, self.last_error)
            break
        self._batch = []

    async def _disconnect_quietly(self) -> None:
        try:
            await self.disconnect()
        except Exception as error:
            log.debug("%r: disconnect failed: %s", self, error)

    def statistics(self) -> dict[str, Any]:
        return {"queued": len(self._queue) + len(self._batch), "size": self.queue_size,
                "overflow": self.overflow_policy, "sent": self.sent, "failed": self.failed,
                "dropped": self.dropped, "retries": self.retries,
                "last_error": self.last_error, "last_success": self.last_success}


def _summary(event: Any) -> str:
    host = getattr(event, "host", None)
    service_name = getattr(event, "service", None)
    if host is None and service_name is None:
        return repr(event)[:200]
    return f"the event host={host!r} service={service_name!r} state=" \
           f"{getattr(event, 'state', None)!r}"


class HttpSink(NetworkSink):
    """A sink that POSTs to an HTTP API through one pooled httpx client.

    ``post`` raises :class:`Rejected` for 4xx answers (except 408 and 429,
    which are retried like 5xx answers and network errors).
    """

    __slots__ = ("_http", "headers", "url")

    def __init__(self, url: str, *, headers: dict[str, str] | None = None,
                 **options: Any) -> None:
        caller = type(self).__name__
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise StreamArgumentError(
                f"{caller}(url={url!r}): the url must start with http:// or "
                f"https://, e.g. {caller}('http://127.0.0.1:8086', ...)")
        if headers is not None and not (isinstance(headers, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
            raise StreamArgumentError(
                f"{caller}(headers={headers!r}): headers must be a dict of "
                f"strings, e.g. headers={{'Authorization': 'Token ...'}}")
        self.url = url
        self.headers = dict(headers or {})
        self._http: httpx.AsyncClient | None = None
        super().__init__(**options)

    async def post(self, url: str | None = None, *, json: Any = None,
                   content: bytes | str | None = None, headers: dict[str, str] | None = None,
                   params: dict[str, str] | None = None) -> httpx.Response:
        """POST to ``url`` (default: the sink's); returns the 2xx/3xx response or raises."""
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(headers=self.headers, timeout=self.timeout)
        response = await self._http.post(url or self.url, json=json, content=content,
                                         headers=headers, params=params)
        status = response.status_code
        if status >= 400:
            text = response.text[:500]
            if 400 <= status < 500 and status not in (408, 429):
                raise Rejected(f"HTTP {status} from {response.request.url}: {text}")
            raise ConnectionError(f"HTTP {status} from {response.request.url}: {text}")
        return response

    async def disconnect(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
