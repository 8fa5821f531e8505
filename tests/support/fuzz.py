"""Hypothesis strategies for any protobuf message, derived from its descriptor.

Values lean on the edges: extreme and negative integers, NaN and infinities, empty and long
strings (any Unicode), out-of-range enum numbers (proto3 enums are open), timestamps at the
ends of their range, nested messages down to ``max_depth`` and, now and then, a huge repeated
field. :func:`wire_bytes` also yields malformed encodings (truncated, bit-flipped, invalid
UTF-8 in a string field), which a server must refuse like any other bad input.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

HUGE_REPEATED = 20_000
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, -1, 0, 1, 2**31 - 1, -(2**31)) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return _integers(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(
            st.text(max_size=40),
            st.sampled_from(["", "../../etc/passwd", "s3://other/../x", "a" * 5000, "\x00"]),
        )
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=256)
    if kind == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), _integers(-(2**31), 2**31 - 1))
    raise TypeError(f"no strategy for field type {kind} of {field.full_name}")


def _well_known(descriptor: Descriptor) -> st.SearchStrategy[dict[str, Any]] | None:
    if descriptor.full_name == "google.protobuf.Timestamp":
        # Beyond the valid range (years 1-9999) too: the server must refuse, not crash.
        return st.fixed_dictionaries(
            {
                "seconds": _integers(-(2**63), 2**63 - 1),
                "nanos": _integers(-(2**31), 2**31 - 1),
            }
        )
    if descriptor.full_name == "google.protobuf.Duration":
        return st.fixed_dictionaries(
            {
                "seconds": _integers(-(2**63), 2**63 - 1),
                "nanos": _integers(-(2**31), 2**31 - 1),
            }
        )
    return None


def _fields(descriptor: Descriptor, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    known = _well_known(descriptor)
    if known is not None:
        return known
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _field_value(field, depth)
        if value is not None:
            optional[field.name] = value
    return st.fixed_dictionaries({}, optional=optional)


def _field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if is_message and field.message_type.GetOptions().map_entry:
        key = _scalar(field.message_type.fields_by_name["key"])
        value_field = field.message_type.fields_by_name["value"]
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth <= 0:
                return None
            value = _fields(value_field.message_type, depth - 1)
        else:
            value = _scalar(value_field)
        return st.dictionaries(key, value, max_size=4)
    if is_message:
        if depth <= 0:
            return None
        one: st.SearchStrategy[Any] = _fields(field.message_type, depth - 1)
    else:
        one = _scalar(field)
    if field.label != FieldDescriptor.LABEL_REPEATED:
        return one
    small = st.lists(one, max_size=4)
    if is_message:
        return small
    # A huge repeated field of short elements: many elements, not many bytes (the 5000-char
    # strings repeated 20,000 times would be 100 MB, refused by the transport before any
    # domain code, and take half a second each to serialize).
    element = one
    if field.type == FieldDescriptor.TYPE_STRING:
        element = st.text(max_size=8)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        element = st.binary(max_size=8)
    return st.one_of(small, small, small, element.map(lambda v: [v] * HUGE_REPEATED))


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    _fill(message, values)
    return message


def _fill(message: Message, values: dict[str, Any]) -> None:
    descriptor = message.DESCRIPTOR
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(target[key], item)
                else:
                    target[key] = item
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.label == FieldDescriptor.LABEL_REPEATED:
                for item in value:
                    _fill(target.add(), item)
            else:
                target.SetInParent()
                _fill(target, value)
        elif field.label == FieldDescriptor.LABEL_REPEATED:
            target.extend(value)
        else:
            setattr(message, name, value)


def messages(descriptor: Descriptor, *, max_depth: int = 3) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type with edge-leaning field values."""
    cls = message_factory.GetMessageClass(descriptor)
    return _fields(descriptor, max_depth).map(lambda values: _build(cls, values))


def _invalid_utf8_string(descriptor: Descriptor) -> bytes | None:
    """A field record putting invalid UTF-8 into the first string field, if there is one."""
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING and field.number < 16:
            payload = b"\xff\xfe\xc0"
            return bytes([(field.number << 3) | 2, len(payload)]) + payload
    return None


def wire_bytes(descriptor: Descriptor, *, max_depth: int = 3) -> st.SearchStrategy[bytes]:
    """Serialized requests: mostly valid messages, some truncated or bit-flipped, and (when
    the message has a string field) one with invalid UTF-8 in it."""
    valid = messages(descriptor, max_depth=max_depth).map(lambda m: m.SerializeToString())

    def damage(data: bytes, cut: int, flip: int) -> bytes:
        if not data:
            return b"\xff"
        data = bytearray(data[: max(1, cut % (len(data) + 1))])
        data[flip % len(data)] ^= 0xFF
        return bytes(data)

    damaged = st.builds(damage, valid, st.integers(0, 2**16), st.integers(0, 2**16))
    options = [valid, valid, valid, damaged]
    bad_utf8 = _invalid_utf8_string(descriptor)
    if bad_utf8 is not None:
        options.append(st.just(bad_utf8))
    return st.one_of(*options)
