"""How both clients reach the server: the target, TLS, and the token.

``target`` is ``"host:port"`` or ``"unix:/path/to.sock"``. With
``root_certificates`` (PEM bytes) the channel uses TLS, verifying the server
against them; ``private_key`` and ``certificate_chain`` add a client
certificate (mTLS). The token travels as ``authorization: Bearer <token>``
metadata on every call. ``channel_options`` are passed to grpcio as they are
(e.g. ``("grpc.keepalive_time_ms", 10000)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["ChannelSpec", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest message sent or received: the workers' default frame limit."""

_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


@dataclass(frozen=True)
class ChannelSpec:
    """What a client was told about its server."""

    target: str
    token: str | None = None
    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    channel_options: Sequence[tuple[str, Any]] = ()

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError('target must be "host:port" or "unix:/path/to.sock"')
        if (self.private_key is None) != (self.certificate_chain is None):
            raise ValueError("a client certificate needs both private_key and certificate_chain")
        if self.private_key is not None and self.root_certificates is None:
            raise ValueError("a client certificate (mTLS) needs root_certificates to verify the server")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty")

    @property
    def tls(self) -> bool:
        return self.root_certificates is not None

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The metadata every call carries."""
        if self.token is None:
            return None
        return (("authorization", f"Bearer {self.token.strip()}"),)

    def _credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)

    def options(self) -> list[tuple[str, Any]]:
        """grpcio channel options: ours, then the caller's (which win)."""
        ours = list(_OPTIONS)
        if self.target.startswith("unix:"):
            # grpcio would send the socket's path as the HTTP/2 authority,
            # which HTTP servers (hyper, under tonic) refuse as malformed.
            ours.append(("grpc.default_authority", "localhost"))
        theirs = dict(self.channel_options)
        return [(k, v) for k, v in ours if k not in theirs] + list(theirs.items())

    def sync_channel(self) -> grpc.Channel:
        if self.tls:
            return grpc.secure_channel(self.target, self._credentials(), options=self.options())
        return grpc.insecure_channel(self.target, options=self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls:
            return grpc.aio.secure_channel(self.target, self._credentials(), options=self.options())
        return grpc.aio.insecure_channel(self.target, options=self.options())
