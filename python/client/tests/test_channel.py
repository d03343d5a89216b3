"""What a client is told about its server becomes grpcio's channel: options,
the authority of a Unix socket, TLS settings that make sense, the token."""

from __future__ import annotations

import pytest

from snakepit_client._channel import MAX_MESSAGE_BYTES, ChannelSpec


def test_the_callers_options_win_over_ours() -> None:
    spec = ChannelSpec("127.0.0.1:1", channel_options=(("grpc.max_receive_message_length", 10), ("grpc.x", 1)))
    options = dict(spec.options())
    assert options["grpc.max_receive_message_length"] == 10
    assert options["grpc.max_send_message_length"] == MAX_MESSAGE_BYTES
    assert options["grpc.x"] == 1
    assert "grpc.default_authority" not in options


def test_a_unix_socket_is_reached_as_localhost() -> None:
    assert dict(ChannelSpec("unix:/run/s.sock").options())["grpc.default_authority"] == "localhost"


def test_the_token_is_a_bearer_token_on_every_call() -> None:
    assert ChannelSpec("h:1", token="abc\n").metadata() == (("authorization", "Bearer abc"),)
    assert ChannelSpec("h:1").metadata() is None
    with pytest.raises(ValueError, match="token is empty"):
        ChannelSpec("h:1", token=" \n")


def test_tls_settings_that_cannot_work_are_refused() -> None:
    assert ChannelSpec("h:1", root_certificates=b"pem").tls
    assert not ChannelSpec("h:1").tls
    with pytest.raises(ValueError, match="both private_key and certificate_chain"):
        ChannelSpec("h:1", root_certificates=b"pem", private_key=b"key")
    with pytest.raises(ValueError, match="needs root_certificates"):
        ChannelSpec("h:1", private_key=b"key", certificate_chain=b"chain")
    with pytest.raises(ValueError, match="host:port"):
        ChannelSpec("")
