from . import snakepit_pb2 as _snakepit_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Affinity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AFFINITY_UNSPECIFIED: _ClassVar[Affinity]
    AFFINITY_HINT: _ClassVar[Affinity]
    AFFINITY_STRICT_QUEUE: _ClassVar[Affinity]
    AFFINITY_STRICT_FAIL_FAST: _ClassVar[Affinity]
AFFINITY_UNSPECIFIED: Affinity
AFFINITY_HINT: Affinity
AFFINITY_STRICT_QUEUE: Affinity
AFFINITY_STRICT_FAIL_FAST: Affinity

class ExecuteRequest(_message.Message):
    __slots__ = ("tool", "pool", "session_id", "args", "kwargs", "idempotent", "affinity", "metadata")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _snakepit_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOOL_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    tool: str
    pool: str
    session_id: str
    args: _containers.RepeatedCompositeFieldContainer[_snakepit_pb2.Value]
    kwargs: _containers.MessageMap[str, _snakepit_pb2.Value]
    idempotent: bool
    affinity: Affinity
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, tool: _Optional[str] = ..., pool: _Optional[str] = ..., session_id: _Optional[str] = ..., args: _Optional[_Iterable[_Union[_snakepit_pb2.Value, _Mapping]]] = ..., kwargs: _Optional[_Mapping[str, _snakepit_pb2.Value]] = ..., idempotent: _Optional[bool] = ..., affinity: _Optional[_Union[Affinity, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: _snakepit_pb2.Value
    def __init__(self, value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...

class StreamItem(_message.Message):
    __slots__ = ("seq", "value", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _snakepit_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    value: _snakepit_pb2.Value
    metadata: _containers.MessageMap[str, _snakepit_pb2.Value]
    def __init__(self, seq: _Optional[int] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ..., metadata: _Optional[_Mapping[str, _snakepit_pb2.Value]] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("id", "pool", "affinity", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    pool: str
    affinity: Affinity
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., pool: _Optional[str] = ..., affinity: _Optional[_Union[Affinity, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("id", "pool", "affinity", "metadata", "created_unix_ms", "last_used_unix_ms", "pools", "variables")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    id: str
    pool: str
    affinity: Affinity
    metadata: _containers.ScalarMap[str, str]
    created_unix_ms: int
    last_used_unix_ms: int
    pools: _containers.RepeatedScalarFieldContainer[str]
    variables: int
    def __init__(self, id: _Optional[str] = ..., pool: _Optional[str] = ..., affinity: _Optional[_Union[Affinity, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_unix_ms: _Optional[int] = ..., last_used_unix_ms: _Optional[int] = ..., pools: _Optional[_Iterable[str]] = ..., variables: _Optional[int] = ...) -> None: ...

class ReleaseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FfiCallRequest(_message.Message):
    __slots__ = ("session_id", "pool", "module", "function", "args", "kwargs")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _snakepit_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pool: str
    module: str
    function: str
    args: _containers.RepeatedCompositeFieldContainer[_snakepit_pb2.Value]
    kwargs: _containers.MessageMap[str, _snakepit_pb2.Value]
    def __init__(self, session_id: _Optional[str] = ..., pool: _Optional[str] = ..., module: _Optional[str] = ..., function: _Optional[str] = ..., args: _Optional[_Iterable[_Union[_snakepit_pb2.Value, _Mapping]]] = ..., kwargs: _Optional[_Mapping[str, _snakepit_pb2.Value]] = ...) -> None: ...

class FfiGetRequest(_message.Message):
    __slots__ = ("session_id", "pool", "module", "attr")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pool: str
    module: str
    attr: str
    def __init__(self, session_id: _Optional[str] = ..., pool: _Optional[str] = ..., module: _Optional[str] = ..., attr: _Optional[str] = ...) -> None: ...

class FfiMethodRequest(_message.Message):
    __slots__ = ("session_id", "pool", "target", "name", "args", "kwargs")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _snakepit_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pool: str
    target: _snakepit_pb2.ObjectRef
    name: str
    args: _containers.RepeatedCompositeFieldContainer[_snakepit_pb2.Value]
    kwargs: _containers.MessageMap[str, _snakepit_pb2.Value]
    def __init__(self, session_id: _Optional[str] = ..., pool: _Optional[str] = ..., target: _Optional[_Union[_snakepit_pb2.ObjectRef, _Mapping]] = ..., name: _Optional[str] = ..., args: _Optional[_Iterable[_Union[_snakepit_pb2.Value, _Mapping]]] = ..., kwargs: _Optional[_Mapping[str, _snakepit_pb2.Value]] = ...) -> None: ...

class FfiAttrRequest(_message.Message):
    __slots__ = ("session_id", "pool", "target", "name")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pool: str
    target: _snakepit_pb2.ObjectRef
    name: str
    def __init__(self, session_id: _Optional[str] = ..., pool: _Optional[str] = ..., target: _Optional[_Union[_snakepit_pb2.ObjectRef, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class FfiSetAttrRequest(_message.Message):
    __slots__ = ("session_id", "pool", "target", "name", "value")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pool: str
    target: _snakepit_pb2.ObjectRef
    name: str
    value: _snakepit_pb2.Value
    def __init__(self, session_id: _Optional[str] = ..., pool: _Optional[str] = ..., target: _Optional[_Union[_snakepit_pb2.ObjectRef, _Mapping]] = ..., name: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...

class FfiResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: _snakepit_pb2.Value
    def __init__(self, value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...

class FfiNextRequest(_message.Message):
    __slots__ = ("session_id", "pool", "stream", "max_items")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pool: str
    stream: _snakepit_pb2.StreamRef
    max_items: int
    def __init__(self, session_id: _Optional[str] = ..., pool: _Optional[str] = ..., stream: _Optional[_Union[_snakepit_pb2.StreamRef, _Mapping]] = ..., max_items: _Optional[int] = ...) -> None: ...

class FfiNextResponse(_message.Message):
    __slots__ = ("items", "done")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_snakepit_pb2.Value]
    done: bool
    def __init__(self, items: _Optional[_Iterable[_Union[_snakepit_pb2.Value, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class FfiReleaseRefRequest(_message.Message):
    __slots__ = ("session_id", "pool", "ref", "stream")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pool: str
    ref: _snakepit_pb2.ObjectRef
    stream: _snakepit_pb2.StreamRef
    def __init__(self, session_id: _Optional[str] = ..., pool: _Optional[str] = ..., ref: _Optional[_Union[_snakepit_pb2.ObjectRef, _Mapping]] = ..., stream: _Optional[_Union[_snakepit_pb2.StreamRef, _Mapping]] = ...) -> None: ...

class FfiReleaseRefResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionVariable(_message.Message):
    __slots__ = ("id", "name", "type", "value", "version", "constraints", "description", "metadata")
    class ConstraintsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _snakepit_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    type: str
    value: _snakepit_pb2.Value
    version: int
    constraints: _containers.MessageMap[str, _snakepit_pb2.Value]
    description: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ..., version: _Optional[int] = ..., constraints: _Optional[_Mapping[str, _snakepit_pb2.Value]] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterVariableRequest(_message.Message):
    __slots__ = ("session_id", "name", "type", "initial", "constraints", "description")
    class ConstraintsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _snakepit_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    type: str
    initial: _snakepit_pb2.Value
    constraints: _containers.MessageMap[str, _snakepit_pb2.Value]
    description: str
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., initial: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ..., constraints: _Optional[_Mapping[str, _snakepit_pb2.Value]] = ..., description: _Optional[str] = ...) -> None: ...

class VariableRequest(_message.Message):
    __slots__ = ("session_id", "variable")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable: str
    def __init__(self, session_id: _Optional[str] = ..., variable: _Optional[str] = ...) -> None: ...

class SetVariableRequest(_message.Message):
    __slots__ = ("session_id", "variable", "value")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable: str
    value: _snakepit_pb2.Value
    def __init__(self, session_id: _Optional[str] = ..., variable: _Optional[str] = ..., value: _Optional[_Union[_snakepit_pb2.Value, _Mapping]] = ...) -> None: ...

class ListVariablesResponse(_message.Message):
    __slots__ = ("variables",)
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.RepeatedCompositeFieldContainer[SessionVariable]
    def __init__(self, variables: _Optional[_Iterable[_Union[SessionVariable, _Mapping]]] = ...) -> None: ...

class WatchVariablesRequest(_message.Message):
    __slots__ = ("session_id", "variables", "include_initial")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INITIAL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variables: _containers.RepeatedScalarFieldContainer[str]
    include_initial: bool
    def __init__(self, session_id: _Optional[str] = ..., variables: _Optional[_Iterable[str]] = ..., include_initial: _Optional[bool] = ...) -> None: ...

class PoolStatusRequest(_message.Message):
    __slots__ = ("pool",)
    POOL_FIELD_NUMBER: _ClassVar[int]
    pool: str
    def __init__(self, pool: _Optional[str] = ...) -> None: ...

class PoolStatusResponse(_message.Message):
    __slots__ = ("pools",)
    POOLS_FIELD_NUMBER: _ClassVar[int]
    pools: _containers.RepeatedCompositeFieldContainer[PoolState]
    def __init__(self, pools: _Optional[_Iterable[_Union[PoolState, _Mapping]]] = ...) -> None: ...

class PoolState(_message.Message):
    __slots__ = ("name", "size", "workers_up", "in_flight", "queued", "degraded", "workers", "tools", "min_size", "max_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_UP_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    workers_up: int
    in_flight: int
    queued: int
    degraded: bool
    workers: _containers.RepeatedCompositeFieldContainer[WorkerState]
    tools: _containers.RepeatedCompositeFieldContainer[_snakepit_pb2.ToolSpec]
    min_size: int
    max_size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., workers_up: _Optional[int] = ..., in_flight: _Optional[int] = ..., queued: _Optional[int] = ..., degraded: _Optional[bool] = ..., workers: _Optional[_Iterable[_Union[WorkerState, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_snakepit_pb2.ToolSpec, _Mapping]]] = ..., min_size: _Optional[int] = ..., max_size: _Optional[int] = ...) -> None: ...

class WorkerState(_message.Message):
    __slots__ = ("id", "pid", "ready", "draining", "suspect", "in_flight", "completed", "python_version", "gil_enabled", "capacity")
    ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    GIL_ENABLED_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    pid: int
    ready: bool
    draining: bool
    suspect: bool
    in_flight: int
    completed: int
    python_version: str
    gil_enabled: bool
    capacity: int
    def __init__(self, id: _Optional[str] = ..., pid: _Optional[int] = ..., ready: _Optional[bool] = ..., draining: _Optional[bool] = ..., suspect: _Optional[bool] = ..., in_flight: _Optional[int] = ..., completed: _Optional[int] = ..., python_version: _Optional[str] = ..., gil_enabled: _Optional[bool] = ..., capacity: _Optional[int] = ...) -> None: ...
