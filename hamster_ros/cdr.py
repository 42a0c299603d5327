"""Chosen fields of a serialized ROS message, read straight from its CDR bytes.

rclpy's deserialize_message builds every field as a Python object: for franka_msgs/FrankaRobotState (~2.8 KB, four
JointStates, ~80 error flags, a dozen stamped poses, wrenches and inertias) that is ~0.35 ms at best and ~0.9 ms on
a busy 2-core machine, for the five fields the bridge reads. A FieldReader is compiled once from the message class's
rosidl introspection (SLOT_TYPES), so its layout is the installed message's, and then walks the bytes: fields it is
asked for are unpacked, the rest are skipped by size. test/ros/test_cdr.py compares it with deserialize_message.

The encoding is what rmw_fastrtps writes: a 4-byte encapsulation header (plain CDR, little endian: 00 01 00 00),
then XCDR1: primitives aligned to their size (8 at most) from the end of that header; strings as a uint32 length
(with the terminating NUL) and the bytes; sequences as a uint32 count and the elements; arrays as the elements.
"""
from __future__ import annotations

import importlib
import struct
from typing import Any, Sequence

from rosidl_parser import definition

CDR_LE = b"\x00\x01"
_PRIMITIVES = {   # rosidl type name -> struct format (little endian), size = alignment
    "boolean": "?", "octet": "B", "char": "B", "uint8": "B", "int8": "b", "uint16": "H", "int16": "h",
    "uint32": "I", "int32": "i", "uint64": "Q", "int64": "q", "float": "f", "double": "d"}

# Compiled operations, run in order on the payload (the bytes after the encapsulation header):
#   ("fixed", format, size, names)      len(names) primitives of one type, aligned once; each read where its name is set
#   ("array", format, size, count, name) a fixed-size array of primitives, read as a tuple
#   ("sequence", format, size, name)     a sequence of primitives: read as a tuple when name is set, else skipped
#   ("string", name)                     a string: read when name is set, else skipped
#   ("repeat", count, ops)               `count` times (None: a uint32 count first) the nested operations, skipped


class FieldReader:
    """Reads the fields named in `paths` (dotted, e.g. "o_t_ee.pose.position.x"; a message's name reads all its
    fields) from serialized messages of `message_type`. read() returns {full dotted path: value}; an array or
    sequence of primitives comes as a tuple, a string as str. Fields inside sequences or arrays of messages or
    strings cannot be read (ValueError at construction), nor can wide strings."""

    def __init__(self, message_type, paths: Sequence[str]):
        if not paths:
            raise ValueError("no field to read")
        self.message_type = message_type
        self._wanted = tuple(paths)
        self._found: set[str] = set()
        self._ops = _merge(self._compile(message_type, "", readable=True))
        missing = [path for path in self._wanted if path not in self._found]
        if missing:
            raise ValueError(f"{message_type.__name__} has no field {missing[0]!r}")

    def read(self, data: bytes) -> dict[str, Any]:
        if bytes(data[:2]) != CDR_LE:
            raise ValueError(f"not little-endian plain CDR (encapsulation {bytes(data[:4]).hex()}): cannot read "
                             f"{self.message_type.__name__}")
        payload = memoryview(data)[4:]
        out: dict[str, Any] = {}
        try:
            end = _run(self._ops, payload, 0, out)
        except (struct.error, UnicodeDecodeError) as error:
            raise ValueError(f"a truncated or malformed {self.message_type.__name__} ({len(data)} bytes): {error}") \
                from None
        if end > len(payload):
            raise ValueError(f"a truncated {self.message_type.__name__}: {len(data)} bytes, its fields need {end + 4}")
        return out

    # -- compiling -----------------------------------------------------------------------------------------------
    def _covers(self, path: str) -> bool:
        """Whether `path` is read: it or a message around it was asked for."""
        wanted = [w for w in self._wanted if path == w or path.startswith(w + ".")]
        self._found.update(wanted)
        return bool(wanted)

    def _compile(self, message_type, prefix: str, readable: bool) -> list[tuple]:
        ops = []
        for name, slot in zip(message_type.get_fields_and_field_types(), message_type.SLOT_TYPES):
            ops.extend(self._compile_slot(slot, prefix + name, readable))
        return ops

    def _compile_slot(self, slot, path: str, readable: bool) -> list[tuple]:
        read = readable and self._covers(path)
        if isinstance(slot, definition.BasicType):
            fmt = _format(slot, path)
            return [("fixed", fmt, struct.calcsize(fmt), (path if read else None,))]
        if isinstance(slot, (definition.UnboundedString, definition.BoundedString)):
            return [("string", path if read else None)]
        if isinstance(slot, definition.NamespacedType):  # nested fields follow inline
            return self._compile(_message_class(slot), path + ".", readable)
        if isinstance(slot, (definition.Array, definition.UnboundedSequence, definition.BoundedSequence)):
            element = slot.value_type
            if isinstance(element, definition.BasicType):
                fmt = _format(element, path)
                size = struct.calcsize(fmt)
                if not isinstance(slot, definition.Array):
                    return [("sequence", fmt, size, path if read else None)]
                return [("array", fmt, size, slot.size, path)] if read else [("fixed", fmt, size, (None,) * slot.size)]
            inside = [w for w in self._wanted if w == path or w.startswith(path + ".")] if readable else []
            if inside or read:
                raise ValueError(f"{(inside or [path])[0]}: fields in a sequence or array of messages or strings "
                                 f"cannot be read ({path} is one)")
            count = slot.size if isinstance(slot, definition.Array) else None
            return [("repeat", count, _merge(self._compile_slot(element, path, readable=False)))]
        raise ValueError(f"{path}: {type(slot).__name__} fields are not supported")


