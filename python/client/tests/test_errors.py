"""From a gRPC failure to a SnakepitError: the ErrorInfo in the status
details when the server sent one, the status code when nothing did; and
every kind the host can report has its class."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import snakepit_client as sp
from snakepit_client._errors import error_class, from_rpc_error
from snakepit_client._proto import service_pb2 as svc

REPO = Path(__file__).resolve().parents[3]


def details(kind: str, domain: str = "snakepit", **metadata: str) -> bytes:
    info = error_details_pb2.ErrorInfo(reason=kind.upper(), domain=domain, metadata={"kind": kind, **metadata})
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(code=2, message="m", details=[packed]).SerializeToString()


class FakeError(grpc.RpcError):
    """What grpcio raises for a failed call: an RpcError that is also a Call."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, Any], ...] = ()) -> None:
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailers


def test_the_error_info_gives_kind_python_type_traceback_and_parameter() -> None:
    trailer = details(
        "python_exception",
        message="boom",
        python_type="ValueError",
        traceback='File "x.py", line 1\nValueError: boom',
        parameter="",
    )
    err = from_rpc_error(FakeError(grpc.StatusCode.UNKNOWN, "python raised", (("grpc-status-details-bin", trailer),)))
    assert isinstance(err, sp.PythonError)
    assert (err.kind, err.message, err.python_type) == ("python_exception", "boom", "ValueError")
    assert err.traceback.endswith("ValueError: boom")
    assert err.code is grpc.StatusCode.UNKNOWN
    assert str(err) == "python_exception: ValueError: boom"


def test_the_parameter_at_fault_is_kept() -> None:
    trailer = details("bad_arguments", message="b must be a number", parameter="b")
    err = from_rpc_error(FakeError(grpc.StatusCode.INVALID_ARGUMENT, "x", (("grpc-status-details-bin", trailer),)))
    assert isinstance(err, sp.BadArgumentsError)
    assert (err.kind, err.parameter, err.details["parameter"]) == ("bad_arguments", "b", "b")


@pytest.mark.parametrize(
    ("code", "kind", "cls"),
    [
        (grpc.StatusCode.DEADLINE_EXCEEDED, "timeout", sp.DeadlineExceeded),
        (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", sp.UnauthenticatedError),
        (grpc.StatusCode.UNAVAILABLE, "unavailable", sp.UnavailableError),
        (grpc.StatusCode.CANCELLED, "cancelled", sp.CancelledError),
        (grpc.StatusCode.INTERNAL, "internal", sp.InternalError),
    ],
)
def test_without_details_the_status_code_decides(code: grpc.StatusCode, kind: str, cls: type) -> None:
    err = from_rpc_error(FakeError(code, "Deadline Exceeded"))
    assert type(err) is cls
    assert (err.kind, err.code, err.message) == (kind, code, "Deadline Exceeded")


def test_an_error_info_of_another_domain_or_a_broken_trailer_is_ignored() -> None:
    other = details("python_exception", domain="elsewhere")
    for trailer in (other, b"\xff\xff not a status"):
        err = from_rpc_error(FakeError(grpc.StatusCode.NOT_FOUND, "gone", (("grpc-status-details-bin", trailer),)))
        assert (type(err), err.kind) == (sp.NotFoundError, "not_found")


def outcome_labels() -> list[str]:
    """Every label `Error::outcome()` returns, read from the host's source."""
    source = (REPO / "actors" / "src" / "error.rs").read_text()
    body = source[source.index("pub fn outcome(") :]
    body = body[: body.index("\n    }\n")]
    return re.findall(r'=> "([a-z_]+)"', body)


def test_every_kind_the_host_reports_has_its_own_class() -> None:
    if not (REPO / "actors" / "src" / "error.rs").exists():
        pytest.skip("not run from the snakepit repository")
    labels = outcome_labels()
    assert len(labels) >= 25, labels
    for kind in [*labels, "unauthenticated", "unavailable"]:
        assert error_class(kind) is not sp.SnakepitError, f"no class for kind {kind!r}"
    assert error_class("something_new") is sp.SnakepitError


def test_the_families_nest_as_documented() -> None:
    assert issubclass(sp.UnknownToolError, sp.NotFoundError)
    assert issubclass(sp.RefNotFoundError, sp.NotFoundError)
    assert issubclass(sp.WorkerBusyError, sp.UnavailableError)
    assert issubclass(sp.EncodingError, sp.BadArgumentsError)
    for name in sp.__all__:
        obj = getattr(sp, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, sp.SnakepitError)


def test_an_error_survives_pickling() -> None:
    err = from_rpc_error(
        FakeError(
            grpc.StatusCode.UNKNOWN,
            "x",
            (("grpc-status-details-bin", details("python_exception", message="m", python_type="KeyError")),),
        )
    )
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.kind, back.python_type, back.message, back.code) == (
        sp.PythonError,
        "python_exception",
        "KeyError",
        "m",
        grpc.StatusCode.UNKNOWN,
    )


# ------------------------------------------------- through a real grpc channel


class _Failing(grpc.GenericRpcHandler):
    """A gRPC server whose Execute fails as snakepit serve's does: a status
    with the ErrorInfo in grpc-status-details-bin."""

    def service(self, call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if call_details.method != "/snakepit.v1.Snakepit/Execute":
            return None

        def execute(request: svc.ExecuteRequest, context: grpc.ServicerContext) -> svc.ExecuteResponse:
            metadata = dict(context.invocation_metadata())
            trailer = details("unknown_tool", message=f"no tool {request.tool!r}; auth {metadata.get('authorization')}")
            context.set_trailing_metadata((("grpc-status-details-bin", trailer),))
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown tool")

        return grpc.unary_unary_rpc_method_handler(
            execute,
            request_deserializer=svc.ExecuteRequest.FromString,
            response_serializer=svc.ExecuteResponse.SerializeToString,
        )


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[_Failing()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_a_status_with_details_from_a_real_channel_becomes_the_kind(failing_server: str) -> None:
    with sp.Client(failing_server, token="t0k3n", timeout=10) as client, pytest.raises(sp.UnknownToolError) as err:
        client.execute("nope", x=1)
    assert err.value.kind == "unknown_tool"
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    assert err.value.message == "no tool 'nope'; auth Bearer t0k3n"


async def _aio_execute(target: str) -> None:
    async with sp.AsyncClient(target, timeout=10) as client:
        await client.execute("nope")


def test_the_async_client_maps_the_same_way(failing_server: str) -> None:
    import asyncio

    with pytest.raises(sp.UnknownToolError, match="auth None"):
        asyncio.run(_aio_execute(failing_server))
