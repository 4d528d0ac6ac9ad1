"""Riemann's protobuf schema, built at import time without protoc.

The schema is riemann-java-client's ``riemann/proto.proto`` (spec §1.1),
package ``riemann``, field numbers exactly as there, so what these classes
write is byte for byte what Riemann and its clients write. Building the
descriptor in Python spares the project a protoc step and a generated file
that must be kept in sync with the protobuf runtime.

The classes live in a private descriptor pool so that another library (or a
second copy of this module) registering ``riemann/proto.proto`` in the default
pool cannot clash with them.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import api_implementation

__all__ = ["Attribute", "Event", "Msg", "Query", "State", "backend"]

_log = logging.getLogger(__name__)

_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REQUIRED = descriptor_pb2.FieldDescriptorProto.LABEL_REQUIRED
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "bool": _T.TYPE_BOOL,
    "int64": _T.TYPE_INT64,
    "sint64": _T.TYPE_SINT64,
    "float": _T.TYPE_FLOAT,
    "double": _T.TYPE_DOUBLE,
    "string": _T.TYPE_STRING,
}

# (message, [(field, number, type, label)]), transcribed from spec §1.1.
_SCHEMA: list[tuple[str, list[tuple[str, int, str, int]]]] = [
    ("State", [
        ("time", 1, "int64", _OPTIONAL),
        ("state", 2, "string", _OPTIONAL),
        ("service", 3, "string", _OPTIONAL),
        ("host", 4, "string", _OPTIONAL),
        ("description", 5, "string", _OPTIONAL),
        ("once", 6, "bool", _OPTIONAL),
        ("tags", 7, "string", _REPEATED),
        ("ttl", 8, "float", _OPTIONAL),
    ]),
    ("Event", [
        ("time", 1, "int64", _OPTIONAL),
        ("state", 2, "string", _OPTIONAL),
        ("service", 3, "string", _OPTIONAL),
        ("host", 4, "string", _OPTIONAL),
        ("description", 5, "string", _OPTIONAL),
        ("tags", 7, "string", _REPEATED),
        ("ttl", 8, "float", _OPTIONAL),
        ("attributes", 9, "Attribute", _REPEATED),
        ("time_micros", 10, "int64", _OPTIONAL),
        ("metric_sint64", 13, "sint64", _OPTIONAL),
        ("metric_d", 14, "double", _OPTIONAL),
        ("metric_f", 15, "float", _OPTIONAL),
    ]),
    ("Query", [
        ("string", 1, "string", _OPTIONAL),
    ]),
    ("Msg", [
        ("ok", 2, "bool", _OPTIONAL),
        ("error", 3, "string", _OPTIONAL),
        ("states", 4, "State", _REPEATED),
        ("query", 5, "Query", _OPTIONAL),
        ("events", 6, "Event", _REPEATED),
    ]),
    ("Attribute", [
        ("key", 1, "string", _REQUIRED),
        ("value", 2, "string", _OPTIONAL),
    ]),
]


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="riemann/proto.proto", package="riemann", syntax="proto2"
    )
    file.options.java_package = "io.riemann.riemann"
    file.options.java_outer_classname = "Proto"
    for message_name, fields in _SCHEMA:
        message = file.message_type.add(name=message_name)
        for field_name, number, type_name, label in fields:
            field = message.field.add(name=field_name, number=number, label=label)
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
            else:
                field.type = _T.TYPE_MESSAGE
                field.type_name = f".riemann.{type_name}"
    return file


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file_descriptor())


def _message_class(name: str) -> Any:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"riemann.{name}"))


# The generated classes have no static types; callers treat them as Any.
State: Any = _message_class("State")
Event: Any = _message_class("Event")
Query: Any = _message_class("Query")
Msg: Any = _message_class("Msg")
Attribute: Any = _message_class("Attribute")

#: The protobuf backend in use: "upb" (fast), "cpp" or "python" (about 100x slower).
backend: str = api_implementation.Type()

if backend == "python":
    _message = (
        "protobuf is running its pure-Python backend, which decodes about 100x slower "
        "than upb: rillet will work but cannot keep up with real load. Install "
        "protobuf>=4 from a wheel for your platform and make sure the environment "
        "variable PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION is not set to 'python'."
    )
    _log.warning(_message)
    warnings.warn(_message, RuntimeWarning, stacklevel=2)
