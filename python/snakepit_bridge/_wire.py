"""The framing of the worker protocol and the bytes written by hand on the hot path.

A frame on the socket is a 4-byte big-endian length and a serialized
``snakepit.v1.Frame``. This module holds only pure functions over bytes: the
length prefix, protobuf varints, the serialized ``Value`` of a scalar (a
fraction of the cost of building a message), and the peek at the top-level
fields of a frame protobuf refused. Frames themselves are built in
``_frames.py``; the worker (``_worker.py``) reads and writes the socket.
"""

from __future__ import annotations

import struct
from typing import Any

from ._proto import snakepit_pb2 as pb

__all__: list[str] = []

#: The 4-byte big-endian length prefix of a frame body.
pack_len = struct.Struct(">I").pack
#: ``(length,) = unpack_len(buffer, offset)``: the length prefix at `offset`.
unpack_len = struct.Struct(">I").unpack_from

#: The serialized Value of None.
NULL_VALUE_BYTES = pb.Value(null=pb.NULL_VALUE).SerializeToString()

SMALL_VARINTS = [bytes([i]) for i in range(0x80)]
_pack_double = struct.Struct("<d").pack
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def varint(n: int) -> bytes:
    """The protobuf varint of non-negative `n`."""
    if n < 0x80:
        return SMALL_VARINTS[n]
    # Two and three bytes without a loop: frame ids, stream seqs and sizes.
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def scalar_value_bytes(value: Any) -> bytes | None:
    """The serialized Value of an int, float, str or bool, written by hand (a
    fraction of the cost of building and serializing a message); None for
    anything else. Field numbers as in snakepit.proto: bool 2, int 3
    (sint64), float 5, str 6."""
    t = type(value)
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + varint((value << 1) ^ (value >> 63))
        return None
    if t is str:
        try:
            b: bytes = value.encode()
        except UnicodeEncodeError:  # lone surrogates: let protobuf refuse it
            return None
        return b"2" + varint(len(b)) + b
    if t is float:
        return b")" + _pack_double(value)
    if t is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    return None


# Frame kinds, by field number, read from a frame protobuf refused.
_FRAME_KINDS: dict[int, str] = {f.number: f.name for f in pb.Frame.DESCRIPTOR.oneofs_by_name["kind"].fields}


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; IndexError past the
    end of `data`, ValueError for a varint longer than 10 bytes."""
    result = 0
    shift = 0
    while shift < 70:
        b = data[pos]  # IndexError past the end: a truncated frame
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def peek_frame(body: bytes) -> tuple[int, str | None]:
    """(id, kind) of a Frame, read from its top-level fields alone: nested
    messages are skipped by their length, never decoded, so a frame protobuf
    refuses still tells which exchange it belongs to. What cannot be read is
    0 and None."""
    fid = 0
    kind: str | None = None
    pos = 0
    n = len(body)
    try:
        while pos < n:
            key, pos = read_varint(body, pos)
            field, wire_type = key >> 3, key & 7
            if wire_type == 0:
                value, pos = read_varint(body, pos)
                if field == 1:
                    fid = value
            elif wire_type == 2:
                size, pos = read_varint(body, pos)
                # The last kind wins, as when protobuf decodes a oneof.
                kind = _FRAME_KINDS.get(field, kind)
                pos += size
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                break
    except (IndexError, ValueError):
        pass
    return fid, kind
