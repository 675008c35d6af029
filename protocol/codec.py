"""msgpack codec for protocol messages.

Wire format: one msgpack map per message, ``{"type": <class name>, "protocol": <major>, <field>: <value>...}``;
a nested message (Welcome.policy) is a map of its fields. numpy arrays travel as msgpack ext type
``ARRAY_EXT`` (1) whose payload is::

    u8 ndim | u8 len(name) | name (ASCII numpy dtype name, e.g. "float32") | zero padding to 8 bytes
    | ndim x u64 little-endian shape | raw little-endian C-order data

The header is a multiple of 8 bytes so the data of a decoded array is aligned. ``encode`` writes maps and
array exts itself and joins all parts once, so array data is copied a single time; the result is ordinary
msgpack that any msgpack library reads. Only the dtypes in
``SUPPORTED_DTYPES`` are accepted; object, void, string and complex arrays are refused, and no pickle is used.

Decoding is bounded before any object is built: msgpack's own length limits (``max_str_len``, ``max_bin_len``,
``max_ext_len``, ``max_array_len``, ``max_map_len``) are derived from what a protocol message can hold, and a budget
on containers and their items over the whole message keeps a small frame of tiny maps or lists from growing into
gigabytes of Python objects. The sender id is read only when it is a valid id, and every refusal detail is clipped,
so nothing a peer sends can make the receiver's logs or counters grow with its size.

Decoded arrays are zero-copy views (``np.frombuffer``) of the received bytes and therefore READ-ONLY; pass
``writable=True`` to ``decode`` to get private copies (or copy the arrays you need to modify).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import numpy as np

from protocol.constants import DEFAULT_MAX_MESSAGE_BYTES, MAX_ID_LENGTH, PROTOCOL_VERSION
from protocol.errors import ProtocolError, Reason
from protocol.messages import MESSAGE_TYPES, Error, Message, ModelUpdate
from protocol.spec import SUPPORTED_DTYPES
from protocol.validate import field_types, validate_message

ARRAY_EXT: int = 1
MAX_NDIM: int = 32
_HEAD = struct.Struct("<BB")
_RESERVED_KEYS = ("type", "protocol")
_SENDER_KEYS = ("actor_id", "sender_id")

#: Longest msgpack str in a message: ids are at most MAX_ID_LENGTH characters; the free-form strings (host, Bye
#: reason, Error message, settings and metadata values) are short text. Bytes (ONNX) travel as bin, not str.
MAX_STR_BYTES: int = 1024 * 1024
#: Most entries in one msgpack map: message fields, state tensors, the initializers of one policy's weights
#: (hundreds for the paper-size models), settings and metadata.
MAX_MAP_ITEMS: int = 4096
#: Most items in one msgpack array: the episodes that ended in one segment (at most T x B) and metadata lists.
MAX_ARRAY_ITEMS: int = 2**17
#: Most containers plus container items in one whole message. Each costs tens of bytes once built while it can
#: take a single byte on the wire, so this, not the frame size, bounds what one message can cost in memory
#: (about 20 MB at most), whatever the nesting.
MAX_CONTAINER_ITEMS: int = 2**18
#: Longest refusal detail kept (the rest of an attacker-sized string is never logged or stored).
MAX_DETAIL_CHARS: int = 300


def _pad8(n: int) -> int:
    return (n + 7) & ~7


# ---------------------------------------------------------------- arrays


def _array_parts(arr: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The ext payload of one array as (header, data view); the data is not copied here."""
    name = arr.dtype.name
    if name not in SUPPORTED_DTYPES or arr.dtype.fields is not None:
        raise ProtocolError(Reason.BAD_DTYPE, f"cannot encode dtype {arr.dtype} ({sorted(SUPPORTED_DTYPES)})")
    if arr.ndim > MAX_NDIM:
        raise ProtocolError(Reason.BAD_SHAPE, f"cannot encode {arr.ndim} dimensions (max {MAX_NDIM})")
    little = arr.dtype.newbyteorder("<")
    arr = np.asarray(arr, dtype=little, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
    name_bytes = name.encode("ascii")
    head = _HEAD.pack(arr.ndim, len(name_bytes)) + name_bytes
    head += b"\0" * (_pad8(len(head)) - len(head))
    head += struct.pack(f"<{arr.ndim}Q", *arr.shape)
    return head, arr.reshape(-1).view(np.uint8)


def encode_array(arr: np.ndarray) -> msgpack.ExtType:
    """One array as an ARRAY_EXT ext object (big-endian input is converted to little-endian)."""
    head, data = _array_parts(arr)
    return msgpack.ExtType(ARRAY_EXT, b"".join((head, data.data)))


def decode_array(payload: bytes) -> np.ndarray:
    """Inverse of ``encode_array``: a read-only view of ``payload``. Raises ProtocolError."""
    if len(payload) < _HEAD.size:
        raise ProtocolError(Reason.BAD_ARRAY, "array header truncated")
    ndim, name_len = _HEAD.unpack_from(payload)
    name_end = _HEAD.size + name_len
    shape_start = _pad8(name_end)
    data_start = shape_start + 8 * ndim
    if ndim > MAX_NDIM or len(payload) < data_start:
        raise ProtocolError(Reason.BAD_ARRAY, f"array header truncated or ndim {ndim} > {MAX_NDIM}")
    try:
        name = payload[_HEAD.size : name_end].decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(Reason.BAD_DTYPE, "array dtype name is not ASCII") from None
    if name not in SUPPORTED_DTYPES:
        raise ProtocolError(Reason.BAD_DTYPE, f"array dtype {name!r} is not supported")
    if any(payload[name_end:shape_start]):
        raise ProtocolError(Reason.BAD_ARRAY, "non-zero padding in array header")
    shape = struct.unpack_from(f"<{ndim}Q", payload, shape_start)
    dtype = np.dtype(name).newbyteorder("<")
    count = 1
    for dim in shape:
        count *= dim  # Python ints: no overflow; the length check below bounds it
    if count * dtype.itemsize != len(payload) - data_start:
        raise ProtocolError(
            Reason.BAD_ARRAY,
            f"array {name}{list(shape)} needs {count * dtype.itemsize} bytes, got {len(payload) - data_start}",
        )
    arr = np.frombuffer(payload, dtype=dtype, count=count, offset=data_start).reshape(shape)
    if dtype.kind == "b" and count and arr.view(np.uint8).max() > 1:
        raise ProtocolError(Reason.BAD_ARRAY, "bool array holds bytes other than 0 and 1")
    return arr


def _ext_hook(code: int, payload: bytes) -> Any:
    if code != ARRAY_EXT:
        raise ProtocolError(Reason.BAD_ARRAY, f"unknown msgpack ext type {code}")
    return decode_array(payload)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return encode_array(obj)
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        return obj.item()
    raise ProtocolError(Reason.BAD_FIELD, f"cannot encode a {type(obj).__name__}")


# ---------------------------------------------------------------- messages


def _fields(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in field_types(type(msg)):
        value = getattr(msg, name)
        out[name] = _fields(value) if isinstance(value, ModelUpdate) else value
    return out


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + struct.pack(">H", n) if n < 2**16 else b"\xdf" + struct.pack(">I", n)


def _ext_header(length: int) -> bytes:
    if length < 2**8:
        return struct.pack(">BBb", 0xC7, length, ARRAY_EXT)
    if length < 2**16:
        return struct.pack(">BHb", 0xC8, length, ARRAY_EXT)
    if length < 2**32:
        return struct.pack(">BIb", 0xC9, length, ARRAY_EXT)
    raise ProtocolError(Reason.OVERSIZE, f"an array of {length} bytes does not fit in one msgpack ext")


def _pack_parts(value: Any, parts: list[Any]) -> None:
    """Append the msgpack encoding of ``value`` to ``parts``. Maps and arrays are written here so that array
    data is referenced, not copied, until the single ``b"".join`` in ``encode``; everything else is packed
    by msgpack (arrays nested in lists still work, through ``_default``, at the cost of one more copy)."""
    if isinstance(value, np.ndarray):
        head, data = _array_parts(value)
        parts += (_ext_header(len(head) + data.nbytes), head, data)
    elif isinstance(value, dict):
        parts.append(_map_header(len(value)))
        for key, item in value.items():
            parts.append(msgpack.packb(key, use_bin_type=True))
            _pack_parts(item, parts)
    else:
        parts.append(msgpack.packb(value, default=_default, use_bin_type=True, datetime=False))


def encode(msg: Message, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, validate: bool = True) -> bytes:
    """Serialise one message. Validates it first (so a sender finds its own bugs) unless ``validate=False``,
    which exists for tests that need to produce invalid messages. Raises ProtocolError."""
    if type(msg).__name__ not in MESSAGE_TYPES or MESSAGE_TYPES[type(msg).__name__] is not type(msg):
        raise ProtocolError(Reason.UNKNOWN_TYPE, f"{type(msg).__name__} is not a protocol message")
    if validate:
        validate_message(msg)
    body = {"type": type(msg).__name__, "protocol": PROTOCOL_VERSION, **_fields(msg)}
    parts: list[Any] = []
    try:
        _pack_parts(body, parts)
    except ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ProtocolError(Reason.BAD_FIELD, f"cannot encode {type(msg).__name__}: {exc}") from None
    size = sum(memoryview(p).nbytes for p in parts)
    if size > max_bytes:
        raise ProtocolError(Reason.OVERSIZE, f"{type(msg).__name__} is {size} bytes, the limit is {max_bytes}")
    return b"".join(parts)


def _build(cls: type, body: dict[str, Any], where: str) -> Any:
    """Instantiate ``cls`` from a map of exactly its fields (types are checked afterwards)."""
    names = field_types(cls)
    missing = [n for n in names if n not in body]
    if missing:
        raise ProtocolError(Reason.MISSING_FIELD, f"{where}: missing {missing}")
    unknown = [k for k in body if k not in names]
    if unknown:
        raise ProtocolError(Reason.UNKNOWN_FIELD, f"{where}: unknown {[str(k) for k in unknown][:8]}")
    values = dict(body)
    for name, annotation in names.items():
        if annotation is ModelUpdate:
            if not isinstance(values[name], dict):
                raise ProtocolError(Reason.BAD_FIELD, f"{where}.{name}: expected a map")
            values[name] = _build(ModelUpdate, values[name], f"{where}.{name}")
    return cls(**values)


def _copy_arrays(msg: Any) -> Any:
    import dataclasses

    changes: dict[str, Any] = {}
    for name in field_types(type(msg)):
        value = getattr(msg, name)
        if isinstance(value, np.ndarray):
            changes[name] = value.copy()
        elif isinstance(value, ModelUpdate):
            changes[name] = _copy_arrays(value)
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            changes[name] = {k: v.copy() for k, v in value.items()}
    return dataclasses.replace(msg, **changes) if changes else msg


def clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` cut to ``limit`` characters (marked), so a refusal never carries a peer-sized string."""
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} chars)"


def _clipped(exc: ProtocolError) -> ProtocolError:
    if len(exc.detail) <= MAX_DETAIL_CHARS:
        return exc
    return ProtocolError(exc.reason, clip(exc.detail), message_type=exc.message_type, sender=exc.sender)


def _sender(body: dict[str, Any]) -> str | None:
    """The id a message claims to come from, only when it is a valid id (a longer one is not worth naming)."""
    for key in _SENDER_KEYS:
        value = body.get(key)
        if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH:
            return value
    return None


class _Budget:
    """Counts containers and their items as msgpack builds them; refuses the message past the budget."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def _spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ProtocolError(
                Reason.OVERSIZE, f"more than {MAX_CONTAINER_ITEMS} maps, lists and items in one message"
            )

    def on_map(self, value: dict[str, Any]) -> dict[str, Any]:
        self._spend(1 + len(value))
        return value

    def on_list(self, value: list[Any]) -> list[Any]:
        self._spend(1 + len(value))
        return value


def _unpack(data: Any, max_bytes: int) -> Any:
    budget = _Budget(MAX_CONTAINER_ITEMS)
    return msgpack.unpackb(
        data,
        ext_hook=_ext_hook,
        object_hook=budget.on_map,
        list_hook=budget.on_list,
        raw=False,
        strict_map_key=True,
        use_list=True,
        timestamp=0,
        max_str_len=MAX_STR_BYTES,
        max_bin_len=max_bytes,
        max_ext_len=max_bytes,
        max_array_len=MAX_ARRAY_ITEMS,
        max_map_len=MAX_MAP_ITEMS,
    )


def decode(data: Any, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, writable: bool = False) -> Message:
    """Parse and validate one message from bytes (or any buffer: bytearray, memoryview, zmq.Frame).

    Raises only ProtocolError, whatever ``data`` is. Arrays are read-only views of ``data`` unless
    ``writable=True``. An ``Error`` is decoded whatever protocol version it carries (its shape never
    changes); every other message must carry ``PROTOCOL_VERSION``."""
    try:
        size = memoryview(data).nbytes
    except TypeError:
        raise ProtocolError(Reason.NOT_MSGPACK, f"expected bytes, got {type(data).__name__}") from None
    if size > max_bytes:
        raise ProtocolError(Reason.OVERSIZE, f"message is {size} bytes, the limit is {max_bytes}")
    try:
        body = _unpack(data, max_bytes)
    except ProtocolError as exc:
        raise _clipped(exc) from None
    except Exception as exc:  # msgpack raises many types (ValueError, StackError, UnicodeDecodeError, ...)
        detail = clip(f"not one msgpack object: {type(exc).__name__}: {exc}")
        raise ProtocolError(Reason.NOT_MSGPACK, detail) from None
    if not isinstance(body, dict):
        raise ProtocolError(Reason.NOT_A_MAP, f"top level is a {type(body).__name__}, not a map")
    sender = _sender(body)
    type_name = body.pop("type", None)
    cls = MESSAGE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise ProtocolError(Reason.UNKNOWN_TYPE, clip(f"unknown message type {type_name!r}"), sender=sender)
    version = body.pop("protocol", None)
    try:
        if type(version) is not int:
            raise ProtocolError(Reason.BAD_VERSION, f"{type_name}: missing or non-integer protocol version {version!r}")
        if version != PROTOCOL_VERSION and cls is not Error:
            raise ProtocolError(
                Reason.BAD_VERSION, f"{type_name} speaks protocol {version}, this peer speaks {PROTOCOL_VERSION}"
            )
        msg = _build(cls, body, type_name)
        validate_message(msg)
    except ProtocolError as exc:
        exc = _clipped(exc)
        exc.message_type, exc.sender = type_name, sender
        raise exc from None
    return _copy_arrays(msg) if writable else msg
