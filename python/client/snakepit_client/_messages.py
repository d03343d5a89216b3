"""Requests built from Python arguments, and responses read back into plain
Python, for both clients (``_client.py`` and ``_aio.py``): they differ only
in how they wait, never in what they send. :class:`SessionBase` is what
their two session classes share besides the calls themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from google.protobuf.message import Message

from ._codec import Binder, decode, encode_into, unbound
from ._proto import service_pb2 as svc
from ._proto import snakepit_pb2 as pb
from ._types import Ref, StreamRef, Variable, VariableUpdate

__all__ = [
    "AFFINITIES",
    "GONE",
    "SessionBase",
    "affinity",
    "execute_request",
    "ffi_call_request",
    "ffi_method_request",
    "ffi_next_request",
    "ffi_set_attr_request",
    "message_dict",
    "object_ref",
    "pools_dict",
    "register_variable_request",
    "release_ref_request",
    "set_variable_request",
    "stream_ref",
    "value",
    "variable",
    "variable_update",
]

AFFINITIES: dict[str, svc.Affinity] = {
    "hint": svc.AFFINITY_HINT,
    "strict_queue": svc.AFFINITY_STRICT_QUEUE,
    "strict_fail_fast": svc.AFFINITY_STRICT_FAIL_FAST,
}

_VALUE = pb.Value.DESCRIPTOR.full_name

GONE = frozenset({"session_not_found", "unavailable", "cancelled", "shutting_down"})
"""Kinds after which releasing a session has nothing left to do."""


def affinity(name: str) -> svc.Affinity:
    """The wire enum of an affinity name; ``ValueError`` for an unknown one."""
    try:
        return AFFINITIES[name]
    except KeyError:
        raise ValueError(f"affinity must be one of {', '.join(AFFINITIES)}, not {name!r}") from None


def _fill_args(args: Iterable[Any], kwargs: Mapping[str, Any], out_args: Any, out_kwargs: Any) -> None:
    for i, arg in enumerate(args):
        encode_into(arg, out_args.add(), name=f"args[{i}]")
    for key, value in kwargs.items():
        encode_into(value, out_kwargs[key], name=key)


def execute_request(
    tool: str,
    kwargs: Mapping[str, Any],
    *,
    pool: str | None,
    session_id: str = "",
    idempotent: bool = False,
) -> svc.ExecuteRequest:
    req = svc.ExecuteRequest(tool=tool, pool=pool or "", session_id=session_id, idempotent=idempotent)
    _fill_args((), kwargs, req.args, req.kwargs)
    return req


def ffi_call_request(
    session_id: str, module: str, function: str, args: Iterable[Any], kwargs: Mapping[str, Any]
) -> svc.FfiCallRequest:
    req = svc.FfiCallRequest(session_id=session_id, module=module, function=function)
    _fill_args(args, kwargs, req.args, req.kwargs)
    return req


def ffi_method_request(
    session_id: str, target: Ref, name: str, args: Iterable[Any], kwargs: Mapping[str, Any]
) -> svc.FfiMethodRequest:
    req = svc.FfiMethodRequest(session_id=session_id, target=object_ref(target), name=name)
    _fill_args(args, kwargs, req.args, req.kwargs)
    return req


def ffi_set_attr_request(session_id: str, target: Ref, name: str, value: Any) -> svc.FfiSetAttrRequest:
    req = svc.FfiSetAttrRequest(session_id=session_id, target=object_ref(target), name=name)
    encode_into(value, req.value, name="value")
    return req


def ffi_next_request(session_id: str, stream: StreamRef, n: int) -> svc.FfiNextRequest:
    return svc.FfiNextRequest(session_id=session_id, stream=stream_ref(stream), max_items=max(n, 1))


def object_ref(target: Ref) -> pb.ObjectRef:
    if not isinstance(target, Ref):
        raise TypeError(f"expected a Ref (an object kept in the worker), got {type(target).__name__}")
    return pb.ObjectRef(id=target.id, session_id=target.session_id, type_name=target.type_name, repr=target.repr)


def stream_ref(target: StreamRef) -> pb.StreamRef:
    if not isinstance(target, StreamRef):
        raise TypeError(f"expected a StreamRef (an iterator kept in the worker), got {type(target).__name__}")
    return pb.StreamRef(id=target.id, session_id=target.session_id, type_name=target.type_name)


def release_ref_request(session_id: str, target: Ref | StreamRef) -> svc.FfiReleaseRefRequest:
    if isinstance(target, StreamRef):
        return svc.FfiReleaseRefRequest(session_id=session_id, stream=stream_ref(target))
    return svc.FfiReleaseRefRequest(session_id=session_id, ref=object_ref(target))


def register_variable_request(
    session_id: str, name: str, type: str, initial: Any, description: str, constraints: Mapping[str, Any]
) -> svc.RegisterVariableRequest:
    req = svc.RegisterVariableRequest(session_id=session_id, name=name, type=type, description=description)
    encode_into(initial, req.initial, name="initial")
    for key, value in constraints.items():
        encode_into(value, req.constraints[key], name=key)
    return req


def set_variable_request(session_id: str, name: str, value: Any) -> svc.SetVariableRequest:
    req = svc.SetVariableRequest(session_id=session_id, variable=name)
    encode_into(value, req.value, name="value")
    return req


def _enum_name(field: Any, number: int) -> str | int:
    """``AFFINITY_STRICT_QUEUE`` -> ``"strict_queue"``: the value's name
    without its enum's prefix, in lower case."""
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        return number
    prefix = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(field.enum_type.name)).upper() + "_"
    short: str = value.name.removeprefix(prefix).lower()
    return short