def _format(slot, path: str) -> str:
    try:
        return _PRIMITIVES[slot.typename]
    except KeyError:
        raise ValueError(f"{path}: {slot.typename} fields are not supported") from None


def _message_class(slot: "definition.NamespacedType"):
    return getattr(importlib.import_module(".".join(slot.namespaces)), slot.name)


def _merge(ops: list[tuple]) -> list[tuple]:
    """Consecutive primitives of one type become one operation: they share one alignment and are contiguous."""
    merged: list[tuple] = []
    for op in ops:
        if op[0] == "fixed" and merged and merged[-1][0] == "fixed" and merged[-1][1] == op[1]:
            merged[-1] = ("fixed", op[1], op[2], merged[-1][3] + op[3])
        else:
            merged.append(op)
    return merged


def _align(position: int, size: int) -> int:
    return (position + size - 1) & -size


def _run(ops: list[tuple], payload: memoryview, position: int, out: dict[str, Any]) -> int:
    unpack_from = struct.unpack_from
    for op in ops:
        kind = op[0]
        if kind == "fixed":
            _, fmt, size, names = op
            position = _align(position, size)
            if any(names):
                for name, value in zip(names, unpack_from(f"<{len(names)}{fmt}", payload, position)):
                    if name is not None:
                        out[name] = value
            position += size * len(names)
        elif kind == "string":
            position = _align(position, 4)
            (length,) = unpack_from("<I", payload, position)
            if op[1] is not None:
                if length < 1 or position + 4 + length > len(payload):
                    raise struct.error(f"string length {length} at byte {position + 4}")
                out[op[1]] = bytes(payload[position + 4:position + 3 + length]).decode()
            position += 4 + length
        elif kind == "sequence":
            _, fmt, size, name = op
            position = _align(position, 4)
            (count,) = unpack_from("<I", payload, position)
            position += 4
            if count:
                position = _align(position, size)
            if name is not None:
                out[name] = unpack_from(f"<{count}{fmt}", payload, position)
            position += size * count
        elif kind == "array":
            _, fmt, size, count, name = op
            position = _align(position, size)
            out[name] = unpack_from(f"<{count}{fmt}", payload, position)
            position += size * count
        else:  # repeat
            _, count, nested = op
            if count is None:
                position = _align(position, 4)
                (count,) = unpack_from("<I", payload, position)
                position += 4
            for _ in range(count):
                position = _run(nested, payload, position, out)
                if position > len(payload):
                    raise struct.error(f"past the end at byte {position}")
    return position
