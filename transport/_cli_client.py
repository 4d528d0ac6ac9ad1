"""``rillet send`` and ``rillet query``: the Python client from the shell.

``rillet send`` takes riemann-client's flags with the same letters, so a
riemann-client command line works with ``rillet`` in its place::

    rillet send -h web1 -S cpu -s ok -d 0.5 -t prod -a env=prod -L 60 127.0.0.1 5555
    rillet send -U -S heartbeat                      # over UDP
    rillet query 'service = "cpu" and metric > 0.9'
    rillet query 'tagged "prod"' --json 127.0.0.1 5555

The server is the optional ``HOST PORT`` after the options, as riemann-client
takes it (or ``--server``/``--port``; default 127.0.0.1:5555). Exit status: 0
done, 1 the server answered with an error (its text is printed), 2 bad
arguments, 3 the server could not be reached or did not answer in time.

:func:`add_commands` adds both subcommands to the ``rillet`` parser; each
sets ``func`` to :func:`main_send` or :func:`main_query`, which take the
parsed arguments and return the exit status. ``python -m
transport._cli_client`` runs the two on their own.

Only what a command needs is imported, and only once it runs: the blocking
client, not trio or the servers, so ``rillet send`` starts quickly.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import struct
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from transport._defaults import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from streams._event import Event

__all__ = ["add_commands", "event_json", "iso_time", "main", "main_query", "main_send", "table"]

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_INTEGER = re.compile(r"[+-]?\d+")
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TABLE_COLUMNS = ("host", "service", "state", "metric", "time", "ttl", "tags", "description")
_FIELD_OPTIONS = {"host": "-h", "service": "-S", "state": "-s", "description": "-D",
                  "metric": "-m", "tags": "-t", "time": "--time", "ttl": "-L",
                  "attributes": "-a"}


# Argument types: each turns one option's text into a value, or explains -----


def _number(text: str, example: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; write e.g. {example}") \
            from None


def _metric(text: str) -> int | float:
    # Integers go out as metric_sint64, exactly as riemann-client -i would.
    if _INTEGER.fullmatch(text.strip()):
        return int(text)
    return _number(text, "-m 42 (sent as an integer) or -m 0.5")


def _metric_sint64(text: str) -> int:
    if not _INTEGER.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer; -i sends a 64-bit integer metric (e.g. -i 42); "
            f"use -d {text} for a double")
    return int(text)


def _metric_d(text: str) -> float:
    return _number(text, "-d 0.93 (a double metric)")


def _metric_f(text: str) -> float:
    # What riemann-client sends: the value rounded to single precision.
    value = _number(text, "-f 0.93 (a single-precision metric)")
    try:
        (single,) = struct.unpack("f", struct.pack("f", value))
    except OverflowError:
        single = math.inf
    if math.isinf(single) and not math.isinf(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} does not fit a single-precision float; use -d {text}")
    return float(single)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds; e.g. 60") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 seconds")
    return value


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither Unix seconds nor an ISO-8601 time; write e.g. "
            f"--time 1714564800 or --time 2024-05-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:  # a time without an offset is read as UTC, as Riemann does
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _attribute(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE; write e.g. -a env=prod"
        )
    if key in _FIELD_OPTIONS:
        raise argparse.ArgumentTypeError(
            f"{key!r} is an event field, not an attribute; use {_FIELD_OPTIONS[key]} "
            f"instead of -a {text}"
        )
    return key, value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


_NO_STDIN = ("reading metrics from standard input is not supported; run rillet send once per "
             "event, or use the Python client (transport.Client)")


class _Refuse(argparse.Action):
    """A riemann-client flag rillet does not implement: stop with the alternative."""

    def __init__(self, option_strings: list[str], dest: str, because: str,
                 nargs: int | str | None = 0, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
        self.because = because

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> NoReturn:
        parser.error(f"{option_string}: {self.because}")


# Commands ----------------------------------------------------------------


def _server_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group(
        "server", f"where the server is (default {DEFAULT_HOST}:{DEFAULT_PORT}); as "
                  f"riemann-client, also given as HOST PORT after the options")
    where.add_argument("server_host", nargs="?", metavar="HOST", help=argparse.SUPPRESS)
    where.add_argument("server_port", nargs="?", type=_port, metavar="PORT",
                       help=argparse.SUPPRESS)
    where.add_argument("--server", metavar="HOST", help="the server's address")
    where.add_argument("--port", type=_port, help="the server's port")
    where.add_argument("--timeout", type=_seconds, default=5.0,
                       help="seconds to wait for the connection and each reply (default 5)")


def _server(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, int]:
    if args.server_host == "-0":
        parser.error(f"-0: {_NO_STDIN}")
    for option, positional in (("--server", "server_host"), ("--port", "server_port")):
        if getattr(args, option[2:]) is not None and getattr(args, positional) is not None:
            parser.error(f"the server is given twice, as {option} and as the "
                         f"{positional[7:].upper()} argument; keep one")
    host = args.server or args.server_host or DEFAULT_HOST
    port = args.port or args.server_port or DEFAULT_PORT
    return host, port


def _send_parser(subparsers: Any) -> argparse.ArgumentParser:
    # -h is riemann-client's event host, so help is only -? and --help.
    send: argparse.ArgumentParser = subparsers.add_parser(
        "send", help="send one event to a Riemann server", add_help=False, allow_abbrev=False,
        usage="rillet send [options] [HOST] [PORT]",
        description="Send one event over TCP (and wait for the ack) or UDP. The options are "
                    "riemann-client's, with the same letters.",
        epilog="example: rillet send -h web1 -S cpu -s ok -d 0.5 -t prod -a env=prod "
               "127.0.0.1 5555")
    send.add_argument("-?", "--help", action="help", help="show this help and exit")
    _server_options(send)
    how = send.add_mutually_exclusive_group()
    how.add_argument("-T", "--tcp", dest="udp", action="store_false", default=False,
                     help="send over TCP and wait for the ack (the default)")
    how.add_argument("-U", "--udp", action="store_true",
                     help="send over UDP: no ack, so errors on the server go unnoticed")
    send.add_argument("-G", "--tls", action=_Refuse, help="riemann-client's TLS: refused", because=(
        "rillet send does not speak TLS; send over TCP on a trusted network, or use "
        "riemann-client -G"))
    send.add_argument("-o", "--option", action=_Refuse, nargs=1, metavar="OPTION=VALUE",
                      help="riemann-client's client options: refused", because=(
        "riemann-client's client options are not supported; the timeout is --timeout"))
    # riemann-client's -0 too, but argparse would then read "-1.5" as an option
    # everywhere; _server() refuses a "-0" that lands in HOST instead.
    send.add_argument("--stdin", action=_Refuse, help="riemann-client's -0: refused",
                      because=_NO_STDIN)
    event = send.add_argument_group("event")
    event.add_argument("-h", "--host", "-H", "--event-host", dest="event_host",
                       metavar="HOST", help="the event's host (the server is HOST PORT)")
    event.add_argument("-S", "--service")
    event.add_argument("-s", "--state", help="e.g. ok, warning, critical")
    event.add_argument("-D", "--description")
    metric = event.add_mutually_exclusive_group()
    metric.add_argument("-m", "--metric", type=_metric,
                        help="a number; integers are sent as integers, others as doubles")
    metric.add_argument("-i", "--metric-sint64", dest="metric", type=_metric_sint64,
                        metavar="METRIC", help="a 64-bit integer metric")
    metric.add_argument("-d", "--metric-d", dest="metric", type=_metric_d, metavar="METRIC",
                        help="a double metric")
    metric.add_argument("-f", "--metric-f", dest="metric", type=_metric_f, metavar="METRIC",
                        help="a single-precision metric (rounded to float32)")
    event.add_argument("-t", "--tag", dest="tags", action="append", default=[],
                       metavar="TAG", help="a tag (repeatable)")
    event.add_argument("-a", "--attribute", dest="attributes", action="append", default=[],
                       type=_attribute, metavar="KEY=VALUE", help="an attribute (repeatable)")
    event.add_argument("-L", "--ttl", type=_seconds, help="seconds the event stays valid")
    event.add_argument("--time", type=_time,
                       help="Unix seconds or ISO-8601 (default: the server's receive time)")
    # argparse (before 3.13) takes "-1.5e3" for an option, so "-d -1.5e3" would fail
    # with "expected one argument"; every number, exponent or not, is a value here.
    send._negative_number_matcher = _NEGATIVE_NUMBER
    send.set_defaults(func=main_send, parser=send)
    return send


def add_commands(subparsers: Any) -> None:
    """Add ``send`` and ``query`` to the ``rillet`` command's subparsers."""
    _send_parser(subparsers)
    query = subparsers.add_parser(
        "query", help="print the indexed events matching a query", allow_abbrev=False,
        usage="rillet query QUERY [options] [HOST] [PORT]",
        description="Query a Riemann server's index and print the matching events, "
                    "sorted by host and service.",
        epilog="example: rillet query 'service = \"cpu\" and metric > 0.9' --json")
    query.add_argument("query", metavar="QUERY",
                       help="Riemann's query language, e.g. 'true' or 'tagged \"prod\"'")
    _server_options(query)
    query.add_argument("--host", action=_Refuse, nargs=1, because=(
        "in rillet send, --host is the event's host, as in riemann-client; give the server "
        "as HOST PORT after the query, or with --server"))
    query.add_argument("-j", "--json", action="store_true",
                       help="one JSON object per line, shaped as Riemann's websocket events")
    query.set_defaults(func=main_query, parser=query)


