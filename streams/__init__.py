"""rillet's stream library: events, composable streams, folds, clock and index.

Everything here is pure and synchronous: no sockets, no trio, no protobuf.
A monitoring config does ``from streams import *``.
"""

from . import folds
from ._aggregate import *
from ._clock import Scheduler, Task, VirtualClock, next_tick
from ._core import REGISTRY, Stream, exception_stream, is_expired, sdo
from ._event import DEFAULT_TTL, FIELDS, Event, LazyEvent
from ._fields import *
from ._filters import *
from ._match import matches
from ._partition import *
from ._windows import *

__all__ = [
    # events
    "DEFAULT_TTL", "FIELDS", "Event", "LazyEvent", "is_expired", "matches",
    # time
    "Scheduler", "Task", "VirtualClock", "next_tick",
    # the stream contract
    "REGISTRY", "Stream", "exception_stream", "sdo", "folds",
    # filters and routing
    "where", "split", "tagged", "tagged_all", "tagged_any", "expired", "not_expired",
    "over", "under",
    # plumbing and fields
    "smap", "with_", "default", "tag",
    # partitioning and change
    "by", "changed", "changed_state",
    # windows
    "moving_event_window", "fixed_event_window", "moving_time_window", "fixed_time_window",
    # periodic aggregation
    "rate", "throttle",
]