def _field(field: Any, value: Any, bind: Binder) -> Any:
    if field.type == field.TYPE_ENUM:
        return _enum_name(field, value)
    if field.type != field.TYPE_MESSAGE:
        return value
    if field.message_type.full_name == _VALUE:
        return decode(value, bind=bind)
    return message_dict(value, bind=bind)


def message_dict(msg: Message, *, bind: Binder = unbound) -> dict[str, Any]:
    """A response message as plain dicts and lists: every field (defaults
    included), Values decoded, enums by their short lower-case name."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _field(entry, v, bind) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_field(field, v, bind) for v in value]
        elif field.type == field.TYPE_MESSAGE and not msg.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _field(field, value, bind)
    return out


def value(msg: Any, bind: Binder = unbound) -> Any:
    """The decoded ``value`` field of a response or a stream item."""
    return decode(msg.value, bind=bind)


def pools_dict(resp: svc.PoolStatusResponse) -> dict[str, dict[str, Any]]:
    """PoolStatus as ``{pool name: {size, workers_up, ..., workers: [...], tools: [...]}}``."""
    return {state.name: message_dict(state) for state in resp.pools}


def variable(msg: svc.SessionVariable, bind: Binder) -> Variable:
    return Variable(
        id=msg.id,
        name=msg.name,
        type=msg.type,
        value=decode(msg.value, bind=bind),
        version=msg.version,
        constraints={k: decode(v, bind=bind) for k, v in msg.constraints.items()},
        description=msg.description,
        metadata=dict(msg.metadata),
    )


def variable_update(msg: pb.VariableUpdate, bind: Binder) -> VariableUpdate:
    return VariableUpdate(
        name=msg.name,
        variable_id=msg.variable_id,
        old_value=decode(msg.old_value, bind=bind) if msg.HasField("old_value") else None,
        new_value=decode(msg.new_value, bind=bind),
        version=msg.version,
        source=msg.source,
        metadata=dict(msg.metadata),
    )


class SessionBase:
    """What :class:`~snakepit_client.Session` and
    :class:`~snakepit_client.AsyncSession` share: the server's
    ``SessionInfo`` (``id``, ``pool``, ``affinity``), and reading answers
    with every StreamRef bound to this session, which iterates it."""

    is_async: ClassVar[bool] = False

    def __init__(self, info: svc.SessionInfo) -> None:
        self.id: str = info.id
        self.pool: str = info.pool
        self.affinity: str = message_dict(info)["affinity"]
        self._released = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} pool={self.pool or 'default'} affinity={self.affinity}>"

    def _bind(self, stream: StreamRef) -> StreamRef:
        return StreamRef(stream.id, stream.session_id, stream.type_name, _owner=self)

    def _value(self, msg: Any) -> Any:
        return value(msg, self._bind)

    def _batch(self, resp: svc.FfiNextResponse) -> tuple[list[Any], bool]:
        """The items of an FfiNext answer, and whether the stream is done."""
        return [decode(v, bind=self._bind) for v in resp.items], resp.done

    def _values(self, resp: svc.ListVariablesResponse) -> dict[str, Any]:
        return {v.name: decode(v.value, bind=self._bind) for v in resp.variables}

    def _variable(self, msg: svc.SessionVariable) -> Variable:
        return variable(msg, self._bind)

    def _update(self, msg: pb.VariableUpdate) -> VariableUpdate:
        return variable_update(msg, self._bind)

    def _mark_released(self) -> bool:
        """Whether this is the first release (which must tell the server)."""
        first = not self._released
        self._released = True
        return first
