"""The stub is built from the service's descriptor: one callable per RPC of
service.proto, streaming where the RPC streams, at the path grpc expects."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from snakepit_client._proto import service_pb2
from snakepit_client._stub import SERVICE, Stub, method_path


def test_every_rpc_of_the_service_has_a_callable_of_its_kind() -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")
    try:
        stub = Stub(channel)
        names = [m.name for m in service_pb2.DESCRIPTOR.services_by_name["Snakepit"].methods]
        assert len(names) == 20
        for method in SERVICE.methods:
            callable_ = getattr(stub, method.name)
            kind = grpc.UnaryStreamMultiCallable if method.server_streaming else grpc.UnaryUnaryMultiCallable
            assert isinstance(callable_, kind), method.name
        streaming = sorted(m.name for m in SERVICE.methods if m.server_streaming)
        assert streaming == ["ExecuteStream", "FfiStream", "WatchVariables"]
        with pytest.raises(AttributeError, match="no RPC 'Nope'"):
            stub.Nope  # noqa: B018
    finally:
        channel.close()


def test_paths_are_the_service_full_name_and_the_method() -> None:
    assert method_path("Execute") == "/snakepit.v1.Snakepit/Execute"
    assert method_path("WatchVariables") == "/snakepit.v1.Snakepit/WatchVariables"
    with pytest.raises(KeyError):
        method_path("Nope")


def test_an_aio_channel_gets_the_same_stub() -> None:
    async def build() -> None:
        channel = grpc.aio.insecure_channel("127.0.0.1:1")
        try:
            stub = Stub(channel)
            assert isinstance(stub.Execute, grpc.aio.UnaryUnaryMultiCallable)
            assert isinstance(stub.ExecuteStream, grpc.aio.UnaryStreamMultiCallable)
        finally:
            await channel.close()

    asyncio.run(build())
