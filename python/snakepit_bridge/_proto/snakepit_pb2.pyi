from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProtocolVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_VERSION_UNSPECIFIED: _ClassVar[ProtocolVersion]
    PROTOCOL_VERSION_CURRENT: _ClassVar[ProtocolVersion]

class Limit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_UNSPECIFIED: _ClassVar[Limit]
    LIMIT_VALUE_WIRE_DEPTH: _ClassVar[Limit]

class ParamKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAM_KIND_POSITIONAL_OR_KEYWORD: _ClassVar[ParamKind]
    PARAM_KIND_POSITIONAL_ONLY: _ClassVar[ParamKind]
    PARAM_KIND_KEYWORD_ONLY: _ClassVar[ParamKind]
    PARAM_KIND_VAR_POSITIONAL: _ClassVar[ParamKind]
    PARAM_KIND_VAR_KEYWORD: _ClassVar[ParamKind]

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_KIND_PYTHON_EXCEPTION: _ClassVar[ErrorKind]
    ERROR_KIND_UNKNOWN_TOOL: _ClassVar[ErrorKind]
    ERROR_KIND_BAD_ARGUMENTS: _ClassVar[ErrorKind]
    ERROR_KIND_CANCELLED: _ClassVar[ErrorKind]
    ERROR_KIND_PAYLOAD_TOO_LARGE: _ClassVar[ErrorKind]
    ERROR_KIND_ENCODING: _ClassVar[ErrorKind]
    ERROR_KIND_STARTUP_FAILED: _ClassVar[ErrorKind]
    ERROR_KIND_PROTOCOL: _ClassVar[ErrorKind]
    ERROR_KIND_SHUTTING_DOWN: _ClassVar[ErrorKind]
    ERROR_KIND_HOST_TOOL: _ClassVar[ErrorKind]
    ERROR_KIND_NOT_FOUND: _ClassVar[ErrorKind]
    ERROR_KIND_CONSTRAINT: _ClassVar[ErrorKind]
    ERROR_KIND_TIMEOUT: _ClassVar[ErrorKind]
    ERROR_KIND_BUSY: _ClassVar[ErrorKind]
    ERROR_KIND_SHARED_MEMORY_EXHAUSTED: _ClassVar[ErrorKind]