def main_send(args: argparse.Namespace) -> int:
    """Build the event from ``args``, send it, return the exit status."""
    host, port = _server(args.parser, args)
    from streams._event import Event
    from transport._client import Client, ClientError, RiemannError, UdpClient

    event = Event(host=args.event_host, service=args.service, state=args.state,
                  description=args.description, metric=args.metric, tags=tuple(args.tags),
                  time=args.time, ttl=args.ttl, attributes=dict(args.attributes))
    try:
        if args.udp:
            with UdpClient(host, port) as udp:
                udp.send(event)
        else:
            with Client(host, port, timeout=args.timeout, connect_attempts=1) as client:
                client.send(event)
    except RiemannError as error:
        return _fail("send", f"the server refused the event: {error.message}",
                     EXIT_SERVER_ERROR)
    except (ClientError, OSError) as error:
        return _fail("send", str(error), EXIT_UNREACHABLE)
    return EXIT_OK


def main_query(args: argparse.Namespace) -> int:
    """Run the query in ``args``, print the events, return the exit status."""
    host, port = _server(args.parser, args)
    from transport._client import Client, ClientError, RiemannError

    try:
        with Client(host, port, timeout=args.timeout, connect_attempts=1) as client:
            events = client.query(args.query)
    except RiemannError as error:
        return _fail("query", error.message, EXIT_SERVER_ERROR)
    except (ClientError, OSError) as error:
        return _fail("query", str(error), EXIT_UNREACHABLE)
    # The index answers in no particular order; sorted output can be diffed.
    events.sort(key=lambda e: (e.host or "", e.service or ""))
    if args.json:
        for event in events:
            print(json.dumps(event_json(event)))
    elif events:
        print(table(events))
    else:
        print(f"no indexed event matches {args.query!r}", file=sys.stderr)
    return EXIT_OK


