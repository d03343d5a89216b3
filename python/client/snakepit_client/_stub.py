"""The callables of the ``snakepit.v1.Snakepit`` service, built from its
descriptor (the generated ``service_pb2``): every RPC of service.proto, with
its path and message classes, and no list of them written by hand. The
clients (``_client.py``, ``_aio.py``) make one per channel.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory

from ._proto import service_pb2

__all__ = ["SERVICE", "Stub", "method_path"]

SERVICE = service_pb2.DESCRIPTOR.services_by_name["Snakepit"]


def method_path(name: str) -> str:
    """The HTTP/2 path of an RPC, e.g. ``/snakepit.v1.Snakepit/Execute``."""
    return f"/{SERVICE.full_name}/{SERVICE.methods_by_name[name].name}"


class Stub:
    """One multicallable per RPC, named as in service.proto (``stub.Execute``,
    ``stub.ExecuteStream``, ...), on a ``grpc.Channel`` or a
    ``grpc.aio.Channel`` (both make them the same way)."""

    def __init__(self, channel: Any) -> None:
        self._methods: dict[str, Any] = {}
        for method in SERVICE.methods:
            if method.client_streaming:
                raise TypeError(f"{method.full_name}: client streams are not supported by this client")
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            make = channel.unary_stream if method.server_streaming else channel.unary_unary
            self._methods[method.name] = make(
                method_path(method.name),
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
                _registered_method=True,
            )

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_methods"][name]
        except KeyError:
            raise AttributeError(f"the Snakepit service has no RPC {name!r}") from None
