"""rillet's stream library: events, composable streams, folds, clock and index.

Everything here is pure and synchronous: no sockets, no trio, no protobuf.
A monitoring config does ``from streams import *``.
"""

from . import (
    _aggregate,
    _anomaly,
    _change,
    _correlate,
    _fields,
    _fill,
    _filters,
    _numeric,
    _partition,
    _plumbing,
    _pubsub,
    _rollup,
    _routing,
    _transform,
    _windows,
    folds,
)
from ._aggregate import *
from ._anomaly import *
from ._change import *
from ._clock import Scheduler, Task, VirtualClock, next_tick
from ._config import Config, ConfigError, load_config, periodically_expire, reinject, streams
from ._core import REGISTRY, Stream, exception_stream, expire_event, is_expired, sdo
from ._correlate import *
from ._event import DEFAULT_TTL, FIELDS, Event, LazyEvent
from ._fields import *
from ._fill import *
from ._filters import *
from ._index import Index, current_index, delete_from_index, index
from ._match import matches
from ._numeric import *
from ._partition import *
from ._plumbing import *
from ._pubsub import *
from ._query import Query, QuerySyntaxError, compile_query
from ._rollup import *
from ._routing import *
from ._runtime import Runtime, current_runtime
from ._transform import *
from ._validate import StreamArgumentError
from ._windows import *

__all__ = [
    # events
    "DEFAULT_TTL", "FIELDS", "Event", "LazyEvent", "expire_event", "is_expired", "matches",
    # time and the runtime
    "Scheduler", "Task", "VirtualClock", "next_tick", "Runtime", "current_runtime",
    # the stream contract
    "REGISTRY", "Stream", "StreamArgumentError", "exception_stream", "sdo", "folds",
    # configs, the index and the query language
    "Config", "ConfigError", "load_config", "periodically_expire", "streams",
    "Index", "index", "current_index", "delete_from_index", "reinject",
    "Query", "QuerySyntaxError", "compile_query",
]
# Each family module lists its own streams; tests/test_api.py checks that __all__,
# the registry and the reference docs agree.
__all__ += _filters.__all__
__all__ += _plumbing.__all__
__all__ += _routing.__all__
__all__ += _fields.__all__
__all__ += _transform.__all__
__all__ += _partition.__all__
__all__ += _change.__all__
__all__ += _windows.__all__
__all__ += _aggregate.__all__
__all__ += _rollup.__all__
__all__ += _numeric.__all__
__all__ += _fill.__all__
__all__ += _correlate.__all__
__all__ += _pubsub.__all__
__all__ += _anomaly.__all__