def _fail(command: str, message: str, status: int) -> int:
    print(f"rillet {command}: error: {message}", file=sys.stderr)
    return status


# Output ------------------------------------------------------------------


def iso_time(seconds: float | None) -> str | None:
    """Riemann's JSON time: UTC, milliseconds truncated (spec §1.8).

    >>> iso_time(1714564800.1239)
    '2024-05-01T12:00:00.123Z'
    """
    if seconds is None:
        return None
    millis = math.floor(seconds * 1000)
    moment = datetime.datetime.fromtimestamp(millis // 1000, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def event_json(event: Event) -> dict[str, Any]:
    """The event as Riemann's websocket/SSE servers write it (spec §1.8).

    The eight base fields always, null when absent; time as ISO-8601 UTC;
    attributes as extra string fields.

    >>> from streams import Event
    >>> event_json(Event(host="web1", service="cpu", metric=1, time=0, env="prod"))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'host': 'web1', 'service': 'cpu', 'state': None, 'description': None, 'metric': 1,
     'tags': None, 'time': '1970-01-01T00:00:00.000Z', 'ttl': None, 'env': 'prod'}
    """
    from streams._event import FIELDS

    out: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(event, name)
        if name == "tags":
            value = list(value) if value else None
        elif name == "time":
            value = iso_time(value)
        out[name] = value
    for key, value in event.attributes.items():
        out.setdefault(key, value)
    return out


def _cell(name: str, value: Any) -> str:
    if value is None or value == ():
        return ""
    if name == "time":
        return iso_time(value) or ""
    if name == "tags":
        return ",".join(value)
    if isinstance(value, float):
        # Single-precision metrics read back as 0.30000001192092896; 9
        # significant digits show every float32 exactly and most doubles.
        return f"{value:.9g}"
    return str(value)


def table(events: Sequence[Event]) -> str:
    """Events as an aligned text table; an attributes column appears if any has some.

    >>> from streams import Event
    >>> print(table([Event(host="web1", service="cpu", metric=0.5, time=0, tags=("a", "b")),
    ...              Event(host="db", service="disk /", state="ok", time=60, ttl=30.0)]))
    host  service  state  metric  time                      ttl  tags  description
    web1  cpu             0.5     1970-01-01T00:00:00.000Z       a,b
    db    disk /   ok             1970-01-01T00:01:00.000Z  30
    """
    columns = list(_TABLE_COLUMNS)
    with_attributes = any(event.attributes for event in events)
    if with_attributes:
        columns.append("attributes")
    rows = [columns]
    for event in events:
        row = [_cell(name, getattr(event, name)) for name in _TABLE_COLUMNS]
        if with_attributes:
            row.append(" ".join(f"{k}={v}" for k, v in sorted(event.attributes.items())))
        # A newline inside a description would break the table's lines.
        rows.append([cell.replace("\n", "\\n") for cell in row])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transport._cli_client send|query ...``: the two commands alone."""
    parser = argparse.ArgumentParser(prog="rillet", description="Send events to and query "
                                     "a Riemann-compatible server.")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