class Null(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NULL_VALUE: _ClassVar[Null]

class SharedArena(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHARED_ARENA_UNSPECIFIED: _ClassVar[SharedArena]
    SHARED_ARENA_HOST: _ClassVar[SharedArena]
    SHARED_ARENA_WORKER: _ClassVar[SharedArena]

class TemporalKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEMPORAL_KIND_DATETIME: _ClassVar[TemporalKind]
    TEMPORAL_KIND_DATE: _ClassVar[TemporalKind]
    TEMPORAL_KIND_TIME: _ClassVar[TemporalKind]
    TEMPORAL_KIND_TIMEDELTA: _ClassVar[TemporalKind]
PROTOCOL_VERSION_UNSPECIFIED: ProtocolVersion
PROTOCOL_VERSION_CURRENT: ProtocolVersion
LIMIT_UNSPECIFIED: Limit
LIMIT_VALUE_WIRE_DEPTH: Limit
PARAM_KIND_POSITIONAL_OR_KEYWORD: ParamKind
PARAM_KIND_POSITIONAL_ONLY: ParamKind
PARAM_KIND_KEYWORD_ONLY: ParamKind
PARAM_KIND_VAR_POSITIONAL: ParamKind
PARAM_KIND_VAR_KEYWORD: ParamKind
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_KIND_PYTHON_EXCEPTION: ErrorKind
ERROR_KIND_UNKNOWN_TOOL: ErrorKind
ERROR_KIND_BAD_ARGUMENTS: ErrorKind
ERROR_KIND_CANCELLED: ErrorKind
ERROR_KIND_PAYLOAD_TOO_LARGE: ErrorKind
ERROR_KIND_ENCODING: ErrorKind
ERROR_KIND_STARTUP_FAILED: ErrorKind
ERROR_KIND_PROTOCOL: ErrorKind
ERROR_KIND_SHUTTING_DOWN: ErrorKind
ERROR_KIND_HOST_TOOL: ErrorKind
ERROR_KIND_NOT_FOUND: ErrorKind
ERROR_KIND_CONSTRAINT: ErrorKind
ERROR_KIND_TIMEOUT: ErrorKind
ERROR_KIND_BUSY: ErrorKind
ERROR_KIND_SHARED_MEMORY_EXHAUSTED: ErrorKind
NULL_VALUE: Null
SHARED_ARENA_UNSPECIFIED: SharedArena
SHARED_ARENA_HOST: SharedArena
SHARED_ARENA_WORKER: SharedArena
TEMPORAL_KIND_DATETIME: TemporalKind
TEMPORAL_KIND_DATE: TemporalKind
TEMPORAL_KIND_TIME: TemporalKind
TEMPORAL_KIND_TIMEDELTA: TemporalKind

class Frame(_message.Message):
    __slots__ = ("id", "hello", "result", "chunk", "error", "host_call", "pong", "telemetry", "execute", "cancel", "credit", "release_session", "release_ref", "ping", "shutdown", "host_call_result", "variable_update", "release_shared")
    ID_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HOST_CALL_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_SESSION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_REF_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    HOST_CALL_RESULT_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_SHARED_FIELD_NUMBER: _ClassVar[int]
    id: int
    hello: Hello
    result: Result
    chunk: Chunk
    error: Error
    host_call: HostCall
    pong: Pong
    telemetry: TelemetryEvent
    execute: Execute
    cancel: Cancel
    credit: Credit
    release_session: ReleaseSession
    release_ref: ReleaseRef
    ping: Ping
    shutdown: Shutdown
    host_call_result: HostCallResult
    variable_update: VariableUpdate
    release_shared: ReleaseShared
    def __init__(self, id: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., host_call: _Optional[_Union[HostCall, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., telemetry: _Optional[_Union[TelemetryEvent, _Mapping]] = ..., execute: _Optional[_Union[Execute, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., release_session: _Optional[_Union[ReleaseSession, _Mapping]] = ..., release_ref: _Optional[_Union[ReleaseRef, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., shutdown: _Optional[_Union[Shutdown, _Mapping]] = ..., host_call_result: _Optional[_Union[HostCallResult, _Mapping]] = ..., variable_update: _Optional[_Union[VariableUpdate, _Mapping]] = ..., release_shared: _Optional[_Union[ReleaseShared, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("protocol_version", "pid", "python_version", "python_implementation", "gil_enabled", "profile", "capacity", "adapter", "tools", "bridge_version", "max_frame_bytes")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_IMPLEMENTATION_FIELD_NUMBER: _ClassVar[int]
    GIL_ENABLED_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    pid: int
    python_version: str
    python_implementation: str
    gil_enabled: bool
    profile: str
    capacity: int
    adapter: str
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    bridge_version: str
    max_frame_bytes: int
    def __init__(self, protocol_version: _Optional[int] = ..., pid: _Optional[int] = ..., python_version: _Optional[str] = ..., python_implementation: _Optional[str] = ..., gil_enabled: _Optional[bool] = ..., profile: _Optional[str] = ..., capacity: _Optional[int] = ..., adapter: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ..., bridge_version: _Optional[str] = ..., max_frame_bytes: _Optional[int] = ...) -> None: ...

class ToolSpec(_message.Message):
    __slots__ = ("name", "description", "parameters", "supports_streaming", "required_variables", "is_async", "batch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_STREAMING_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParamSpec]
    supports_streaming: bool
    required_variables: _containers.RepeatedScalarFieldContainer[str]
    is_async: bool
    batch: BatchSpec
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParamSpec, _Mapping]]] = ..., supports_streaming: _Optional[bool] = ..., required_variables: _Optional[_Iterable[str]] = ..., is_async: _Optional[bool] = ..., batch: _Optional[_Union[BatchSpec, _Mapping]] = ...) -> None: ...

class BatchSpec(_message.Message):
    __slots__ = ("max_size", "max_wait_ms", "stack")
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    max_size: int
    max_wait_ms: int
    stack: bool
    def __init__(self, max_size: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., stack: _Optional[bool] = ...) -> None: ...

class ParamSpec(_message.Message):
    __slots__ = ("name", "type", "required", "default_value", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    required: bool
    default_value: Value
    kind: ParamKind
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., required: _Optional[bool] = ..., default_value: _Optional[_Union[Value, _Mapping]] = ..., kind: _Optional[_Union[ParamKind, str]] = ...) -> None: ...

class Execute(_message.Message):
    __slots__ = ("tool", "session_id", "args", "kwargs", "timeout_ms", "stream", "stream_window", "metadata", "batch")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOOL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_WINDOW_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    tool: str
    session_id: str
    args: _containers.RepeatedCompositeFieldContainer[Value]
    kwargs: _containers.MessageMap[str, Value]
    timeout_ms: int
    stream: bool
    stream_window: int
    metadata: _containers.ScalarMap[str, str]
    batch: _containers.RepeatedCompositeFieldContainer[BatchCall]
    def __init__(self, tool: _Optional[str] = ..., session_id: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., kwargs: _Optional[_Mapping[str, Value]] = ..., timeout_ms: _Optional[int] = ..., stream: _Optional[bool] = ..., stream_window: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., batch: _Optional[_Iterable[_Union[BatchCall, _Mapping]]] = ...) -> None: ...

class BatchCall(_message.Message):
    __slots__ = ("kwargs", "args", "session_id")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    kwargs: _containers.MessageMap[str, Value]
    args: _containers.RepeatedCompositeFieldContainer[Value]
    session_id: str
    def __init__(self, kwargs: _Optional[_Mapping[str, Value]] = ..., args: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., session_id: _Optional[str] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: int
    def __init__(self, chunks: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("value", "timing", "items")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    value: Value
    timing: WorkerTiming
    items: _containers.RepeatedCompositeFieldContainer[BatchOutcome]
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ..., timing: _Optional[_Union[WorkerTiming, _Mapping]] = ..., items: _Optional[_Iterable[_Union[BatchOutcome, _Mapping]]] = ...) -> None: ...

class BatchOutcome(_message.Message):
    __slots__ = ("value", "error")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    value: Value
    error: Error
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class WorkerTiming(_message.Message):
    __slots__ = ("decode_nanos", "run_nanos", "encode_nanos")
    DECODE_NANOS_FIELD_NUMBER: _ClassVar[int]
    RUN_NANOS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_NANOS_FIELD_NUMBER: _ClassVar[int]
    decode_nanos: int
    run_nanos: int
    encode_nanos: int
    def __init__(self, decode_nanos: _Optional[int] = ..., run_nanos: _Optional[int] = ..., encode_nanos: _Optional[int] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("seq", "value", "is_final", "metadata", "run")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    seq: int
    value: Value
    is_final: bool
    metadata: _containers.MessageMap[str, Value]
    run: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, seq: _Optional[int] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., is_final: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, Value]] = ..., run: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("kind", "python_type", "message", "traceback", "parameter", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    PYTHON_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    kind: ErrorKind
    python_type: str
    message: str
    traceback: str
    parameter: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[_Union[ErrorKind, str]] = ..., python_type: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ..., parameter: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("sent_unix_nanos",)
    SENT_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    sent_unix_nanos: int
    def __init__(self, sent_unix_nanos: _Optional[int] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("sent_unix_nanos", "in_flight")
    SENT_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    sent_unix_nanos: int
    in_flight: int
    def __init__(self, sent_unix_nanos: _Optional[int] = ..., in_flight: _Optional[int] = ...) -> None: ...

class Shutdown(_message.Message):
    __slots__ = ("grace_ms",)
    GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    grace_ms: int
    def __init__(self, grace_ms: _Optional[int] = ...) -> None: ...

class ReleaseSession(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ReleaseRef(_message.Message):
    __slots__ = ("session_id", "ref_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REF_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ref_id: str
    def __init__(self, session_id: _Optional[str] = ..., ref_id: _Optional[str] = ...) -> None: ...

class HostCall(_message.Message):
    __slots__ = ("session_id", "tool", "args", "kwargs", "timeout_ms", "parent_request_id", "traceparent", "correlation_id")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PARENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tool: str
    args: _containers.RepeatedCompositeFieldContainer[Value]
    kwargs: _containers.MessageMap[str, Value]
    timeout_ms: int
    parent_request_id: int
    traceparent: str
    correlation_id: str
    def __init__(self, session_id: _Optional[str] = ..., tool: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., kwargs: _Optional[_Mapping[str, Value]] = ..., timeout_ms: _Optional[int] = ..., parent_request_id: _Optional[int] = ..., traceparent: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class HostCallResult(_message.Message):
    __slots__ = ("value", "error")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    value: Value
    error: Error
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class VariableUpdate(_message.Message):
    __slots__ = ("session_id", "watch_id", "variable_id", "name", "old_value", "new_value", "version", "source", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    watch_id: str
    variable_id: str
    name: str
    old_value: Value
    new_value: Value
    version: int
    source: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., watch_id: _Optional[str] = ..., variable_id: _Optional[str] = ..., name: _Optional[str] = ..., old_value: _Optional[_Union[Value, _Mapping]] = ..., new_value: _Optional[_Union[Value, _Mapping]] = ..., version: _Optional[int] = ..., source: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TelemetryEvent(_message.Message):
    __slots__ = ("name", "measurements", "metadata", "duration_nanos")
    class MeasurementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DURATION_NANOS_FIELD_NUMBER: _ClassVar[int]
    name: str
    measurements: _containers.ScalarMap[str, float]
    metadata: _containers.MessageMap[str, Value]
    duration_nanos: int
    def __init__(self, name: _Optional[str] = ..., measurements: _Optional[_Mapping[str, float]] = ..., metadata: _Optional[_Mapping[str, Value]] = ..., duration_nanos: _Optional[int] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("null", "bool", "int", "big_int", "float", "str", "bytes", "list", "tuple", "set", "frozenset", "map", "ndarray", "ref", "stream_ref", "callback", "temporal", "complex", "shared_bytes")
    NULL_FIELD_NUMBER: _ClassVar[int]
    BOOL_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    BIG_INT_FIELD_NUMBER: _ClassVar[int]
    FLOAT_FIELD_NUMBER: _ClassVar[int]
    STR_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    TUPLE_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    FROZENSET_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    NDARRAY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    STREAM_REF_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_FIELD_NUMBER: _ClassVar[int]
    COMPLEX_FIELD_NUMBER: _ClassVar[int]
    SHARED_BYTES_FIELD_NUMBER: _ClassVar[int]
    null: Null
    bool: bool
    int: int
    big_int: bytes
    float: float
    str: str
    bytes: bytes
    list: ValueList
    tuple: ValueList
    set: ValueList
    frozenset: ValueList
    map: ValueMap
    ndarray: NdArray
    ref: ObjectRef
    stream_ref: StreamRef
    callback: Callback
    temporal: Temporal
    complex: Complex
    shared_bytes: SharedRegion
    def __init__(self, null: _Optional[_Union[Null, str]] = ..., bool: _Optional[bool] = ..., int: _Optional[int] = ..., big_int: _Optional[bytes] = ..., float: _Optional[float] = ..., str: _Optional[str] = ..., bytes: _Optional[bytes] = ..., list: _Optional[_Union[ValueList, _Mapping]] = ..., tuple: _Optional[_Union[ValueList, _Mapping]] = ..., set: _Optional[_Union[ValueList, _Mapping]] = ..., frozenset: _Optional[_Union[ValueList, _Mapping]] = ..., map: _Optional[_Union[ValueMap, _Mapping]] = ..., ndarray: _Optional[_Union[NdArray, _Mapping]] = ..., ref: _Optional[_Union[ObjectRef, _Mapping]] = ..., stream_ref: _Optional[_Union[StreamRef, _Mapping]] = ..., callback: _Optional[_Union[Callback, _Mapping]] = ..., temporal: _Optional[_Union[Temporal, _Mapping]] = ..., complex: _Optional[_Union[Complex, _Mapping]] = ..., shared_bytes: _Optional[_Union[SharedRegion, _Mapping]] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class ValueMap(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[MapEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[MapEntry, _Mapping]]] = ...) -> None: ...

class MapEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: Value
    value: Value
    def __init__(self, key: _Optional[_Union[Value, _Mapping]] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class NdArray(_message.Message):
    __slots__ = ("dtype", "shape", "data", "shared")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    shared: SharedRegion
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., shared: _Optional[_Union[SharedRegion, _Mapping]] = ...) -> None: ...

class SharedRegion(_message.Message):
    __slots__ = ("arena", "offset", "length")
    ARENA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    arena: SharedArena
    offset: int
    length: int
    def __init__(self, arena: _Optional[_Union[SharedArena, str]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ReleaseShared(_message.Message):
    __slots__ = ("offsets",)
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class ObjectRef(_message.Message):
    __slots__ = ("id", "session_id", "type_name", "repr")
    ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    REPR_FIELD_NUMBER: _ClassVar[int]
    id: str
    session_id: str
    type_name: str
    repr: str
    def __init__(self, id: _Optional[str] = ..., session_id: _Optional[str] = ..., type_name: _Optional[str] = ..., repr: _Optional[str] = ...) -> None: ...

class StreamRef(_message.Message):
    __slots__ = ("id", "session_id", "type_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    session_id: str
    type_name: str
    def __init__(self, id: _Optional[str] = ..., session_id: _Optional[str] = ..., type_name: _Optional[str] = ...) -> None: ...

class Callback(_message.Message):
    __slots__ = ("id", "arity")
    ID_FIELD_NUMBER: _ClassVar[int]
    ARITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    arity: int
    def __init__(self, id: _Optional[str] = ..., arity: _Optional[int] = ...) -> None: ...

class Temporal(_message.Message):
    __slots__ = ("kind", "text")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    kind: TemporalKind
    text: str
    def __init__(self, kind: _Optional[_Union[TemporalKind, str]] = ..., text: _Optional[str] = ...) -> None: ...

class Complex(_message.Message):
    __slots__ = ("real", "imag")
    REAL_FIELD_NUMBER: _ClassVar[int]
    IMAG_FIELD_NUMBER: _ClassVar[int]
    real: float
    imag: float
    def __init__(self, real: _Optional[float] = ..., imag: _Optional[float] = ...) -> None: ...
