"""The protobuf wire format, read by hand: varints, fixed 64/32-bit values, length-delimited.

Only reading is needed (keelson answers in JSON), so this is a few small functions instead of
the `protobuf` package. Every malformed input - a truncated varint, a length running past the
end, a wire type this reader does not know (groups are not used by Kubernetes) - becomes a
ProtobufError naming the offset, never an IndexError or a silently shortened value.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
_UINT64 = 1 << 64


class ProtobufError(ValueError):
    """The request body is not a protobuf message keelson can decode; the answer is 400."""


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """The unsigned varint at offset and the offset after it."""
    if offset < len(data) and data[offset] < 0x80:  # one byte: most keys and lengths
        return data[offset], offset + 1
    result = shift = 0
    start = offset
    while offset < len(data):
        byte = data[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >= _UINT64:
                raise ProtobufError(f"varint at byte {start} is longer than 64 bits")
            return result, offset
        shift += 7
        if shift >= 70:
            break
    raise ProtobufError(f"truncated or overlong varint at byte {start}")


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message, in wire order.

    The value is an int for varints, the raw bytes for the other wire types.
    """
    offset = 0
    while offset < len(data):
        key, offset = read_varint(data, offset)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"field number 0 at byte {offset} is not valid protobuf")
        value: int | bytes
        if wire_type == VARINT:
            value, offset = read_varint(data, offset)
        elif wire_type == LENGTH_DELIMITED:
            length, offset = read_varint(data, offset)
            value, offset = _take(data, offset, length), offset + length
        elif wire_type == FIXED64:
            value, offset = _take(data, offset, 8), offset + 8
        elif wire_type == FIXED32:
            value, offset = _take(data, offset, 4), offset + 4
        else:
            raise ProtobufError(f"field {number} has unsupported wire type {wire_type}")
        yield number, wire_type, value


def _take(data: bytes, offset: int, length: int) -> bytes:
    if offset + length > len(data):
        raise ProtobufError(f"a field at byte {offset} claims {length} bytes but the message "
                            f"ends after {len(data) - offset}")
    return data[offset:offset + length]


def signed64(value: int) -> int:
    """A varint as Go's int64 (negative numbers are sent as 10-byte two's complement)."""
    return value - _UINT64 if value >= 1 << 63 else value


def signed32(value: int) -> int:
    """A varint as Go's int32: the low 32 bits, two's complement."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


FIXED_FORMATS = {"double": "<d", "float": "<f", "fixed64": "<Q", "sfixed64": "<q",
                 "fixed32": "<I", "sfixed32": "<i"}


def unpack_fixed(type_name: str, raw: bytes) -> int | float:
    return struct.unpack(FIXED_FORMATS[type_name], raw)[0]
